package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TokensByIssuer indexes the cached APITokens by the ClusterTokenIssuer they name.
//
// It reads the informer's store itself rather than listing through the manager's
// client: a cached list deep-copies, which for Packed objects means unpacking, and it
// unpacks every object it returns before the caller sees the first. One issuer
// usually serves every APIToken, so a list of "the APITokens of an issuer" is a list
// of all of them, typed at once: at 100k APITokens about 580 MB held together, for a
// map function that needs only their names. Keys reads the names off the metadata the
// store keeps as it is; Each unpacks one APIToken at a time.
//
// A cache restricted to a set of namespaces (cache.Options.DefaultNamespaces) keeps
// an informer per namespace and exposes no indexer; there TokensByIssuer lists
// through the cache, as a client would.
type TokensByIssuer struct {
	indexer toolscache.Indexer
	// reader lists the APITokens when there is no indexer to read.
	reader client.Reader
}

// issuerIndex names the index in the APIToken informer's indexer.
const issuerIndex = "apitoken.dev/issuer"

// IndexTokensByIssuer adds the issuer index to the APIToken informer of c, or finds
// it there: both controllers use it, and whichever is set up first adds it. It must
// be called before the cache starts.
func IndexTokensByIssuer(ctx context.Context, c cache.Cache) (*TokensByIssuer, error) {
	inf, err := c.GetInformer(ctx, &tokensv1.APIToken{})
	if err != nil {
		return nil, fmt.Errorf("getting the APIToken informer: %w", err)
	}
	sii, ok := inf.(toolscache.SharedIndexInformer)
	if !ok {
		return TokensListedBy(c), nil
	}
	if _, ok := sii.GetIndexer().GetIndexers()[issuerIndex]; !ok {
		if err := sii.AddIndexers(toolscache.Indexers{issuerIndex: issuerOf}); err != nil {
			return nil, fmt.Errorf("indexing APITokens by issuer: %w", err)
		}
	}
	return &TokensByIssuer{indexer: sii.GetIndexer()}, nil
}

// TokensListedBy finds the APITokens of an issuer by listing them through r: for a
// cache without an indexer to read, or a reconciler driven without a manager.
func TokensListedBy(r client.Reader) *TokensByIssuer { return &TokensByIssuer{reader: r} }

// issuerOf is the index function: the issuer an APIToken names, read off a Packed
// APIToken without unpacking it.
func issuerOf(obj any) ([]string, error) {
	switch o := obj.(type) {
	case *Packed:
		if o.packing != apiTokenPacking {
			return nil, fmt.Errorf("indexing a packed %s by issuer: not an APIToken", o.packing.gvk.Kind)
		}
		return []string{o.issuer.Value()}, nil
	case *tokensv1.APIToken:
		return []string{o.Spec.IssuerName()}, nil
	default:
		return nil, fmt.Errorf("indexing %T by issuer: not an APIToken", obj)
	}
}

// Keys are the namespaced names of the APITokens that name issuer.
func (x *TokensByIssuer) Keys(ctx context.Context, issuer string) ([]types.NamespacedName, error) {
	if x.indexer == nil {
		var keys []types.NamespacedName
		err := x.Each(ctx, issuer, func(t *tokensv1.APIToken) error {
			keys = append(keys, client.ObjectKeyFromObject(t))
			return nil
		})
		return keys, err
	}
	objs, err := x.indexer.ByIndex(issuerIndex, issuer)
	if err != nil {
		return nil, err
	}
	keys := make([]types.NamespacedName, 0, len(objs))
	for _, obj := range objs {
		if o, ok := obj.(client.Object); ok {
			keys = append(keys, types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
	return keys, nil
}

// Each calls fn with each APIToken that names issuer, a copy of its own, one at a
// time, and stops at the first error fn returns.
func (x *TokensByIssuer) Each(ctx context.Context, issuer string, fn func(*tokensv1.APIToken) error) error {
	if x.indexer == nil {
		var list tokensv1.APITokenList
		if err := x.reader.List(ctx, &list); err != nil {
			return err
		}
		for i := range list.Items {
			if list.Items[i].Spec.IssuerName() != issuer {
				continue
			}
			if err := fn(&list.Items[i]); err != nil {
				return err
			}
		}
		return nil
	}
	objs, err := x.indexer.ByIndex(issuerIndex, issuer)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		o, ok := obj.(client.Object)
		if !ok {
			continue
		}
		u, err := Unpack(o)
		if err != nil {
			return err
		}
		t, ok := u.(*tokensv1.APIToken)
		if !ok {
			continue
		}
		if _, packed := o.(*Packed); !packed {
			// A store of plain APITokens (no transform) hands out its own object.
			t = t.DeepCopy()
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return nil
}
