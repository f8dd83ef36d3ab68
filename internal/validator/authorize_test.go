package validator

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// decisionCase is one request and the answer /authorize and /v1/validate must give.
type decisionCase struct {
	name    string
	token   string
	query   string
	headers map[string]string
	status  int
	reason  string
	// challenge is a substring of WWW-Authenticate; "" means the header is absent.
	challenge string
}

// TestDecisions covers every answer of /authorize, each also asked of /v1/validate,
// with tokens written to a real API server as the controller would write them.
func TestDecisions(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)

	editor := h.apiToken(iss, tokenSpec{subTenant: "payments", scopes: []string{"reports:read", "invoices:write"}, audiences: []string{"billing-api"}})
	viewerOpaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	admin := h.apiToken(iss, tokenSpec{role: "admin"})
	expired := h.apiToken(iss, tokenSpec{expiresIn: -time.Hour})
	expiredOpaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, expiresIn: -time.Second})
	revoked := h.apiToken(iss, tokenSpec{})
	h.updateSpec(revoked, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
	// The status says viewer but the signed token says admin: not what was minted.
	mismatch := h.apiToken(iss, tokenSpec{role: "admin"})
	h.updateStatus(mismatch, func(s *tokensv1.APITokenStatus) { s.Current.Claims.Role = "viewer" })
	for _, m := range []*minted{editor, viewerOpaque, admin, expired, expiredOpaque, revoked, mismatch} {
		h.waitIndexed(m)
	}
	h.g.Eventually(func() bool { return h.idx.Token(revoked.issued.TokenID).Owner.Revoked() }).Should(BeTrue())
	h.g.Eventually(func() string { return h.idx.Token(mismatch.issued.TokenID).Role() }).Should(Equal("viewer"))

	// A JWT signed by the issuer but never recorded in any APIToken status.
	unknownJWT, _ := h.mint(iss, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "ghost"}}, tokenSpec{})
	unknownOpaque, err := token.MintOpaque("apt", token.NewTokenID())
	h.g.Expect(err).NotTo(HaveOccurred())
	// The secret of a known ID, guessed wrong.
	wrongSecret, err := token.MintOpaque("apt", viewerOpaque.issued.TokenID)
	h.g.Expect(err).NotTo(HaveOccurred())
	// Signed by another key that claims the issuer's kid.
	other, err := token.GenerateKey(token.ES256)
	h.g.Expect(err).NotTo(HaveOccurred())
	forged, err := token.MintJWT(&token.SigningKey{ID: iss.keys[0].ID, Algorithm: token.ES256, Signer: other.Signer},
		token.Claims{Issuer: iss.url, Subject: "apitoken:" + h.ns + ":" + editor.obj.Name, ExpiresAt: h.clk.Now().Add(time.Hour), ID: editor.issued.TokenID, Tenant: "acme", Role: "editor"})
	h.g.Expect(err).NotTo(HaveOccurred())
	// Signed by a key no issuer publishes.
	stranger, err := token.MintJWT(other, token.Claims{Issuer: iss.url, ExpiresAt: h.clk.Now().Add(time.Hour), ID: editor.issued.TokenID})
	h.g.Expect(err).NotTo(HaveOccurred())
	typo := viewerOpaque.token[:len(viewerOpaque.token)-1] + flip(viewerOpaque.token[len(viewerOpaque.token)-1])

	const invalid = `error="invalid_token"`
	for _, tc := range []decisionCase{
		{name: "JWT with every requirement met", token: editor.token, query: "tenant=acme&subTenant=payments&role=editor", status: 200, reason: validatorapi.ReasonAllowed},
		{name: "JWT, included role", token: editor.token, query: "tenant=acme&role=viewer", status: 200, reason: validatorapi.ReasonAllowed},
		{name: "JWT, transitively included role", token: admin.token, query: "role=viewer", status: 200, reason: validatorapi.ReasonAllowed},
		{name: "JWT, no requirement", token: editor.token, status: 200, reason: validatorapi.ReasonAllowed},
		{name: "opaque token", token: viewerOpaque.token, query: "tenant=acme&role=viewer", status: 200, reason: validatorapi.ReasonAllowed},
		{name: "requirements from headers", token: editor.token, headers: map[string]string{validatorapi.HeaderRequiredTenant: "acme", validatorapi.HeaderRequiredSubTenant: "payments", validatorapi.HeaderRequiredRole: "editor"}, status: 200, reason: validatorapi.ReasonAllowed},
		{name: "query and header agreeing", token: editor.token, query: "tenant=acme", headers: map[string]string{validatorapi.HeaderRequiredTenant: "acme"}, status: 200, reason: validatorapi.ReasonAllowed},

		{name: "missing token", status: 401, reason: validatorapi.ReasonMissing, challenge: `Bearer realm="apitoken"`},
		{name: "malformed token", token: "not-a-token", status: 401, reason: string(token.ReasonMalformed), challenge: invalid},
		{name: "malformed JWT", token: "!!!.e30.c2ln", status: 401, reason: string(token.ReasonMalformed), challenge: invalid},
		{name: "too large", token: strings.Repeat("a", token.MaxTokenLength+1), status: 401, reason: string(token.ReasonTooLarge), challenge: invalid},
		{name: "opaque token with a typo", token: typo, status: 401, reason: string(token.ReasonBadChecksum), challenge: invalid},
		{name: "bad signature", token: forged, status: 401, reason: string(token.ReasonBadSignature), challenge: invalid},
		{name: "JWT without kid", token: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", status: 401, reason: string(token.ReasonUnknownKey), challenge: invalid},
		{name: "unknown signing key", token: stranger, status: 401, reason: string(token.ReasonUnknownKey), challenge: invalid},
		{name: "expired JWT", token: expired.token, status: 401, reason: string(token.ReasonExpired), challenge: `error_description="the token expired"`},
		{name: "expired opaque token", token: expiredOpaque.token, status: 401, reason: string(token.ReasonExpired), challenge: invalid},
		{name: "revoked", token: revoked.token, status: 401, reason: validatorapi.ReasonRevoked, challenge: `error_description="the token was revoked"`},
		{name: "unknown JWT", token: unknownJWT, status: 401, reason: string(token.ReasonUnknownToken), challenge: invalid},
		{name: "unknown opaque token", token: unknownOpaque.Token, status: 401, reason: string(token.ReasonUnknownToken), challenge: invalid},
		{name: "opaque token with a wrong secret", token: wrongSecret.Token, status: 401, reason: string(token.ReasonUnknownToken), challenge: invalid},
		{name: "claims differ from the record", token: mismatch.token, status: 401, reason: validatorapi.ReasonClaimsMismatch, challenge: invalid},

		{name: "role too low", token: viewerOpaque.token, query: "tenant=acme&role=editor", status: 403, reason: validatorapi.ReasonInsufficientRole, challenge: `error="insufficient_scope"`},
		{name: "role the issuer does not have", token: admin.token, query: "role=owner", status: 403, reason: validatorapi.ReasonInsufficientRole, challenge: `error="insufficient_scope"`},
		{name: "other tenant", token: editor.token, query: "tenant=globex&role=viewer", status: 404, reason: validatorapi.ReasonTenantMismatch},
		{name: "other sub-tenant", token: editor.token, query: "tenant=acme&subTenant=shipping", status: 404, reason: validatorapi.ReasonSubTenantMismatch},
		{name: "sub-tenant required of a token without one", token: admin.token, query: "subTenant=payments", status: 404, reason: validatorapi.ReasonSubTenantMismatch},
		{name: "tenant checked before role", token: viewerOpaque.token, query: "tenant=globex&role=admin", status: 404, reason: validatorapi.ReasonTenantMismatch},

		{name: "tenant not a DNS label", token: editor.token, query: "tenant=Acme_Corp", status: 400, reason: validatorapi.ReasonBadRequirement, challenge: `error="invalid_request"`},
		{name: "role not a DNS label", token: editor.token, headers: map[string]string{validatorapi.HeaderRequiredRole: "-editor"}, status: 400, reason: validatorapi.ReasonBadRequirement, challenge: `error="invalid_request"`},
		{name: "query and header disagreeing", token: editor.token, query: "tenant=acme", headers: map[string]string{validatorapi.HeaderRequiredTenant: "globex"}, status: 400, reason: validatorapi.ReasonBadRequirement, challenge: `error="invalid_request"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			headers := map[string]string{}
			for k, v := range tc.headers {
				headers[k] = v
			}
			if tc.token != "" {
				headers["Authorization"] = "Bearer " + tc.token
			}
			resp, body := h.request(http.MethodGet, validatorapi.PathAuthorize+"?"+tc.query, nil, headers)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			if tc.challenge == "" {
				g.Expect(resp.Header.Values("WWW-Authenticate")).To(BeEmpty())
			} else {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(tc.challenge))
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(HavePrefix(`Bearer realm="apitoken"`))
			}
			if tc.reason == validatorapi.ReasonMissing {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(`Bearer realm="apitoken"`), "RFC 6750: no error code without credentials")
			}
			g.Expect(resp.Header.Get("Cache-Control")).To(Equal("no-store"))
			if tc.status != 200 {
				g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(BeEmpty())
			}
			if tc.token != "" {
				g.Expect(body).NotTo(ContainSubstring(tc.token))
			}

			// The same decision as JSON. Headers carry the requirement only for
			// /authorize, so the JSON request spells it out.
			req := validatorapi.ValidateRequest{Token: tc.token}
			if tc.headers == nil {
				req.Requirement = requirementFromQuery(tc.query)
			} else {
				req.Requirement = validatorapi.Requirement{Tenant: tc.headers[validatorapi.HeaderRequiredTenant], SubTenant: tc.headers[validatorapi.HeaderRequiredSubTenant], Role: tc.headers[validatorapi.HeaderRequiredRole]}
				if q := requirementFromQuery(tc.query); q.Tenant != "" && req.Tenant != q.Tenant {
					return // a conflict exists only between query and headers
				}
			}
			resp, body = h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(req), map[string]string{"Content-Type": "application/json"})
			g.Expect(resp.StatusCode).To(Equal(200), body)
			var out validatorapi.ValidateResponse
			g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
			g.Expect(out.Status).To(Equal(tc.status))
			g.Expect(out.Reason).To(Equal(tc.reason))
			g.Expect(out.Allowed).To(Equal(tc.status == 200))
			if tc.token != "" {
				g.Expect(body).NotTo(ContainSubstring(tc.token))
			}
		})
	}

	t.Run("identity headers", func(t *testing.T) {
		g := NewWithT(t)
		resp := h.authorize(editor.token, "tenant=acme&role=viewer")
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(Equal(editor.issued.TokenID))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenTenant)).To(Equal("acme"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenSubTenant)).To(Equal("payments"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenRole)).To(Equal("editor"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenSubject)).To(Equal("apitoken:" + h.ns + ":" + editor.obj.Name))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenScopes)).To(Equal("reports:read invoices:write"))

		resp = h.authorize(viewerOpaque.token, "")
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(Equal(viewerOpaque.issued.TokenID))
		g.Expect(resp.Header.Values(validatorapi.HeaderTokenSubTenant)).To(BeEmpty())
		g.Expect(resp.Header.Values(validatorapi.HeaderTokenScopes)).To(BeEmpty())
	})

	t.Run("any method", func(t *testing.T) {
		// nginx auth_request and Envoy keep the original request's method.
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead} {
			resp, _ := h.request(m, validatorapi.PathAuthorize+"?role=editor", nil, map[string]string{"Authorization": "Bearer " + editor.token})
			NewWithT(t).Expect(resp.StatusCode).To(Equal(200), m)
		}
	})

	t.Run("identity in JSON", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: admin.token, Requirement: validatorapi.Requirement{Tenant: "acme", Role: "viewer"}}), nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		var out validatorapi.ValidateResponse
		g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
		g.Expect(out.Identity).NotTo(BeNil())
		g.Expect(*out.Identity).To(Equal(expectedIdentity(admin, "admin", "editor", "viewer")))
	})

	t.Run("unreadable validate body", func(t *testing.T) {
		g := NewWithT(t)
		resp, body := h.request(http.MethodPost, validatorapi.PathValidate, []byte(`{"token": `), nil)
		g.Expect(resp.StatusCode).To(Equal(400))
		var out validatorapi.ValidateResponse
		g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
		g.Expect(out.Reason).To(Equal(validatorapi.ReasonBadRequest))
		g.Expect(out.Message).To(Equal("the body is not a validate request"))

		// A requirement under a name the validator does not know is not ignored: the
		// request would require nothing. Nor is a second requirement after the first.
		for body, msg := range map[string]string{
			`{"token":"` + admin.token + `","tennant":"globex"}`:  "the body is not a validate request: its fields are token, tenant, subTenant and role, and it has another",
			`{"token":"` + admin.token + `"} {"tenant":"globex"}`: "the body is not a validate request: something follows its JSON object",
		} {
			resp, body := h.request(http.MethodPost, validatorapi.PathValidate, []byte(body), nil)
			g.Expect(resp.StatusCode).To(Equal(400), body)
			g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
			g.Expect(out).To(Equal(validatorapi.ValidateResponse{Status: 400, Reason: validatorapi.ReasonBadRequest, Message: msg}))
			g.Expect(body).NotTo(ContainSubstring(admin.token))
		}
		resp, _ = h.request(http.MethodGet, validatorapi.PathValidate, nil, nil)
		g.Expect(resp.StatusCode).To(Equal(http.StatusMethodNotAllowed))
	})
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func requirementFromQuery(q string) validatorapi.Requirement {
	var r validatorapi.Requirement
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "tenant":
			r.Tenant = v
		case "subTenant":
			r.SubTenant = v
		case "role":
			r.Role = v
		}
	}
	return r
}

// expectedIdentity is the identity /v1/validate must report for m.
func expectedIdentity(m *minted, roles ...string) validatorapi.IdentityResponse {
	return validatorapi.IdentityResponse{
		TokenID: m.issued.TokenID, Format: string(m.issued.Format), Namespace: m.obj.Namespace, Name: m.obj.Name,
		UID: string(m.obj.UID), Subject: "apitoken:" + m.obj.Namespace + ":" + m.obj.Name, Issuer: m.obj.Spec.IssuerRef.Name,
		Tenant: m.issued.Claims.Tenant, SubTenant: m.issued.Claims.SubTenant, Role: m.issued.Claims.Role,
		Roles: roles, Scopes: m.issued.Claims.Scopes, Audiences: m.issued.Claims.Audiences,
		ExpiresAt: m.issued.ExpiresAt.UTC(),
	}
}

// TestCredentialSources covers every place a token may come from.
func TestCredentialSources(t *testing.T) {
	h := start(t, Options{TokenHeaders: []string{"X-Api-Key"}, IDHeader: "X-Api-Key-Id", SecretHeader: "X-Api-Key-Secret"})
	iss := h.issuer(token.EdDSA, true)
	jwt := h.apiToken(iss, tokenSpec{})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)
	// "apt_<id>_<secret><checksum>"
	prefixed, secret, _ := strings.Cut(strings.TrimPrefix(opaque.token, "apt_"), "_")
	prefixed = "apt_" + prefixed

	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
		id      string
	}{
		{"Authorization: Bearer, JWT", map[string]string{"Authorization": "Bearer " + jwt.token}, 200, jwt.issued.TokenID},
		{"Authorization: Bearer, opaque", map[string]string{"Authorization": "Bearer " + opaque.token}, 200, opaque.issued.TokenID},
		{"scheme is case-insensitive", map[string]string{"Authorization": "bearer " + jwt.token}, 200, jwt.issued.TokenID},
		{"token header, JWT", map[string]string{"X-Api-Key": jwt.token}, 200, jwt.issued.TokenID},
		{"token header, opaque", map[string]string{"X-Api-Key": opaque.token}, 200, opaque.issued.TokenID},
		{"ID and secret headers", map[string]string{"X-Api-Key-Id": prefixed, "X-Api-Key-Secret": secret}, 200, opaque.issued.TokenID},
		{"ID without prefix and secret headers", map[string]string{"X-Api-Key-Id": opaque.issued.TokenID, "X-Api-Key-Secret": secret}, 200, opaque.issued.TokenID},
		{"ID header alone", map[string]string{"X-Api-Key-Id": prefixed}, 401, ""},
		{"ID and a wrong secret", map[string]string{"X-Api-Key-Id": prefixed, "X-Api-Key-Secret": strings.Repeat("A", len(secret))}, 401, ""},
		{"another scheme is no token", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, 401, ""},
		{"another scheme, then a token header", map[string]string{"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": jwt.token}, 200, jwt.issued.TokenID},
		{"Bearer comes first", map[string]string{"Authorization": "Bearer nonsense", "X-Api-Key": jwt.token}, 401, ""},
		{"token header before ID and secret", map[string]string{"X-Api-Key": jwt.token, "X-Api-Key-Id": prefixed, "X-Api-Key-Secret": "x"}, 200, jwt.issued.TokenID},
		{"unconfigured header is ignored", map[string]string{"X-Token": jwt.token}, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			resp, _ := h.request(http.MethodGet, validatorapi.PathAuthorize+"?tenant=acme", nil, tc.headers)
			g.Expect(resp.StatusCode).To(Equal(tc.status))
			g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(Equal(tc.id))
		})
	}
}

// TestTenantMismatchStatus: behind nginx auth_request, which passes on only 401 and
// 403, a token of another tenant is answered 403 rather than 404.
func TestTenantMismatchStatus(t *testing.T) {
	h := start(t, Options{TenantMismatchStatus: http.StatusForbidden})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{subTenant: "payments"})
	h.waitIndexed(m)
	g := NewWithT(t)
	for _, q := range []string{"tenant=globex", "tenant=acme&subTenant=shipping"} {
		resp := h.authorize(m.token, q)
		g.Expect(resp.StatusCode).To(Equal(403), q)
		g.Expect(resp.Header.Values("WWW-Authenticate")).To(BeEmpty(), "not a scope problem")
	}
	g.Expect(h.authorize(m.token, "tenant=acme&role=admin").Header.Get("WWW-Authenticate")).To(ContainSubstring("insufficient_scope"))
}

// TestRateLimits: a token over its rate and a client over its failed attempts get 429
// with Retry-After, until the fake clock refills their budget.
func TestRateLimits(t *testing.T) {
	t.Run("per token", func(t *testing.T) {
		h := start(t, Options{Limits: RateLimits{TokenRate: 0.5, TokenBurst: 2}})
		iss := h.issuer(token.ES256, true)
		a := h.apiToken(iss, tokenSpec{})
		b := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque})
		h.waitIndexed(a)
		h.waitIndexed(b)
		g := NewWithT(t)
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
		resp := h.authorize(a.token, "")
		g.Expect(resp.StatusCode).To(Equal(429))
		g.Expect(resp.Header.Get("Retry-After")).To(Equal("2"))
		g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(BeEmpty())

		// Another token has its own budget; JSON callers get 429 too.
		g.Expect(h.authorize(b.token, "").StatusCode).To(Equal(200))
		resp, body := h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: a.token}), nil)
		g.Expect(resp.StatusCode).To(Equal(429))
		g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
		g.Expect(body).To(ContainSubstring(validatorapi.ReasonTokenRateLimited))

		h.clk.Step(2 * time.Second)
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
	})

	t.Run("per client, failed attempts only", func(t *testing.T) {
		h := start(t, Options{Limits: RateLimits{FailureRate: 0.1, FailureBurst: 3}})
		iss := h.issuer(token.ES256, true)
		a := h.apiToken(iss, tokenSpec{})
		h.waitIndexed(a)
		g := NewWithT(t)
		// Successes and absent tokens cost nothing.
		for range 5 {
			g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
			g.Expect(h.authorize("", "").StatusCode).To(Equal(401))
		}
		for range 3 {
			g.Expect(h.authorize("apt_guess_guess", "").StatusCode).To(Equal(401))
		}
		// The budget is spent: every further refused token waits, and learns no more
		// than 429. A token that authenticates does not: the client address may be
		// shared (a proxy, a NAT), and nobody's failures refuse someone else's token.
		resp := h.authorize("apt_guess_guess", "")
		g.Expect(resp.StatusCode).To(Equal(429))
		g.Expect(resp.Header.Get("Retry-After")).To(Equal("10"))
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
		g.Expect(h.authorize("apt_guess_guess", "").StatusCode).To(Equal(429))

		h.clk.Step(10 * time.Second)
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
		g.Expect(h.authorize("apt_guess_guess", "").StatusCode).To(Equal(401))
		g.Expect(h.authorize("apt_guess_guess", "").StatusCode).To(Equal(429))
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200))
	})

	t.Run("per client, exempt addresses", func(t *testing.T) {
		// The test's client connects from loopback: exempt it, as one would exempt
		// kube-apiserver, whose TokenReviews come from one address for everyone.
		exempt := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		h := start(t, Options{Limits: RateLimits{FailureRate: 0.1, FailureBurst: 3, FailureExempt: exempt}})
		iss := h.issuer(token.ES256, true)
		a := h.apiToken(iss, tokenSpec{})
		h.waitIndexed(a)
		g := NewWithT(t)
		for range 10 {
			g.Expect(h.authorize("apt_guess_guess", "").StatusCode).To(Equal(401))
			resp, _, review := h.review("forged.jwt.token")
			g.Expect(resp.StatusCode).To(Equal(200))
			g.Expect(review.Status.Authenticated).To(BeFalse())
		}
		g.Expect(h.authorize(a.token, "").StatusCode).To(Equal(200), "an exempt client is never refused with 429")
	})
}
