package middleware

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestModes runs the same requests through both checkers, each against the real
// validator server: Validator mode asks its /v1/validate, Offline mode verifies with
// the keys from its /.well-known/jwks.json. They agree except where offline
// verification cannot know (revocation, opaque tokens).
func TestModes(t *testing.T) {
	w := newWorld(t, validator.Options{})
	editor := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", subTenant: "payments", role: "editor"})
	viewer := w.mint(grant{ns: "acme", name: "dash", tenant: "acme", role: "viewer"})
	other := w.mint(grant{ns: "globex", name: "ci", tenant: "globex", role: "admin"})
	expired := w.mint(grant{ns: "acme", name: "old", tenant: "acme", role: "editor", lifetime: -time.Hour})
	revoked := w.mint(grant{ns: "acme", name: "leaked", tenant: "acme", role: "editor"})
	w.revoke("acme", "leaked")
	opaque := w.mint(grant{ns: "acme", name: "script", tenant: "acme", role: "viewer", format: tokensv1.FormatOpaque})
	stranger, err := token.GenerateKey(token.ES256)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	forged, err := token.MintJWT(stranger, token.Claims{Issuer: issuerURL, Subject: "apitoken:acme:ci", ExpiresAt: start.Add(time.Hour), ID: token.NewTokenID(), Tenant: "acme", Role: "admin"})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	validatorChecker, err := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	offlineChecker, err := NewOffline(OfflineOptions{
		JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk,
		RoleIncludes: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}},
	})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	type want struct {
		status int
		// reason is the end of the challenge or the body.
		body string
	}
	for _, tc := range []struct {
		name  string
		token string
		req   Requirement
		// validator and offline are the answers of each mode.
		validator, offline want
	}{
		{"no token", "", Requirement{Tenant: "acme"}, want{401, "no token in the request"}, want{401, "no token in the request"}},
		{"garbage", "not-a-token", Requirement{}, want{401, "the token is malformed"}, want{401, "only JWTs can be verified offline"}},
		{"role granted through inclusion", editor, Requirement{Tenant: "acme", Role: "viewer"}, want{200, ""}, want{200, ""}},
		{"exact role and sub-tenant", editor, Requirement{Tenant: "acme", SubTenant: "payments", Role: "editor"}, want{200, ""}, want{200, ""}},
		{"role too low", viewer, Requirement{Tenant: "acme", Role: "editor"}, want{403, "the token's role does not grant the required role"}, want{403, "the token's role does not grant the required role"}},
		{"another tenant", other, Requirement{Tenant: "acme", Role: "viewer"}, want{404, "not found"}, want{404, "not found"}},
		{"another sub-tenant", editor, Requirement{Tenant: "acme", SubTenant: "billing"}, want{404, "not found"}, want{404, "not found"}},
		{"expired", expired, Requirement{Tenant: "acme"}, want{401, "the token expired"}, want{401, "the token expired"}},
		{"forged with an unknown key", forged, Requirement{Tenant: "acme"}, want{401, "the token's signing key is unknown"}, want{401, "the token's signing key is unknown"}},
		{"revoked: only the validator knows", revoked, Requirement{Tenant: "acme"}, want{401, "the token was revoked"}, want{200, ""}},
		{"opaque: only the validator checks it", opaque, Requirement{Tenant: "acme", Role: "viewer"}, want{200, ""}, want{401, "only JWTs can be verified offline"}},
	} {
		for _, mode := range []struct {
			name    string
			checker Checker
			want    want
		}{{"validator", validatorChecker, tc.validator}, {"offline", offlineChecker, tc.offline}} {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				g := NewWithT(t)
				m, err := New(Options{Checker: mode.checker})
				g.Expect(err).NotTo(HaveOccurred())
				got := call(t, serve(t, m.Require(tc.req, protected)), tc.token)
				g.Expect(got.status).To(Equal(mode.want.status), got.body)
				switch got.status {
				case http.StatusOK:
					g.Expect(got.identity.Tenant).To(Equal("acme"))
					g.Expect(got.identity.TokenID).NotTo(BeEmpty())
					g.Expect(got.identity.Namespace).To(Equal("acme"))
					g.Expect(got.identity.Roles).To(ContainElement(got.identity.Role))
				case http.StatusUnauthorized:
					g.Expect(got.body).To(Equal(mode.want.body))
					if tc.token == "" {
						g.Expect(got.challenge).To(Equal(`Bearer realm="apitoken"`))
					} else {
						g.Expect(got.challenge).To(Equal(`Bearer realm="apitoken", error="invalid_token", error_description="` + mode.want.body + `"`))
					}
				case http.StatusForbidden:
					g.Expect(got.body).To(Equal(mode.want.body))
					g.Expect(got.challenge).To(ContainSubstring(`error="insufficient_scope"`))
				default:
					g.Expect(got.body).To(Equal(mode.want.body))
				}
				if tc.token != "" {
					g.Expect(got.body).NotTo(ContainSubstring(tc.token))
				}
			})
		}
	}
}

