package validator

import (
	"encoding/json"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// twoTenants is editor in acme and viewer in globex's eu sub-tenant.
var twoTenants = []tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}

// validateJSON asks /v1/validate and decodes the answer.
func (h *harness) validateJSON(tok string, req validatorapi.Requirement) validatorapi.ValidateResponse {
	resp, body := h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: tok, Requirement: req}), nil)
	h.g.Expect(resp.StatusCode).To(Equal(200), body)
	var out validatorapi.ValidateResponse
	h.g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
	return out
}

// TestMultiTenantToken: one token, two tenants, a role in each. The requested tenant
// selects the membership, whose role the requirement is checked against, in every
// answer the validator gives: forward auth, JSON and TokenReview.
func TestMultiTenantToken(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	jwt := h.apiToken(iss, tokenSpec{memberships: twoTenants, scopes: []string{"reports:read"}, creator: "alice"})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, memberships: twoTenants})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)

	for _, m := range []*minted{jwt, opaque} {
		t.Run(string(m.issued.Format), func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				req    validatorapi.Requirement
				status int
				reason string
			}{
				{"first tenant with its role", validatorapi.Requirement{Tenant: "acme", Role: "editor"}, 200, validatorapi.ReasonAllowed},
				{"first tenant, an included role", validatorapi.Requirement{Tenant: "acme", Role: "viewer"}, 200, validatorapi.ReasonAllowed},
				{"second tenant with its role", validatorapi.Requirement{Tenant: "globex", Role: "viewer"}, 200, validatorapi.ReasonAllowed},
				{"second tenant, its sub-tenant", validatorapi.Requirement{Tenant: "globex", SubTenant: "eu", Role: "viewer"}, 200, validatorapi.ReasonAllowed},
				{"second tenant, above its membership", validatorapi.Requirement{Tenant: "globex", Role: "editor"}, 403, validatorapi.ReasonInsufficientRole},
				{"second tenant, another sub-tenant", validatorapi.Requirement{Tenant: "globex", SubTenant: "us"}, 404, validatorapi.ReasonSubTenantMismatch},
				{"a third tenant", validatorapi.Requirement{Tenant: "initech", Role: "viewer"}, 404, validatorapi.ReasonTenantMismatch},
				{"a role without a tenant", validatorapi.Requirement{Role: "viewer"}, 403, validatorapi.ReasonTenantRequired},
				{"nothing required", validatorapi.Requirement{}, 200, validatorapi.ReasonAllowed},
			} {
				t.Run(tc.name, func(t *testing.T) {
					g := NewWithT(t)
					q := "tenant=" + tc.req.Tenant + "&subTenant=" + tc.req.SubTenant + "&role=" + tc.req.Role
					resp := h.authorize(m.token, q)
					g.Expect(resp.StatusCode).To(Equal(tc.status))
					out := h.validateJSON(m.token, tc.req)
					g.Expect(out.Status).To(Equal(tc.status))
					g.Expect(out.Reason).To(Equal(tc.reason))
				})
			}
		})
	}

	t.Run("identity headers are the selected membership's", func(t *testing.T) {
		g := NewWithT(t)
		resp := h.authorize(jwt.token, "tenant=globex&role=viewer")
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(Equal(jwt.issued.TokenID))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenTenant)).To(Equal("globex"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenSubTenant)).To(Equal("eu"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenRole)).To(Equal("viewer"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenScopes)).To(Equal("reports:read"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenMemberships)).To(Equal("acme:editor,globex/eu:viewer"))

		// The same token from the decision cache, for the other tenant.
		resp = h.authorize(jwt.token, "tenant=acme")
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenTenant)).To(Equal("acme"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenRole)).To(Equal("editor"))
		g.Expect(resp.Header.Values(validatorapi.HeaderTokenSubTenant)).To(BeEmpty())

		// Nothing required, nothing selected: no tenant to report.
		resp = h.authorize(jwt.token, "")
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(resp.Header.Values(validatorapi.HeaderTokenTenant)).To(BeEmpty())
		g.Expect(resp.Header.Values(validatorapi.HeaderTokenRole)).To(BeEmpty())
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenMemberships)).To(Equal("acme:editor,globex/eu:viewer"))
	})

	t.Run("identity in JSON is the selected membership's", func(t *testing.T) {
		g := NewWithT(t)
		all := []validatorapi.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
		out := h.validateJSON(jwt.token, validatorapi.Requirement{Tenant: "acme", Role: "viewer"})
		g.Expect(out.Identity).NotTo(BeNil())
		g.Expect(out.Identity.Tenant).To(Equal("acme"))
		g.Expect(out.Identity.Role).To(Equal("editor"))
		g.Expect(out.Identity.Roles).To(Equal([]string{"editor", "viewer"}))
		g.Expect(out.Identity.Memberships).To(Equal(all))
		g.Expect(out.Identity.CreatedBy).To(Equal("alice"))

		// Refused for the role, still reported for the membership that refused it.
		out = h.validateJSON(jwt.token, validatorapi.Requirement{Tenant: "globex", Role: "admin"})
		g.Expect(out.Allowed).To(BeFalse())
		g.Expect(out.Identity.Tenant).To(Equal("globex"))
		g.Expect(out.Identity.SubTenant).To(Equal("eu"))
		g.Expect(out.Identity.Role).To(Equal("viewer"))

		out = h.validateJSON(opaque.token, validatorapi.Requirement{})
		g.Expect(out.Identity.Tenant).To(BeEmpty())
		g.Expect(out.Identity.Roles).To(BeEmpty())
		g.Expect(out.Identity.Memberships).To(Equal(all))
		g.Expect(out.Identity.CreatedBy).To(BeEmpty())
	})

	t.Run("TokenReview groups name tenant and role together", func(t *testing.T) {
		g := NewWithT(t)
		_, _, out := h.review(jwt.token)
		g.Expect(out.Status.Authenticated).To(BeTrue())
		g.Expect(out.Status.User.Groups).To(Equal([]string{
			"apitoken:tenant:acme", "apitoken:tenant:acme:role:editor", "apitoken:tenant:acme:role:viewer",
			"apitoken:tenant:globex", "apitoken:tenant:globex:role:viewer",
		}))
		g.Expect(out.Status.User.Groups).NotTo(ContainElement(HavePrefix(validatorapi.GroupRolePrefix)), "a role group alone would not say in which tenant")
		g.Expect(out.Status.User.Extra).To(Equal(map[string]authnv1.ExtraValue{
			validatorapi.ExtraTokenID:     {jwt.issued.TokenID},
			validatorapi.ExtraMemberships: {"acme:editor", "globex/eu:viewer"},
			validatorapi.ExtraScopes:      {"reports:read"},
		}))
	})
}

