package apitoken

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// A multi-tenant APIToken mints a token of its memberships, in the order of their
// tenants, for JWT and opaque alike; the Secret lists them in place of tenant and role,
// and the validator accepts what was minted.
func TestMintMemberships(t *testing.T) {
	for _, format := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
		t.Run(string(format), func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			f := newIssuer(t, func(i *tokensv1.ClusterTokenIssuer) {
				i.Spec.Tenants = []tokensv1.Tenant{{Name: "acme", Namespaces: []string{ns}}, {Name: "globex", Namespaces: []string{ns}, MaxRole: "viewer"}}
			})
			h := newHarness(t)
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.Tenant, a.Spec.Role, a.Spec.Format = "", "", format
				a.Spec.Memberships = []tokensv1.Membership{{Tenant: "globex", SubTenant: "eu", Role: "viewer"}, {Tenant: "acme", Role: "editor"}}
			})
			h.mustReconcile(tok)

			got := getToken(t, tok)
			want := []tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
			g.Expect(got.Status.Current.Claims.Memberships).To(Equal(want))
			g.Expect(got.Status.Current.Claims.Tenant).To(BeEmpty())
			g.Expect(got.Status.Current.Claims.Role).To(BeEmpty())
			sec := getSecret(t, ns, tok.Name)
			g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyTenant))
			g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyRole))
			var listed []tokensv1.Membership
			g.Expect(json.Unmarshal(sec.Data[tokensv1.SecretKeyMemberships], &listed)).To(Succeed())
			g.Expect(listed).To(Equal(want))
			value := string(sec.Data[tokensv1.SecretKeyToken])
			if format == tokensv1.FormatJWT {
				claims, err := f.verifier(t, h.clock.Now).Verify(value)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(claims.Tenant).To(BeEmpty())
				g.Expect(claims.Memberships).To(HaveLen(2))
				g.Expect(claims.Memberships[0].Tenant).To(Equal("acme"))
				g.Expect(claims.Memberships[1].SubTenant).To(Equal("eu"))
			}
			g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeTrue())

			// Reordering the memberships asks for the same token; changing a role
			// rotates it.
			id := got.Status.Current.TokenID
			update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Memberships = want })
			h.mustReconcile(tok)
			g.Expect(getToken(t, tok).Status.Current.TokenID).To(Equal(id))
			update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Memberships[0].Role = "viewer" })
			h.mustReconcile(tok)
			got = getToken(t, tok)
			g.Expect(got.Status.Current.TokenID).NotTo(Equal(id))
			g.Expect(got.Status.Current.Claims.Memberships[0].Role).To(Equal("viewer"))
		})
	}
}

// A membership the policy forbids stalls the APIToken, and the condition says which.
func TestMembershipPolicyViolation(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	f := newIssuer(t, func(i *tokensv1.ClusterTokenIssuer) {
		i.Spec.Tenants = []tokensv1.Tenant{{Name: "acme", Namespaces: []string{ns}}, {Name: "globex", Namespaces: []string{ns}, MaxRole: "viewer"}}
	})
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Tenant, a.Spec.Role = "", ""
		a.Spec.Memberships = []tokensv1.Membership{{Tenant: "acme", Role: "admin"}, {Tenant: "globex", Role: "editor"}}
	})
	_, err := h.reconcile(tok)
	g.Expect(err).To(HaveOccurred())
	got := getToken(t, tok)
	stalled := condition(got, tokensv1.ConditionStalled)
	g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(stalled.Reason).To(Equal(tokensv1.ReasonPolicyViolation))
	g.Expect(stalled.Message).To(Equal(`policy rule MaxRole: memberships[1]: role "editor" is above tenant "globex"'s maxRole "viewer"`))
	g.Expect(got.Status.Current).To(BeNil())
}
