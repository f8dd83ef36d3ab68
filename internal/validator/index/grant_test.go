package index

import (
	"runtime"
	"testing"
	"unique"
	"weak"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

func testGrant(tenant string) grant {
	return grant{
		format: tokensv1.FormatJWT, signingKeyID: unique.Make("kid-1"), hasDigest: true,
		tenant: tenant, role: "editor", scopes: []string{"reports:read"}, audiences: []string{"billing-api"},
	}
}

// Equal grants are one grant; a grant differing in any field is another.
func TestShareGrant(t *testing.T) {
	g := NewWithT(t)
	a := shareGrant(testGrant("acme"))
	g.Expect(shareGrant(testGrant("acme"))).To(BeIdenticalTo(a))

	for name, change := range map[string]func(*grant){
		"format":      func(x *grant) { x.format = tokensv1.FormatOpaque },
		"key":         func(x *grant) { x.signingKeyID = unique.Make("kid-2") },
		"digest":      func(x *grant) { x.hasDigest = false },
		"tenant":      func(x *grant) { x.tenant = "globex" },
		"sub-tenant":  func(x *grant) { x.subTenant = "eu" },
		"role":        func(x *grant) { x.role = "viewer" },
		"memberships": func(x *grant) { x.memberships = []validatorapi.Membership{{Tenant: "acme", Role: "editor"}} },
		"scopes":      func(x *grant) { x.scopes = append(x.scopes, "invoices:write") },
		"audiences":   func(x *grant) { x.audiences = nil },
		// The same strings, split differently between the lists.
		"lists": func(x *grant) { x.scopes, x.audiences = []string{"reports:read", "billing-api"}, nil },
	} {
		other := testGrant("acme")
		change(&other)
		got := shareGrant(other)
		g.Expect(got).NotTo(BeIdenticalTo(a), name)
		g.Expect(got.equal(a)).To(BeFalse(), name)
		g.Expect(shareGrant(other)).To(BeIdenticalTo(got), name)
	}
	runtime.KeepAlive(a)
}

// A grant whose hash a different grant holds is answered with a grant of its own
// value, never the holder; the holder keeps the entry.
func TestShareGrantHashTaken(t *testing.T) {
	g := NewWithT(t)
	want := testGrant("hash-taken")
	holder := &grant{tenant: "someone else"}
	h := want.hash()
	grants.mu.Lock()
	prev := grants.m[h]
	grants.m[h] = weak.Make(holder)
	grants.mu.Unlock()
	defer func() {
		grants.mu.Lock()
		grants.m[h] = prev
		grants.mu.Unlock()
	}()

	got := shareGrant(want)
	g.Expect(got).NotTo(BeIdenticalTo(holder))
	g.Expect(got.equal(&want)).To(BeTrue())
	grants.mu.Lock()
	g.Expect(grants.m[h].Value()).To(BeIdenticalTo(holder))
	grants.mu.Unlock()
	runtime.KeepAlive(holder)
}

// A grant no record holds any more leaves the table.
func TestShareGrantCollected(t *testing.T) {
	g := NewWithT(t)
	tg := testGrant("collected")
	h := tg.hash()
	shareGrant(tg)
	held := func() bool {
		runtime.GC()
		grants.mu.Lock()
		defer grants.mu.Unlock()
		_, ok := grants.m[h]
		return ok
	}
	g.Eventually(held).Should(BeFalse())
}

// The slices a shared grant keeps are of their own length and nil when empty, as the
// status read before: the decoder's spare capacity is not kept.
func TestShareGrantExactSlices(t *testing.T) {
	g := NewWithT(t)
	tg := testGrant("exact")
	tg.scopes = append(make([]string, 0, 8), "a", "b")
	tg.audiences = []string{}
	got := shareGrant(tg)
	g.Expect(got.scopes).To(Equal([]string{"a", "b"}))
	g.Expect(cap(got.scopes)).To(Equal(2))
	g.Expect(got.audiences).To(BeNil())
	g.Expect(got.memberships).To(BeNil())
}
