package validator

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// CacheOptions are the validator's cache options: the two kinds it watches, each
// reduced by index.Transform before the informer stores it. The cache holds
// index.TokenSets, not APITokens, so it serves the index's event handlers only:
// reading APITokens through it fails with a type mismatch.
func CacheOptions(scheme *k8sruntime.Scheme) cache.Options {
	return cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&tokensv1.APIToken{}:           {Transform: index.Transform},
			&tokensv1.ClusterTokenIssuer{}: {Transform: index.Transform},
		},
	}
}

// Watch feeds idx from c's informers for APITokens and ClusterTokenIssuers. It may be
// called before c starts. The returned func reports whether both handlers have seen
// every object of the initial lists: until then the index is partial and the
// validator must not be ready.
func Watch(ctx context.Context, c cache.Cache, idx *index.Index, log logr.Logger) (synced func() bool, err error) {
	tokInf, err := c.GetInformer(ctx, &tokensv1.APIToken{})
	if err != nil {
		return nil, fmt.Errorf("getting the APIToken informer: %w", err)
	}
	issInf, err := c.GetInformer(ctx, &tokensv1.ClusterTokenIssuer{})
	if err != nil {
		return nil, fmt.Errorf("getting the ClusterTokenIssuer informer: %w", err)
	}

	putToken := func(obj any) {
		ts, ok := obj.(*index.TokenSet)
		if !ok {
			log.Error(nil, "Unexpected object in the APIToken informer", "type", fmt.Sprintf("%T", obj))
			return
		}
		if conflicts := idx.PutTokenSet(ts); len(conflicts) > 0 {
			log.Error(nil, "Token IDs already held by another APIToken; refusing them for this one", "apiToken", ts.Key(), "tokenIDs", conflicts)
		}
	}
	tokReg, err := tokInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    putToken,
		UpdateFunc: func(_, obj any) { putToken(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ts, ok := obj.(*index.TokenSet); ok {
				idx.DeleteTokenSet(ts.Key())
			}
		},
	})
	if err != nil {
		return nil, err
	}

	putIssuer := func(obj any) {
		cti, ok := obj.(*tokensv1.ClusterTokenIssuer)
		if !ok {
			log.Error(nil, "Unexpected object in the ClusterTokenIssuer informer", "type", fmt.Sprintf("%T", obj))
			return
		}
		iss, changed := idx.PutIssuer(cti)
		if !changed {
			return
		}
		if iss.KeyError != nil {
			log.Error(iss.KeyError, "Issuer's key set refused; none of its JWTs will verify", "issuer", iss.Name)
		}
		if iss.RolesError != nil {
			log.Error(iss.RolesError, "Issuer's roles refused; a role will grant only itself", "issuer", iss.Name)
		}
		if iss.PolicyError != nil {
			log.Error(iss.PolicyError, "Issuer's policy refused; its tokens are judged by the last valid one", "issuer", iss.Name, "lastValidPolicy", iss.Policy != nil)
		}
	}
	issReg, err := issInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    putIssuer,
		UpdateFunc: func(_, obj any) { putIssuer(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if cti, ok := obj.(*tokensv1.ClusterTokenIssuer); ok {
				idx.DeleteIssuer(cti.Name)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return func() bool { return tokReg.HasSynced() && issReg.HasSynced() }, nil
}