// TestIdentity: the handler finds the whole identity in the context, in both modes.
func TestIdentity(t *testing.T) {
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", subTenant: "payments", role: "admin"})
	v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	o, _ := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk, RoleIncludes: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}}})
	for name, c := range map[string]Checker{"validator": v, "offline": o} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			m, err := New(Options{Checker: c, Requirement: Requirement{Tenant: "acme", Role: "viewer"}})
			g.Expect(err).NotTo(HaveOccurred())
			got := call(t, serve(t, m.Handler(protected)), tok)
			g.Expect(got.status).To(Equal(http.StatusOK), got.body)
			id := got.identity
			g.Expect(id.Subject).To(Equal("apitoken:acme:ci"))
			g.Expect(id.Namespace).To(Equal("acme"))
			g.Expect(id.Name).To(Equal("ci"))
			g.Expect(id.Tenant).To(Equal("acme"))
			g.Expect(id.SubTenant).To(Equal("payments"))
			g.Expect(id.Role).To(Equal("admin"))
			g.Expect(id.Roles).To(ConsistOf("admin", "editor", "viewer"))
			g.Expect(id.Scopes).To(Equal([]string{"reports:read"}))
			g.Expect(id.ExpiresAt.Equal(start.Add(time.Hour))).To(BeTrue())
		})
	}
}

// TestValidatorCache: an answer is reused for CacheTTL, so a revocation takes up to
// that long to reach the middleware, and then it does.
func TestValidatorCache(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	v, err := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk, CacheTTL: 10 * time.Second, CacheSize: 2})
	g.Expect(err).NotTo(HaveOccurred())
	m, _ := New(Options{Checker: v, Requirement: Requirement{Tenant: "acme"}})
	url := serve(t, m.Handler(protected))

	g.Expect(call(t, url, tok).status).To(Equal(http.StatusOK))
	w.revoke("acme", "ci")
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusOK), "served from the cache")
	w.clk.Step(10 * time.Second)
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusUnauthorized))

	// The cache is bounded, and 401s are not cached.
	for i := 0; i < 5; i++ {
		other := w.mint(grant{ns: "acme", name: "t" + string(rune('a'+i)), tenant: "acme", role: "viewer"})
		g.Expect(call(t, url, other).status).To(Equal(http.StatusOK))
		g.Expect(call(t, url, other+"x").status).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(v.cache.Len()).To(Equal(2))
}

// TestValidatorRateLimit: the validator's 429 reaches the client with Retry-After.
func TestValidatorRateLimit(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{Limits: validator.RateLimits{TokenRate: 0.1, TokenBurst: 1}})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk, CacheTTL: -1})
	m, _ := New(Options{Checker: v})
	srv := serve(t, m.Handler(protected))
	g.Expect(call(t, srv, tok).status).To(Equal(http.StatusOK))

	req, _ := http.NewRequest(http.MethodGet, srv, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))
	g.Expect(resp.Header.Get("Retry-After")).To(Equal("10"))
}

// TestUnavailable: when nothing can decide, the request is refused with 503, never
// let through, and OnError hears why.
func TestUnavailable(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	v, _ := NewValidator(ValidatorOptions{URL: down.URL})
	o, _ := NewOffline(OfflineOptions{JWKSURL: down.URL + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL})
	for name, c := range map[string]Checker{"validator": v, "offline": o} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			errs := make(chan error, 1)
			m, _ := New(Options{Checker: c, OnError: func(_ *http.Request, err error) { errs <- err }})
			got := call(t, serve(t, m.Handler(protected)), tok)
			g.Expect(got.status).To(Equal(http.StatusServiceUnavailable))
			var err error
			g.Expect(errs).To(Receive(&err))
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
		})
	}
}

