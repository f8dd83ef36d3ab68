package apitoken

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// servedToken is the JSON of an APIToken as a watch sends it once the controller
// served it (three conditions, a current JWT with its digest, a renewal time, the
// creator the webhook recorded), and of its token Secret, holding a real ES256 JWT.
func servedToken(t testing.TB, key *token.SigningKey, i int) (apiToken, secret []byte) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := now.Add(720 * time.Hour)
	id := token.NewTokenID()
	name, uid := fmt.Sprintf("tok-%06d", i), types.UID(fmt.Sprintf("6f1c2d1e-0000-4000-8000-%012d", i))
	jwt, err := token.MintJWT(key, token.Claims{Issuer: testIssuerURL, Subject: token.Subject("tenant-a", name), Audience: []string{"acme-apis"},
		IssuedAt: now, NotBefore: now, ExpiresAt: exp, ID: id, Tenant: "tenant-a", Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	cur := &tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Digest: token.Digest(jwt),
		Claims:   tokensv1.TokenClaims{Tenant: "tenant-a", Role: "viewer", Audiences: []string{"acme-apis"}},
		IssuedAt: metav1.NewTime(now), ExpiresAt: metav1.NewTime(exp)}
	cond := func(typ string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now), ObservedGeneration: 1}
	}
	tok := tokensv1.APIToken{
		TypeMeta: metav1.TypeMeta{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tenant-a", UID: uid, ResourceVersion: fmt.Sprint(100000 + i), Generation: 1,
			CreationTimestamp: metav1.NewTime(now), Annotations: map[string]string{tokensv1.CreatedByAnnotation: "system:serviceaccount:argocd:argocd-application-controller"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "argocd", Operation: metav1.ManagedFieldsOperationApply, APIVersion: tokensv1.GroupVersion.String(),
				FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:role":{},"f:tenant":{}}}`)}}},
		Spec: tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "default"}, Tenant: "tenant-a", Role: "viewer", Lifetime: metav1.Duration{Duration: 720 * time.Hour}},
		Status: tokensv1.APITokenStatus{
			Conditions: []metav1.Condition{
				cond(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonMinted, fmt.Sprintf("Secret %s holds token %s, valid until %s", name, id, exp.Format(time.RFC3339))),
				cond(tokensv1.ConditionRevoked, metav1.ConditionFalse, tokensv1.ReasonNotRevoked, "The tokens of this APIToken are not revoked"),
				cond(tokensv1.ConditionExpired, metav1.ConditionFalse, tokensv1.ReasonNotExpired, "The current token has not expired"),
			},
			ObservedGeneration: 1, Current: cur, SecretName: name, RenewalTime: &metav1.Time{Time: exp.Add(-250 * time.Hour)},
		},
	}
	sec := corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tenant-a", UID: types.UID(fmt.Sprintf("7f1c2d1e-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(200000 + i), CreationTimestamp: metav1.NewTime(now),
			Labels: map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken", Name: name, UID: uid,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: controller.FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
				FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:data":{".":{},"f:token":{},"f:tokenID":{}}}`)}}},
		Type: tokensv1.TokenSecretType,
		Data: secretData(jwt, cur),
	}
	apiToken, err = json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	secret, err = json.Marshal(sec)
	if err != nil {
		t.Fatal(err)
	}
	return apiToken, secret
}

// cachedBytes decodes n objects of a kind from JSON as a watch would, runs them
// through the manager's cache transform for the kind (or none) into an informer store
// with the namespace index, and returns the heap the store keeps, per object.
func cachedBytes(t testing.TB, docs [][]byte, newObj func() any, transform toolscache.TransformFunc) float64 {
	store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, doc := range docs {
		out := newObj()
		if err := json.Unmarshal(doc, out); err != nil {
			t.Fatal(err)
		}
		if transform != nil {
			var err error
			if out, err = transform(out); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.Add(out); err != nil {
			t.Fatal(err)
		}
	}
	// Twice: the first collection moves what sync.Pools hold (the cache's
	// compressors) to their victim caches, the second frees it.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(store.ListKeys()) != len(docs) {
		t.Fatalf("stored %d objects, want %d", len(store.ListKeys()), len(docs))
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(len(docs))
}

// cacheCost is what the manager's cache keeps per served APIToken: the APIToken and
// its token Secret, with the cache's transforms and, for comparison, with none.
func cacheCost(t testing.TB, n int, transformed bool) (apiToken, secret float64) {
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		t.Fatal(err)
	}
	toks, secs := make([][]byte, n), make([][]byte, n)
	for i := range n {
		toks[i], secs[i] = servedToken(t, key, i)
	}
	var tokT, secT toolscache.TransformFunc
	if transformed {
		for obj, by := range controller.CacheOptions().ByObject {
			switch obj.(type) {
			case *tokensv1.APIToken:
				tokT = by.Transform
			case *corev1.Secret:
				secT = by.Transform
			}
		}
	}
	apiToken = cachedBytes(t, toks, func() any { return &tokensv1.APIToken{} }, tokT)
	secret = cachedBytes(t, secs, func() any { return &corev1.Secret{} }, secT)
	return apiToken, secret
}

// TestCacheBytesPerToken holds what the manager's cache keeps per served APIToken
// (the APIToken and its token Secret, store and namespace index included) to the
// figures of docs/performance.md: at 100k APITokens each byte is 100 kB.
func TestCacheBytesPerToken(t *testing.T) {
	g := NewWithT(t)
	apiToken, secret := cacheCost(t, 3000, true)
	t.Logf("APIToken %.0f bytes, token Secret %.0f bytes", apiToken, secret)
	g.Expect(apiToken).To(BeNumerically("<=", 820))
	g.Expect(secret).To(BeNumerically("<=", 890))
}

// BenchmarkCacheBytesPerToken reports the same with the cache's transforms and,
// for comparison, without them.
func BenchmarkCacheBytesPerToken(b *testing.B) {
	for _, transformed := range []bool{true, false} {
		b.Run(fmt.Sprintf("transform=%t", transformed), func(b *testing.B) {
			var apiToken, secret float64
			for b.Loop() {
				apiToken, secret = cacheCost(b, 3000, transformed)
			}
			b.ReportMetric(apiToken, "bytes/APIToken")
			b.ReportMetric(secret, "bytes/Secret")
		})
	}
}