// TestMultiTenantTokenRefusals: a multi-tenant token is accepted only as its record
// says it was minted, and only while the policy allows every membership.
func TestMultiTenantTokenRefusals(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)

	t.Run("signed memberships that are not the record's", func(t *testing.T) {
		g := NewWithT(t)
		m := h.apiToken(iss, tokenSpec{memberships: twoTenants})
		h.updateStatus(m, func(s *tokensv1.APITokenStatus) { s.Current.Claims.Memberships[1].Role = "editor" })
		g.Eventually(h.reason(m.token)).WithTimeout(informerEvent).Should(Equal(validatorapi.ReasonClaimsMismatch))

		// A single-tenant JWT for a record of memberships.
		single := h.apiToken(iss, tokenSpec{})
		h.updateStatus(single, func(s *tokensv1.APITokenStatus) {
			s.Current.Claims.Tenant, s.Current.Claims.Role = "", ""
			s.Current.Claims.Memberships = []tokensv1.Membership{{Tenant: "acme", Role: "editor"}}
		})
		g.Eventually(h.reason(single.token)).WithTimeout(informerEvent).Should(Equal(validatorapi.ReasonClaimsMismatch))
	})

	t.Run("a membership the policy no longer allows refuses the token", func(t *testing.T) {
		g := NewWithT(t)
		m := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, memberships: twoTenants})
		h.waitIndexed(m)
		g.Expect(h.authorize(m.token, "tenant=acme").StatusCode).To(Equal(200))
		h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) { s.Tenants[1].Namespaces = []string{"somewhere-else"} })
		g.Eventually(h.reason(m.token)).WithTimeout(informerEvent).Should(Equal(validatorapi.ReasonPolicy))
		h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) { s.Tenants[1].Namespaces = []string{h.ns} })
		g.Eventually(h.authorizeStatus(m.token, "tenant=globex&role=viewer")).WithTimeout(informerEvent).Should(Equal(200))
	})
}
