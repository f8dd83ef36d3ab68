package exchange

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

func enabled() *tokensv1.ExchangeSpec {
	return &tokensv1.ExchangeSpec{Enabled: true, DefaultLifetime: metav1.Duration{Duration: 600 * time.Second},
		MaxLifetime: metav1.Duration{Duration: 24 * time.Hour}, MaxDepth: 4, RatePerMinute: 1000, Audiences: []string{"partner-api"}}
}

// verify checks tok's signature with the issuer's published keys, as an offline
// verifier would, and returns its claims.
func verify(t *testing.T, h *harness, iss *issuerFixture, tok string) *token.Claims {
	t.Helper()
	c, err := h.idx.Verifier().Verify(tok)
	if err != nil {
		t.Fatalf("exchanged token does not verify: %v", err)
	}
	if c.Issuer != iss.url {
		t.Fatalf("iss %q", c.Issuer)
	}
	return c
}

// RFC 8693: a JWT parent buys a shorter, narrower JWT that names it, and the
// validator accepts the child with the narrowed identity.
func TestOAuthTokenExchange(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{scopes: []string{"reports:read", "reports:write"}})

	r := h.oauth(exchangeForm(p.token, "scope", "reports:read", "role", "viewer", "expires_in", "300", "audience", "partner-api"))
	h.g.Expect(r.status).To(Equal(http.StatusOK), r.body)
	h.g.Expect(r.header.Get("Cache-Control")).To(Equal("no-store"))
	var out exchangeapi.TokenExchangeResponse
	r.json(&out)
	h.g.Expect(out.IssuedTokenType).To(Equal(exchangeapi.TokenTypeJWT))
	h.g.Expect(out.TokenType).To(Equal("Bearer"))
	h.g.Expect(out.ExpiresIn).To(BeEquivalentTo(300))
	h.g.Expect(out.Scope).To(Equal("reports:read"))

	c := verify(t, h, iss, out.AccessToken)
	h.g.Expect(c.Subject).To(Equal(token.Subject(p.obj.Namespace, p.obj.Name)))
	h.g.Expect(c.Parent).To(Equal(p.issued.TokenID))
	h.g.Expect(c.Depth).To(Equal(1))
	h.g.Expect(c.ID).NotTo(Equal(p.issued.TokenID))
	h.g.Expect(c.Role).To(Equal("viewer"))
	h.g.Expect(c.Scopes).To(Equal([]string{"reports:read"}))
	h.g.Expect(c.Audience).To(Equal([]string{"partner-api"}))
	h.g.Expect(c.ExpiresAt.Sub(c.IssuedAt)).To(Equal(300 * time.Second))

	v := h.validate(out.AccessToken, validatorapi.Requirement{Tenant: "acme", Role: "viewer"})
	h.g.Expect(v.Allowed).To(BeTrue(), v.Reason)
	h.g.Expect(v.Identity.TokenID).To(Equal(c.ID))
	h.g.Expect(v.Identity.ParentTokenID).To(Equal(p.issued.TokenID))
	h.g.Expect(v.Identity.Name).To(Equal(p.obj.Name))
	h.g.Expect(v.Identity.Role).To(Equal("viewer"))
	// The child holds the narrowed role, not its parent's.
	h.g.Expect(h.validate(out.AccessToken, validatorapi.Requirement{Role: "editor"}).Reason).To(Equal(validatorapi.ReasonInsufficientRole))

	// The audit line names the APIToken and both token IDs, never a token.
	h.g.Expect(h.audit.text()).To(ContainSubstring(`"apiToken"="` + p.obj.Namespace + "/" + p.obj.Name + `"`))
	h.g.Expect(h.audit.text()).To(ContainSubstring(c.ID))
	h.g.Expect(h.audit.text()).NotTo(ContainSubstring(p.token))
	h.g.Expect(h.audit.text()).NotTo(ContainSubstring(out.AccessToken))
}

