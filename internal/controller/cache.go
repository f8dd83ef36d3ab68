// Package controller holds what the manager's controllers share: the cache they read
// through, how they write (one field manager, owner references, status and metadata
// patches under an optimistic lock, conditions stamped with the pass's time) and the
// lease fence that keeps a deposed leader from writing. The controllers themselves
// live in its subpackages.
package controller

import (
	"crypto/sha256"
	"maps"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// CacheOptions restrict the manager's Secret cache to the Secrets the operator writes
// (token Secrets and signing-key Secrets carry apitoken.dev/managed-by), so memory
// stays flat however many unrelated Secrets the cluster holds. A Secret without the
// label is invisible to the controllers' reads, which is what the conflict check of
// the APIToken controller relies on: it looks past the cache when a create finds the
// name taken.
//
// Managed fields are dropped from every cached object: no controller reads them
// (writes go by server-side apply, which the API server merges), and on objects
// applied by kubectl or a GitOps tool they are often larger than the spec. The
// APITokens and token Secrets, one of each per token, are compacted further
// (compactAPIToken, compactSecret): at 100k tokens they are most of the manager's
// memory.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Label:     labels.SelectorFromSet(labels.Set{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}),
				Transform: compactSecret,
			},
			&tokensv1.APIToken{}: {Transform: compactAPIToken},
		},
	}
}

// lastApplied is the annotation in which kubectl's client-side apply keeps a copy of
// the whole manifest.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// compactAPIToken drops what no controller reads from an APIToken before the cache
// stores it (managed fields, kubectl's copy of the manifest), shares the strings of
// its metadata that APITokens hold alike, and packs its spec and status (Packed).
// What the cache lacks is invisible to the controller: its status patches are
// computed between two copies of the cached object, so no patch touches it.
func compactAPIToken(obj any) (any, error) {
	tok, ok := obj.(*tokensv1.APIToken)
	if !ok {
		return cache.TransformStripManagedFields()(obj)
	}
	tok.ManagedFields = nil
	if _, ok := tok.Annotations[lastApplied]; ok {
		tok.Annotations = maps.Clone(tok.Annotations)
		delete(tok.Annotations, lastApplied)
	}
	shareMeta(&tok.ObjectMeta)
	return apiTokenPacking.pack(tok)
}

// compactSecret drops a Secret's managed fields, shares the strings of its metadata
// that Secrets hold alike (namespace, label and annotation keys, the managed-by label,
// owner kinds) and packs its type and data (Packed). A token Secret's JWT is kept as
// its SHA-256 and its iss claim (see CachedJWT): with the status's digest of the
// token, that is all a pass needs to know that the Secret holds the token it minted.
func compactSecret(obj any) (any, error) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return cache.TransformStripManagedFields()(obj)
	}
	sec.ManagedFields = nil
	shareMeta(&sec.ObjectMeta)
	if sec.Type == tokensv1.TokenSecretType {
		keepDigestOfJWT(sec)
	}
	return secretPacking.pack(sec)
}

// cachedJWTKey is the data key under which a cached token Secret keeps the SHA-256
// and iss claim of its JWT in place of the JWT. A "/" is not allowed in a Secret's
// data keys: a cached Secret written back by mistake is refused by the API server
// instead of losing the token.
const cachedJWTKey = "apitoken.dev/cached-jwt"

// keepDigestOfJWT replaces the JWT of a token Secret's data by its SHA-256 and iss
// claim. Anything that does not parse as a JWT (an opaque token, a value someone
// wrote) is kept as it is.
func keepDigestOfJWT(sec *corev1.Secret) {
	v, ok := sec.Data[tokensv1.SecretKeyToken]
	if !ok {
		return
	}
	_, iss, err := token.ParseUnverified(string(v))
	if err != nil {
		return
	}
	sum := sha256.Sum256(v)
	sec.Data = maps.Clone(sec.Data)
	delete(sec.Data, tokensv1.SecretKeyToken)
	sec.Data[cachedJWTKey] = append(sum[:], iss...)
}

// CachedJWT returns what the cache keeps of a token Secret's JWT: its SHA-256
// (token.DigestSum) and its iss claim. ok is false when sec holds its token itself:
// an opaque token, or a Secret read past the cache.
func CachedJWT(sec *corev1.Secret) (sum [sha256.Size]byte, iss string, ok bool) {
	v, ok := sec.Data[cachedJWTKey]
	if !ok || len(v) < sha256.Size {
		return sum, "", false
	}
	copy(sum[:], v)
	return sum, string(v[sha256.Size:]), true
}

// managedByOnly is the labels of most token Secrets, held once for all of them:
// cached objects are read-only (the cache hands out deep copies), and a map costs
// half a kilobyte however few entries it holds.
var managedByOnly = map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}

// shareMeta shares the strings of m that objects of a namespace hold alike. Label and
// annotation values are the user's, possibly one per object: only the managed-by
// label's is shared.
func shareMeta(m *metav1.ObjectMeta) {
	m.Namespace = share(m.Namespace)
	if len(m.Labels) == 1 && m.Labels[tokensv1.ManagedByLabel] == tokensv1.ManagedByValue {
		m.Labels = managedByOnly
	} else {
		m.Labels = shareKeys(m.Labels)
		if v, ok := m.Labels[tokensv1.ManagedByLabel]; ok {
			m.Labels[tokensv1.ManagedByLabel] = share(v)
		}
	}
	m.Annotations = shareAnnotations(m.Annotations)
	shareAll(m.Finalizers)
	for i := range m.OwnerReferences {
		r := &m.OwnerReferences[i]
		r.APIVersion, r.Kind = share(r.APIVersion), share(r.Kind)
	}
}

// shared holds the one copy of each string share was given. It is only given strings
// of which a cluster has few distinct ones (namespaces, kinds, reasons, keys, tenants,
// roles), so it stays small, and it never lets go of one: an object holds it a moment
// after it was decoded, which would be too short for a weak reference to keep it.
var shared sync.Map // string -> string

// share returns the one copy of s the process keeps: equal strings of many objects
// then cost their bytes once.
func share(s string) string {
	if s == "" {
		return s
	}
	if v, ok := shared.Load(s); ok {
		return v.(string)
	}
	v, _ := shared.LoadOrStore(s, strings.Clone(s))
	return v.(string)
}

// creatorOnly holds, by creator, the one annotations map of the objects whose only
// annotation is apitoken.dev/created-by, as most APITokens' is: the admission
// webhook sets it, and a cluster has few creators.
var creatorOnly sync.Map // string -> map[string]string

// shareAnnotations shares the keys of m, and the created-by value, which few
// people's names fill; a map holding only that annotation is shared whole.
func shareAnnotations(m map[string]string) map[string]string {
	creator, ok := m[tokensv1.CreatedByAnnotation]
	if ok && len(m) == 1 {
		if v, ok := creatorOnly.Load(creator); ok {
			return v.(map[string]string)
		}
		v, _ := creatorOnly.LoadOrStore(creator, map[string]string{share(tokensv1.CreatedByAnnotation): share(creator)})
		return v.(map[string]string)
	}
	m = shareKeys(m)
	if ok {
		m[tokensv1.CreatedByAnnotation] = share(creator)
	}
	return m
}

func shareAll(s []string) {
	for i := range s {
		s[i] = share(s[i])
	}
}

func shareKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[share(k)] = v
	}
	return out
}
