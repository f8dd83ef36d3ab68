package exchange

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// A multi-tenant token exchanges into a single-tenant one: the requested tenant
// selects the membership, which is then narrowed as a single-tenant parent is, and the
// validator accepts the child for that tenant only, while the parent is accepted.
func TestMultiTenantExchange(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{memberships: []tokensv1.Membership{
		{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"},
	}})

	out := h.exchangeOK(p.token, "tenant=globex")
	c := verify(t, h, iss, out.Token)
	h.g.Expect(c.Tenant).To(Equal("globex"))
	h.g.Expect(c.SubTenant).To(Equal("eu"), "the membership's sub-tenant")
	h.g.Expect(c.Role).To(Equal("viewer"), "the membership's role")
	h.g.Expect(c.Memberships).To(BeNil(), "an exchanged token is of one tenant")
	h.g.Expect(c.Parent).To(Equal(p.issued.TokenID))
	h.g.Expect(h.validate(out.Token, validatorapi.Requirement{Tenant: "globex", Role: "viewer"}).Reason).To(Equal(validatorapi.ReasonAllowed))
	h.g.Expect(h.validate(out.Token, validatorapi.Requirement{Tenant: "acme"}).Reason).To(Equal(validatorapi.ReasonTenantMismatch),
		"the child is not a member of the parent's other tenants")

	narrowed := h.exchangeOK(p.token, "tenant=acme&role=viewer")
	h.g.Expect(verify(t, h, iss, narrowed.Token).Role).To(Equal("viewer"))
	h.g.Expect(h.validate(narrowed.Token, validatorapi.Requirement{Tenant: "acme", Role: "editor"}).Reason).To(Equal(validatorapi.ReasonInsufficientRole))

	for _, tc := range []struct {
		name, query string
		status      int
		code        policy.Rule
	}{
		{"no tenant named", "role=viewer", http.StatusBadRequest, policy.RuleTenantRequired},
		{"not a member", "tenant=initech", http.StatusNotFound, policy.RuleTenantNarrowing},
		{"above the membership's role", "tenant=globex&role=editor", http.StatusForbidden, policy.RuleRoleNarrowing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.simple(tc.query, bearerAuth(p.token))
			g.Expect(r.status).To(Equal(tc.status), r.body)
			var e exchangeapi.Error
			r.json(&e)
			g.Expect(e.Error).To(Equal(string(tc.code)))
		})
	}

	// Revoking the parent refuses the children of every tenant.
	h.g.Eventually(func() error {
		if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(p.obj), p.obj); err != nil {
			return err
		}
		p.obj.Spec.Revoked = true
		return env.Client.Update(h.ctx, p.obj)
	}).Should(Succeed())
	for _, tok := range []string{out.Token, narrowed.Token} {
		h.g.Eventually(h.reason(tok)).Should(Equal(validatorapi.ReasonRevoked))
	}
}