// Every parameter error and every bound of RFC 8693 requests, each answered with its
// RFC 6749 error code and a description that names what is wrong.
func TestOAuthErrors(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{scopes: []string{"read"}, expiresIn: time.Hour})
	opaque := h.apiToken(iss, parentSpec{format: tokensv1.FormatOpaque})
	off := h.issuer(&tokensv1.ExchangeSpec{})
	pOff := h.apiToken(off, parentSpec{})

	form := func(extra ...string) url.Values { return exchangeForm(p.token, extra...) }
	without := func(name string) url.Values { f := form(); f.Del(name); return f }
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		desc   string
	}{
		{"wrong grant type", func() url.Values { f := form(); f.Set("grant_type", "client_credentials"); return f }(), 400, exchangeapi.OAuthUnsupportedGrantType, "grant_type must be"},
		{"no grant type", without("grant_type"), 400, exchangeapi.OAuthUnsupportedGrantType, "grant_type"},
		{"no subject token", without("subject_token"), 400, exchangeapi.OAuthInvalidRequest, "subject_token is required"},
		{"no subject token type", without("subject_token_type"), 400, exchangeapi.OAuthInvalidRequest, "subject_token_type is required"},
		{"unknown subject token type", func() url.Values {
			f := form()
			f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:saml2")
			return f
		}(), 400, exchangeapi.OAuthInvalidRequest, "subject_token_type must be"},
		{"jwt type for an opaque token", func() url.Values {
			f := exchangeForm(opaque.token)
			f.Set("subject_token_type", exchangeapi.TokenTypeJWT)
			return f
		}(), 400, exchangeapi.OAuthInvalidRequest, "is not a JWT"},
		{"requested type not JWT", form("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, exchangeapi.OAuthInvalidRequest, "issues JWTs only"},
		{"actor token", form("actor_token", "x", "actor_token_type", exchangeapi.TokenTypeJWT), 400, exchangeapi.OAuthInvalidRequest, "actor_token is not supported"},
		{"resource", form("resource", "https://api.example"), 400, exchangeapi.OAuthInvalidTarget, "name the audience"},
		{"repeated parameter", form("role", "viewer", "role", "editor"), 400, exchangeapi.OAuthInvalidRequest, "role is given more than once"},
		{"expires_in not a number", form("expires_in", "10m"), 400, exchangeapi.OAuthInvalidRequest, "expires_in must be a positive whole number of seconds"},
		{"expires_in zero", form("expires_in", "0"), 400, exchangeapi.OAuthInvalidRequest, "expires_in must be"},
		{"tenant not a DNS label", form("tenant", "Acme Corp"), 400, exchangeapi.OAuthInvalidRequest, "tenant is not a DNS label"},
		{"above the exchange maximum", form("expires_in", "86401"), 400, exchangeapi.OAuthInvalidRequest, "exchange maximum of 86400 seconds"},
		{"above the parent's life", form("expires_in", "7200"), 400, exchangeapi.OAuthInvalidRequest, "the token itself remains valid"},
		{"another tenant", form("tenant", "globex"), 400, exchangeapi.OAuthInvalidTarget, `tenant "globex" is not the token's tenant`},
		{"a sub-tenant the issuer does not let it choose", form("sub_tenant", "payments"), 400, exchangeapi.OAuthInvalidTarget, "allowSubTenantSelection"},
		{"a wider role", form("role", "admin"), 400, exchangeapi.OAuthInvalidScope, `role "admin" is not granted by the token's role "editor"`},
		{"a new scope", form("scope", "read write"), 400, exchangeapi.OAuthInvalidScope, `scope "write"`},
		{"a foreign audience", form("audience", "kubernetes"), 400, exchangeapi.OAuthInvalidTarget, `audience "kubernetes"`},
		{"exchange disabled", exchangeForm(pOff.token), 400, exchangeapi.OAuthUnauthorizedClient, "does not allow token exchange"},
		{"malformed subject token", exchangeForm("a.b.c"), 401, exchangeapi.OAuthInvalidGrant, "malformed"},
		{"unknown opaque token", exchangeForm("apt_01JZZZZZZZZZZZZZZZZZZZZZZZ_" + strings.Repeat("A", 49)), 401, exchangeapi.OAuthInvalidGrant, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.oauth(tc.form)
			var e exchangeapi.OAuthError
			r.json(&e)
			if r.status != tc.status || e.Error != tc.code || !strings.Contains(e.Description, tc.desc) {
				t.Fatalf("got %d %+v, want %d %s with %q", r.status, e, tc.status, tc.code, tc.desc)
			}
			if strings.Contains(r.body, p.token) {
				t.Fatal("the answer holds the subject token")
			}
		})
	}

	// The body is the only place for parameters, and it must be a form.
	req, _ := http.NewRequest(http.MethodPost, h.exURL+exchangeapi.PathOAuthToken+"?"+form().Encode(), nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	h.g.Expect(h.do(req).body).To(ContainSubstring("not the URL"))
	req, _ = http.NewRequest(http.MethodPost, h.exURL+exchangeapi.PathOAuthToken, strings.NewReader(`{"grant_type":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	h.g.Expect(h.do(req).body).To(ContainSubstring("must be a form"))
}

// The partner style: an API key ID and secret in headers, the tenant and sub-tenant in
// headers, 24 hours, every answer JSON.
func TestPartnerAPIKey(t *testing.T) {
	h := start(t, harnessFlags())
	x := enabled()
	x.RequireTenant, x.RequireSubTenant, x.AllowSubTenantSelection = true, true, true
	iss := h.issuer(x)
	p := h.apiToken(iss, parentSpec{format: tokensv1.FormatOpaque})
	id, secret, _ := strings.Cut(strings.TrimPrefix(p.token, "apt_"), "_")
	key := func(extra map[string]string) map[string]string {
		m := map[string]string{"X-Api-Key": id, "X-Api-Secret": secret}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	both := map[string]string{"X-Tenant-Id": "acme", "X-Sub-Tenant-Id": "payments"}

	r := h.simple("expiration=86400", key(both))
	h.g.Expect(r.status).To(Equal(http.StatusOK), r.body)
	var out exchangeapi.TokenResponse
	r.json(&out)
	h.g.Expect(out.ExpiresIn).To(BeEquivalentTo(86400))
	h.g.Expect(out.ExpiresAt).To(Equal(h.clk.Now().Add(24 * time.Hour).UTC()))
	c := verify(t, h, iss, out.Token)
	h.g.Expect(c.ID).To(Equal(out.TokenID))
	h.g.Expect([]string{c.Tenant, c.SubTenant}).To(Equal([]string{"acme", "payments"}))
	v := h.validate(out.Token, validatorapi.Requirement{Tenant: "acme", SubTenant: "payments"})
	h.g.Expect(v.Allowed).To(BeTrue(), v.Reason)
	h.g.Expect(h.validate(out.Token, validatorapi.Requirement{SubTenant: "billing"}).Reason).To(Equal(validatorapi.ReasonSubTenantMismatch))

	for _, tc := range []struct {
		name    string
		query   string
		headers map[string]string
		status  int
		code    string
		msg     string
	}{
		{"no tenant", "", key(map[string]string{"X-Sub-Tenant-Id": "payments"}), 400, string(policy.RuleTenantRequired), "Tenant ID is required"},
		{"no sub-tenant", "", key(map[string]string{"X-Tenant-Id": "acme"}), 400, string(policy.RuleSubTenantRequired), "Sub-tenant ID is required"},
		{"another tenant", "", key(map[string]string{"X-Tenant-Id": "globex", "X-Sub-Tenant-Id": "payments"}), 404, string(policy.RuleTenantNarrowing), "globex"},
		{"query and header disagree", "tenant=globex", key(both), 400, exchangeapi.CodeInvalidParameter, "tenant differs between the query and header X-Tenant-Id"},
		{"a repeated query parameter", "expiration=60&expiration=70", key(both), 400, exchangeapi.CodeInvalidParameter, "expiration is given more than once"},
		// Not the header's tenant, which the unreadable query parameter may disagree with.
		{"a query that cannot be read", "tenant=glob%zzex", key(both), 400, exchangeapi.CodeInvalidParameter, "the query cannot be read"},
		{"a bad expiration", "expiration=-5", key(both), 400, exchangeapi.CodeInvalidParameter, "expiration must be a positive whole number of seconds"},
		{"a wrong secret", "", map[string]string{"X-Api-Key": id, "X-Api-Secret": strings.Repeat("A", len(secret)), "X-Tenant-Id": "acme", "X-Sub-Tenant-Id": "payments"}, 401, string(token.ReasonBadChecksum), "mistyped"},
		{"no credential", "", both, 401, validatorapi.ReasonMissing, "no token"},
		{"a wider role", "role=admin", key(both), 403, string(policy.RuleRoleNarrowing), "not granted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.simple(tc.query, tc.headers)
			h.g.Expect(r.header.Get("Content-Type")).To(Equal("application/json"))
			var e exchangeapi.Error
			r.json(&e)
			if r.status != tc.status || e.Error != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("got %d %+v, want %d %s with %q", r.status, e, tc.status, tc.code, tc.msg)
			}
			if strings.Contains(r.body, secret) {
				t.Fatal("the answer holds the secret")
			}
		})
	}
}

// The credential may come in every place the validator reads one.
func TestCredentialPlaces(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{})
	for name, headers := range map[string]map[string]string{
		"bearer":       bearerAuth(p.token),
		"token header": {"Token": p.token},
	} {
		r := h.simple("", headers)
		h.g.Expect(r.status).To(Equal(http.StatusOK), name+": "+r.body)
		var out exchangeapi.TokenResponse
		r.json(&out)
		// The default lifetime, 600 seconds.
		h.g.Expect(out.ExpiresIn).To(BeEquivalentTo(600), name)
	}

	// Two credentials in one place are a 400, as at the validator: which one is the
	// token would be a guess.
	req, err := http.NewRequest(http.MethodGet, h.exURL+exchangeapi.PathToken, nil)
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Add("Authorization", "Bearer "+p.token)
	req.Header.Add("Authorization", "Bearer "+p.token)
	r := h.do(req)
	var e exchangeapi.Error
	r.json(&e)
	h.g.Expect(r.status).To(Equal(http.StatusBadRequest))
	h.g.Expect(e).To(Equal(exchangeapi.Error{Error: exchangeapi.CodeInvalidParameter, Message: "the request carries more than one Authorization header"}))
}

// Too many exchanges with one token: 429 with Retry-After and the wait in words;
// other tokens keep their own budget.
func TestRateLimit(t *testing.T) {
	h := start(t, harnessFlags())
	x := enabled()
	x.RatePerMinute = 3
	iss := h.issuer(x)
	p := h.apiToken(iss, parentSpec{})
	other := h.apiToken(iss, parentSpec{})
	for range 3 {
		h.exchangeOK(p.token, "")
	}
	r := h.simple("", bearerAuth(p.token))
	var e exchangeapi.Error
	r.json(&e)
	h.g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	h.g.Expect(r.header.Get("Retry-After")).To(Equal("20"))
	h.g.Expect(e.Error).To(Equal(exchangeapi.CodeRateLimited))
	h.g.Expect(e.Message).To(ContainSubstring("try again in 20 seconds"))
	h.exchangeOK(other.token, "")
	// A token exchanged from p spends p's budget, not one of its own.
	r = h.oauth(exchangeForm(p.token))
	h.g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	h.g.Expect(r.header.Get("Retry-After")).To(Equal("20"))
	h.clk.Step(20 * time.Second)
	h.exchangeOK(p.token, "")
}

// Chains: an exchanged token exchanges again, only narrower, up to maxDepth, and
// each link is accepted by the validator.
func TestChain(t *testing.T) {
	h := start(t, harnessFlags())
	x := enabled()
	x.MaxDepth = 2
	iss := h.issuer(x)
	p := h.apiToken(iss, parentSpec{role: "admin", scopes: []string{"a", "b"}})

	child := h.exchangeOK(p.token, "role=editor&scope=a+b&expiration=3600")
	grandchild := h.exchangeOK(child.Token, "role=viewer&scope=a&expiration=600")
	c := verify(t, h, iss, grandchild.Token)
	h.g.Expect(c.Parent).To(Equal(p.issued.TokenID))
	h.g.Expect(c.Depth).To(Equal(2))
	h.g.Expect(h.reason(grandchild.Token)()).To(Equal(validatorapi.ReasonAllowed))

	// A link may not widen what the link before it narrowed.
	r := h.simple("role=editor", bearerAuth(grandchild.Token))
	h.g.Expect(r.status).To(Equal(http.StatusForbidden), r.body)
	r = h.simple("expiration=7200", bearerAuth(child.Token))
	h.g.Expect(r.body).To(ContainSubstring("the token itself remains valid"))
	// The chain is at most maxDepth long.
	r = h.simple("", bearerAuth(grandchild.Token))
	var e exchangeapi.Error
	r.json(&e)
	h.g.Expect(r.status).To(Equal(http.StatusForbidden))
	h.g.Expect(e.Error).To(Equal(string(policy.RuleExchangeDepth)))
}

// Revocation cascades: revoking, retiring, rotating past the grace period or deleting
// the parent refuses every token exchanged from it, down the chain, with the parent's
// reason; and a policy tightened later refuses tokens issued before.
func TestCascade(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())

	chainOf := func(p *parent) []string {
		child := h.exchangeOK(p.token, "expiration=3600")
		grandchild := h.exchangeOK(child.Token, "expiration=600")
		for _, tok := range []string{child.Token, grandchild.Token} {
			h.g.Expect(h.reason(tok)()).To(Equal(validatorapi.ReasonAllowed))
		}
		return []string{child.Token, grandchild.Token}
	}
	expectRefused := func(p *parent, toks []string, reason string) {
		t.Helper()
		h.g.Eventually(h.reason(p.token)).Should(Equal(reason))
		for _, tok := range toks {
			h.g.Expect(h.reason(tok)()).To(Equal(reason))
			h.g.Expect(h.authorizeStatus(tok)).To(Equal(http.StatusUnauthorized))
			h.g.Expect(h.tokenReviewAuthenticated(tok)).To(BeFalse())
		}
	}

	t.Run("revoked", func(t *testing.T) {
		p := h.apiToken(iss, parentSpec{})
		toks := chainOf(p)
		h.g.Eventually(func() error {
			if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(p.obj), p.obj); err != nil {
				return err
			}
			p.obj.Spec.Revoked = true
			return env.Client.Update(h.ctx, p.obj)
		}).Should(Succeed())
		expectRefused(p, toks, validatorapi.ReasonRevoked)
	})
	t.Run("rotated and retired", func(t *testing.T) {
		p := h.apiToken(iss, parentSpec{})
		toks := chainOf(p)
		next, issued := h.mint(iss, p.obj, parentSpec{format: tokensv1.FormatJWT, role: "editor", expiresIn: 48 * time.Hour})
		at := metav1.NewTime(h.clk.Now().Add(time.Minute))
		h.updateStatus(p, func(s *tokensv1.APITokenStatus) {
			prev := *s.Current
			prev.RetireAt = &at
			s.PreviousTokens, s.Current = []tokensv1.IssuedToken{prev}, &issued
		})
		// Within the grace period the old token and its descendants still serve.
		h.g.Eventually(h.reason(next)).Should(Equal(validatorapi.ReasonAllowed))
		h.g.Expect(h.reason(toks[1])()).To(Equal(validatorapi.ReasonAllowed))
		h.clk.Step(time.Minute)
		expectRefused(p, toks, validatorapi.ReasonRetired)
	})
	t.Run("deleted", func(t *testing.T) {
		p := h.apiToken(iss, parentSpec{})
		toks := chainOf(p)
		h.g.Expect(env.Client.Delete(h.ctx, p.obj)).To(Succeed())
		expectRefused(p, toks, string(token.ReasonUnknownToken))
	})
	t.Run("exchange disabled since", func(t *testing.T) {
		p := h.apiToken(iss, parentSpec{})
		toks := chainOf(p)
		h.updateExchange(iss, func(x *tokensv1.ExchangeSpec) { x.Enabled = false })
		for _, tok := range toks {
			h.g.Eventually(h.reason(tok)).Should(Equal(validatorapi.ReasonPolicy))
		}
		// The parent itself is untouched.
		h.g.Expect(h.reason(p.token)()).To(Equal(validatorapi.ReasonAllowed))
	})
}

// A key rotation: the exchange signs with the new current key at once, reading the
// key Secret again, and tokens signed with the old key stay valid while it is published.
func TestKeyRotation(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{})
	before := h.exchangeOK(p.token, "")
	next, err := token.GenerateKey(token.ES256)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.publish(iss, next)
	after := h.exchangeOK(p.token, "")
	h.g.Expect(verify(t, h, iss, after.Token).KeyID).To(Equal(next.ID))
	h.g.Expect(verify(t, h, iss, before.Token).KeyID).To(Equal(iss.keys[0].ID))
	h.g.Eventually(h.reason(after.Token)).Should(Equal(validatorapi.ReasonAllowed))
	h.g.Expect(h.reason(before.Token)()).To(Equal(validatorapi.ReasonAllowed))
}

// Without its key Secret the exchange answers 503, and says nothing of keys.
func TestMissingKeySecret(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{})
	next, err := token.GenerateKey(token.ES256)
	h.g.Expect(err).NotTo(HaveOccurred())
	// A new current key, published in status, whose private half the Secret lacks.
	h.publishStatus(iss, next)
	r := h.simple("", bearerAuth(p.token))
	var e exchangeapi.Error
	r.json(&e)
	h.g.Expect(r.status).To(Equal(http.StatusServiceUnavailable), r.body)
	h.g.Expect(e.Error).To(Equal(exchangeapi.CodeUnavailable))
	h.g.Expect(r.body).NotTo(ContainSubstring("PRIVATE"))
	// Once the Secret holds it, the exchange signs with it.
	h.publish(iss, next)
	h.g.Expect(verify(t, h, iss, h.exchangeOK(p.token, "").Token).KeyID).To(Equal(next.ID))
}
