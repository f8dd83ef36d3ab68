package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// startCache starts a cache of the manager's options over the test API server, with
// the issuer index added before it starts (twice: both controllers add it).
func startCache(t testing.TB, namespaces ...string) (cache.Cache, *TokensByIssuer) {
	t.Helper()
	g := NewWithT(t)
	opts := CacheOptions()
	opts.Scheme = testenv.Scheme
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(env.Config, opts)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	first, err := IndexTokensByIssuer(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	second, err := IndexTokensByIssuer(ctx, c)
	g.Expect(err).NotTo(HaveOccurred(), "the second controller finds the index the first added")
	if first.indexer != nil {
		g.Expect(second.indexer).To(BeIdenticalTo(first.indexer))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	g.Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
	return c, first
}

// issuedTokens creates n APITokens naming issuer in a new namespace, each with a
// current token whose ID is the APIToken's name.
func issuedTokens(t testing.TB, issuer string, n int) []types.NamespacedName {
	t.Helper()
	g := NewWithT(t)
	ns := newNamespace(t)
	keys := make([]types.NamespacedName, n)
	for i := range n {
		tok := &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", issuer, i)},
			Spec: tokensv1.APITokenSpec{
				IssuerRef: tokensv1.IssuerReference{Name: issuer},
				Tenant:    ns, Role: "viewer", Lifetime: metav1.Duration{Duration: time.Hour},
			},
		}
		g.Expect(env.Client.Create(context.Background(), tok)).To(Succeed())
		now := metav1.Now()
		tok.Status.Current = &tokensv1.IssuedToken{TokenID: tok.Name, Format: tokensv1.FormatJWT, SigningKeyID: "k1", IssuedAt: now, ExpiresAt: metav1.NewTime(now.Add(time.Hour))}
		g.Expect(env.Client.Status().Update(context.Background(), tok)).To(Succeed())
		keys[i] = client.ObjectKeyFromObject(tok)
	}
	return keys
}

// TestTokensByIssuer: the index finds the APITokens of an issuer, by name from the
// cache's packed objects (Keys) and as typed copies with their status (Each), and
// follows a change of issuer.
func TestTokensByIssuer(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(20 * time.Second)
	_, idx := startCache(t)
	// Issuer names of this run's own: -count=N runs against the same API server.
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	ia, ib := "index-a-"+hex.EncodeToString(suffix), "index-b-"+hex.EncodeToString(suffix)
	a := issuedTokens(t, ia, 3)
	b := issuedTokens(t, ib, 2)

	sorted := func(keys []types.NamespacedName) []types.NamespacedName {
		return slices.SortedFunc(slices.Values(keys), func(x, y types.NamespacedName) int {
			return cmpString(x.String(), y.String())
		})
	}
	g.Eventually(func() ([]types.NamespacedName, error) {
		keys, err := idx.Keys(context.Background(), ia)
		return sorted(keys), err
	}).Should(Equal(sorted(a)))
	g.Eventually(func() (int, error) {
		keys, err := idx.Keys(context.Background(), ib)
		return len(keys), err
	}).Should(Equal(2))
	g.Expect(idx.Keys(context.Background(), ia+"-none")).To(BeEmpty())

	// Each hands out typed copies with their status; changing one changes nothing
	// in the cache.
	g.Eventually(func() ([]string, error) {
		var ids []string
		err := idx.Each(context.Background(), ib, func(t *tokensv1.APIToken) error {
			if t.Status.Current == nil {
				return nil
			}
			ids = append(ids, t.Status.Current.TokenID)
			t.Status.Current.TokenID = "changed"
			return nil
		})
		slices.Sort(ids)
		return ids, err
	}).Should(Equal([]string{b[0].Name, b[1].Name}))
	var again []string
	g.Expect(idx.Each(context.Background(), ib, func(t *tokensv1.APIToken) error {
		again = append(again, t.Status.Current.TokenID)
		return nil
	})).To(Succeed())
	g.Expect(again).NotTo(ContainElement("changed"))

	stop := fmt.Errorf("stop")
	calls := 0
	g.Expect(idx.Each(context.Background(), ia, func(*tokensv1.APIToken) error { calls++; return stop })).To(MatchError(stop))
	g.Expect(calls).To(Equal(1), "Each stops at the first error")

	// An APIToken moved to another issuer moves in the index.
	var moved tokensv1.APIToken
	g.Expect(env.Client.Get(context.Background(), a[0], &moved)).To(Succeed())
	moved.Spec.IssuerRef.Name = ib
	g.Expect(env.Client.Update(context.Background(), &moved)).To(Succeed())
	g.Eventually(func() (int, error) {
		keys, err := idx.Keys(context.Background(), ib)
		return len(keys), err
	}).Should(Equal(3))
	g.Expect(idx.Keys(context.Background(), ia)).To(HaveLen(2))

	// A cache of some namespaces has no indexer to read: the same answers, listed.
	_, listed := startCache(t, a[0].Namespace)
	g.Expect(listed.indexer).To(BeNil())
	g.Eventually(func() ([]types.NamespacedName, error) {
		keys, err := listed.Keys(context.Background(), ia)
		return sorted(keys), err
	}).Should(Equal(sorted(a[1:])))
	calls = 0
	g.Expect(listed.Each(context.Background(), ib, func(t *tokensv1.APIToken) error {
		g.Expect(t.Namespace).To(Equal(a[0].Namespace), "only the cache's namespaces")
		calls++
		return nil
	})).To(Succeed())
	g.Expect(calls).To(Equal(1), "the APIToken moved to index-b")
}

func cmpString(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// BenchmarkTokensOfIssuer compares what finding the APITokens of an issuer costs
// through the cache's index (Keys: names only; Each: one typed copy at a time) with
// the list through the cached client it replaced, over 1000 cached APITokens of one
// issuer. The bytes per operation of the list are what it holds at once.
func BenchmarkTokensOfIssuer(b *testing.B) {
	g := NewWithT(b)
	c, idx := startCache(b)
	const n = 1000
	ns := issuedTokens(b, "bench-issuer", n)[0].Namespace
	g.Eventually(func() (int, error) {
		keys, err := idx.Keys(context.Background(), "bench-issuer")
		return len(keys), err
	}).WithTimeout(time.Minute).Should(Equal(n))

	b.Run("list-through-client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var list tokensv1.APITokenList
			if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("keys", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := idx.Keys(context.Background(), "bench-issuer"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := idx.Each(context.Background(), "bench-issuer", func(*tokensv1.APIToken) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestIssuerOf: the index function reads the issuer off a packed APIToken without
// unpacking it, defaulted as the controllers read it, and refuses anything else.
func TestIssuerOf(t *testing.T) {
	g := NewWithT(t)
	named := cachedToken(1)
	named.Spec.IssuerRef.Name = "partners"
	unnamed := cachedToken(2)
	unnamed.Spec.IssuerRef.Name = ""
	for _, tc := range []struct {
		obj  *tokensv1.APIToken
		want string
	}{{named, "partners"}, {unnamed, tokensv1.DefaultIssuerName}} {
		packed, err := compactAPIToken(tc.obj.DeepCopy())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(packed).To(BeAssignableToTypeOf(&Packed{}))
		g.Expect(issuerOf(packed)).To(Equal([]string{tc.want}))
		g.Expect(issuerOf(tc.obj)).To(Equal([]string{tc.want}), "a store without the transform")
		// What the field says is what the body says.
		back, err := Unpack(packed.(*Packed))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(back.(*tokensv1.APIToken).Spec.IssuerName()).To(Equal(tc.want))
	}

	sec, err := compactSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "tok-1"}, Type: tokensv1.TokenSecretType})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = issuerOf(sec)
	g.Expect(err).To(MatchError(ContainSubstring("packed Secret by issuer: not an APIToken")))
	_, err = issuerOf("tok-1")
	g.Expect(err).To(MatchError(ContainSubstring("indexing string by issuer")))
}

// BenchmarkIndexIssuerOf: what the issuer index costs per cached APIToken event,
// reading the field kept beside the packed body against unpacking to read the spec
// (what it did before).
func BenchmarkIndexIssuerOf(b *testing.B) {
	packed, err := compactAPIToken(cachedToken(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("field", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := issuerOf(packed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unpack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u, err := Unpack(packed.(*Packed))
			if err != nil {
				b.Fatal(err)
			}
			_ = []string{u.(*tokensv1.APIToken).Spec.IssuerName()}
		}
	})
}