// TestOfflineKeyRefresh: a token signed with a key the middleware has not fetched
// yet makes it fetch the JWKS again, but never more than once per
// MinRefreshInterval, however many unknown kids arrive.
func TestOfflineKeyRefresh(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	first := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor", lifetime: 24 * time.Hour})
	o, err := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk, MinRefreshInterval: 30 * time.Second, MaxKeyAge: time.Hour})
	g.Expect(err).NotTo(HaveOccurred())
	m, _ := New(Options{Checker: o})
	url := serve(t, m.Handler(protected))

	g.Expect(call(t, url, first).status).To(Equal(http.StatusOK))
	g.Expect(call(t, url, first).status).To(Equal(http.StatusOK))
	g.Expect(w.jwksServed.Load()).To(Equal(int64(1)))

	// The issuer rotates its key a second later: within the floor, the new key cannot
	// be fetched yet.
	w.clk.Step(time.Second)
	w.addKey()
	second := w.mint(grant{ns: "acme", name: "ci2", tenant: "acme", role: "editor"})
	got := call(t, url, second)
	g.Expect(got.status).To(Equal(http.StatusUnauthorized))
	g.Expect(got.body).To(Equal("the token's signing key is unknown"))
	g.Expect(w.jwksServed.Load()).To(Equal(int64(1)))

	// Past the floor, the first unknown kid fetches the keys again.
	w.clk.Step(30 * time.Second)
	g.Expect(call(t, url, second).status).To(Equal(http.StatusOK))
	g.Expect(call(t, url, first).status).To(Equal(http.StatusOK))
	g.Expect(w.jwksServed.Load()).To(Equal(int64(2)))

	// A flood of tokens with made-up kids costs one fetch per interval.
	w.clk.Step(30 * time.Second)
	for i := 0; i < 20; i++ {
		k, err := token.GenerateKey(token.EdDSA)
		g.Expect(err).NotTo(HaveOccurred())
		tok, err := token.MintJWT(k, token.Claims{Issuer: issuerURL, ExpiresAt: w.clk.Now().Add(time.Hour), ID: token.NewTokenID(), Tenant: "acme", Role: "admin"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(call(t, url, tok).status).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(w.jwksServed.Load()).To(Equal(int64(3)))
	g.Expect(o.Fetches()).To(Equal(int64(3)))

	// Keys older than MaxKeyAge are fetched again on the next request.
	w.clk.Step(time.Hour)
	g.Expect(call(t, url, first).status).To(Equal(http.StatusOK))
	g.Expect(w.jwksServed.Load()).To(Equal(int64(4)))
}

// TestOfflineWithoutRoleGraph: with no RoleIncludes a role grants only itself.
func TestOfflineWithoutRoleGraph(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "admin"})
	o, _ := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk})
	m, _ := New(Options{Checker: o})
	g.Expect(call(t, serve(t, m.Require(Requirement{Role: "admin"}, protected)), tok).status).To(Equal(http.StatusOK))
	g.Expect(call(t, serve(t, m.Require(Requirement{Role: "viewer"}, protected)), tok).status).To(Equal(http.StatusForbidden))

	_, err := NewOffline(OfflineOptions{JWKSURL: w.url, AllowInsecureHTTP: true, Issuer: issuerURL, RoleIncludes: map[string][]string{"a": {"b"}, "b": {"a"}}})
	g.Expect(err).To(MatchError(ContainSubstring("cycle")))
}

// TestOptions: configuration mistakes are found at start-up.
func TestOptions(t *testing.T) {
	g := NewWithT(t)
	_, err := New(Options{})
	g.Expect(err).To(HaveOccurred())
	v, _ := NewValidator(ValidatorOptions{URL: "http://validator"})
	_, err = New(Options{Checker: v, Requirement: Requirement{Role: "Not A Label"}})
	g.Expect(err).To(MatchError(ContainSubstring("not a DNS label")))
	m, _ := New(Options{Checker: v})
	g.Expect(func() { m.Require(Requirement{Tenant: "a_b"}, protected) }).To(Panic())
	_, err = NewValidator(ValidatorOptions{URL: "validator:8443"})
	g.Expect(err).To(HaveOccurred())
	_, err = NewOffline(OfflineOptions{JWKSURL: "/jwks.json", Issuer: issuerURL})
	g.Expect(err).To(HaveOccurred())
	_, err = NewOffline(OfflineOptions{JWKSURL: "http://validator/.well-known/jwks.json", Issuer: issuerURL})
	g.Expect(err).To(MatchError(ContainSubstring("is not https")), "plain HTTP only when asked for")
	_, err = NewOffline(OfflineOptions{JWKSURL: "https://validator/.well-known/jwks.json"})
	g.Expect(err).To(MatchError(ContainSubstring("Issuer is required")), "an empty Issuer would accept every issuer the JWKS URL serves")
	_, err = NewOffline(OfflineOptions{JWKSURL: "https://validator/.well-known/jwks.json", Issuer: issuerURL, MaxKeyAge: 10 * time.Second})
	g.Expect(err).To(MatchError(ContainSubstring("shorter than MinRefreshInterval")))
	_, err = NewOffline(OfflineOptions{JWKSURL: "https://validator/.well-known/jwks.json", Issuer: issuerURL})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = NewOffline(OfflineOptions{JWKSURL: "http://127.0.0.1:8080/.well-known/jwks.json", AllowInsecureHTTP: true, Issuer: issuerURL})
	g.Expect(err).NotTo(HaveOccurred())
}

// TestTokenHeaders: a token may come in a configured header instead of Authorization.
func TestTokenHeaders(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "admin"})
	v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	m, _ := New(Options{Checker: v, TokenHeaders: []string{"X-Api-Key"}})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, serve(t, m.Handler(protected)), nil)
	req.Header.Set("X-Api-Key", tok)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

// brokenChecker allows without an identity.
type brokenChecker struct{}

func (brokenChecker) Check(context.Context, string, Requirement) (Decision, error) {
	return Decision{Status: http.StatusOK}, nil
}

// TestNoIdentityNoEntry: a Checker that allows without saying whom does not let the
// request through.
func TestNoIdentityNoEntry(t *testing.T) {
	m, _ := New(Options{Checker: brokenChecker{}})
	NewWithT(t).Expect(call(t, serve(t, m.Handler(protected)), "x").status).To(Equal(http.StatusUnauthorized))
}

// BenchmarkValidatorCached measures a request whose answer is cached: one SHA-256 and
// an LRU lookup, no call to the validator.
func BenchmarkValidatorCached(b *testing.B) {
	w := newWorld(b, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	req := Requirement{Tenant: "acme", Role: "viewer"}
	ctx := context.Background()
	if d, err := v.Check(ctx, tok, req); err != nil || !d.Allowed() {
		b.Fatal(d, err)
	}
	b.ResetTimer()
	for b.Loop() {
		if d, _ := v.Check(ctx, tok, req); !d.Allowed() {
			b.Fatal(d)
		}
	}
}

// BenchmarkOffline measures an offline verification of an ES256 JWT.
func BenchmarkOffline(b *testing.B) {
	w := newWorld(b, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	o, _ := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk})
	req := Requirement{Tenant: "acme", Role: "editor"}
	ctx := context.Background()
	if d, err := o.Check(ctx, tok, req); err != nil || !d.Allowed() {
		b.Fatal(d, err)
	}
	b.ResetTimer()
	for b.Loop() {
		if d, _ := o.Check(ctx, tok, req); !d.Allowed() {
			b.Fatal(d)
		}
	}
}

// TestMultiTenantModes: a token of two tenants is judged alike in both modes: the
// required tenant selects the membership whose role decides, and the identity in the
// context is that membership's.
func TestMultiTenantModes(t *testing.T) {
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "multi", memberships: []tokensv1.Membership{
		{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"},
	}})
	v, err := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	o, err := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk,
		RoleIncludes: map[string][]string{"admin": {"editor"}, "editor": {"viewer"}}})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	all := []validatorapi.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
	for name, c := range map[string]Checker{"validator": v, "offline": o} {
		for _, tc := range []struct {
			req                     Requirement
			status                  int
			tenant, subTenant, role string
			roles                   []string
		}{
			{Requirement{Tenant: "acme", Role: "viewer"}, 200, "acme", "", "editor", []string{"editor", "viewer"}},
			{Requirement{Tenant: "globex", Role: "viewer"}, 200, "globex", "eu", "viewer", []string{"viewer"}},
			{Requirement{Tenant: "globex", Role: "editor"}, 403, "", "", "", nil},
			{Requirement{Tenant: "initech"}, 404, "", "", "", nil},
			{Requirement{Role: "viewer"}, 403, "", "", "", nil},
		} {
			t.Run(name+"/"+tc.req.Tenant+"/"+tc.req.Role, func(t *testing.T) {
				g := NewWithT(t)
				m, err := New(Options{Checker: c})
				g.Expect(err).NotTo(HaveOccurred())
				got := call(t, serve(t, m.Require(tc.req, protected)), tok)
				g.Expect(got.status).To(Equal(tc.status), got.body)
				if tc.status != http.StatusOK {
					return
				}
				id := got.identity
				g.Expect([]string{id.Tenant, id.SubTenant, id.Role}).To(Equal([]string{tc.tenant, tc.subTenant, tc.role}))
				g.Expect(id.Roles).To(ConsistOf(tc.roles))
				g.Expect(id.Memberships).To(Equal(all))
			})
		}
	}
}

// TestValidatorForwardsClient: in validator mode the middleware tells the validator
// who the end client is, so the validator's failed-attempt limit, when it trusts this
// service, slows the client that fails and no other; without that trust it counts the
// service's own address, as for any caller.
func TestValidatorForwardsClient(t *testing.T) {
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	status := func(t *testing.T, hc *http.Client, url, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	limits := validator.RateLimits{FailureRate: 0.1, FailureBurst: 2}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		// other is what another end client's bad token gets once the first spent its
		// budget.
		other int
	}{
		{"the validator trusts the service", loopback, http.StatusUnauthorized},
		{"the validator does not", nil, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			w := newWorld(t, validator.Options{Limits: limits, ClientIPHeader: validatorapi.HeaderForwardedFor, TrustedProxies: tc.trusted})
			good := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
			v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
			m, _ := New(Options{Checker: v})
			srv := serve(t, m.Handler(protected))
			attacker, other := from("127.0.0.5"), from("127.0.0.6")

			g.Expect([]int{status(t, attacker, srv, "apt_guess_guess"), status(t, attacker, srv, "apt_guess_guess"), status(t, attacker, srv, "apt_guess_guess")}).
				To(Equal([]int{401, 401, 429}))
			g.Expect(status(t, other, srv, "apt_other_guess")).To(Equal(tc.other))
			g.Expect(status(t, attacker, srv, good)).To(Equal(http.StatusOK), "a good token is never refused for failures")
		})
	}
}

// TestRefusalBodies: a repeated Authorization header is a 400, and every refusal is
// JSON for a client that asks for it, plain text otherwise.
func TestRefusalBodies(t *testing.T) {
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "viewer"})
	v, _ := NewValidator(ValidatorOptions{URL: w.url, Clock: w.clk})
	m, _ := New(Options{Checker: v, Requirement: Requirement{Role: "editor"}})
	srv := serve(t, m.Handler(protected))
	for _, tc := range []struct {
		name    string
		auth    []string
		status  int
		reason  string
		message string
	}{
		{"no token", nil, 401, validatorapi.ReasonMissing, "no token in the request"},
		{"role too low", []string{"Bearer " + tok}, 403, validatorapi.ReasonInsufficientRole, "the token's role does not grant the required role"},
		{"two Authorization headers", []string{"Bearer " + tok, "Bearer " + tok}, 400, validatorapi.ReasonBadRequest, "the request carries more than one Authorization header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			for _, asJSON := range []bool{false, true} {
				req, _ := http.NewRequest(http.MethodGet, srv, nil)
				for _, a := range tc.auth {
					req.Header.Add("Authorization", a)
				}
				if asJSON {
					req.Header.Set("Accept", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
				g.Expect(err).NotTo(HaveOccurred())
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				g.Expect(resp.StatusCode).To(Equal(tc.status))
				if !asJSON {
					g.Expect(strings.TrimSpace(string(body))).To(Equal(tc.message))
					continue
				}
				g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
				var e validatorapi.Error
				g.Expect(json.Unmarshal(body, &e)).To(Succeed())
				g.Expect(e).To(Equal(validatorapi.Error{Error: tc.reason, Message: tc.message}))
			}
		})
	}
}
