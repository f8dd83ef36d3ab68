package validator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

func bearerLine(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }

// loopbackProxy trusts the test's own connections as a proxy's, so that each request
// can name its client in X-Forwarded-For.
var loopbackProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}

// TestGoodTokensNeverLockedOut: an attacker spends the failure budget of an address
// that good clients share; the attacker is slowed, the good clients are refused
// nothing, on every endpoint and through Authenticate, which the exchange uses.
func TestGoodTokensNeverLockedOut(t *testing.T) {
	h := start(t, Options{Limits: RateLimits{FailureRate: 0.1, FailureBurst: 3}})
	iss := h.issuer(token.ES256, true)
	jwt := h.apiToken(iss, tokenSpec{})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)
	g := NewWithT(t)

	statuses := map[int]int{}
	for range 20 {
		statuses[h.authorize("apt_guess_guess", "").StatusCode]++
	}
	g.Expect(statuses).To(Equal(map[int]int{401: 3, 429: 17}), "the attacker is slowed after its burst")

	for _, tok := range []string{jwt.token, opaque.token} {
		g.Expect(h.authorize(tok, "tenant=acme").StatusCode).To(Equal(200))
		resp, body := h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: tok}), nil)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(ContainSubstring(`"allowed":true`))
		_, _, review := h.review(tok)
		g.Expect(review.Status.Authenticated).To(BeTrue())
		g.Expect(h.srv.Authenticate(tok, "127.0.0.1").Status).To(BeZero(), "the exchange's path")
	}

	// What the attacker gets: 429, saying how long to wait, as JSON when asked.
	msg := "too many failed attempts from this client: try again in 10 seconds"
	resp, body := h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine("apt_guess_guess"))
	g.Expect(resp.StatusCode).To(Equal(429))
	g.Expect(resp.Header.Get("Retry-After")).To(Equal("10"))
	g.Expect(strings.TrimSpace(body)).To(Equal(msg))
	resp, body = h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine("apt_guess_guess"), [2]string{"Accept", "application/json"})
	g.Expect(resp.StatusCode).To(Equal(429))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	var e validatorapi.Error
	g.Expect(json.Unmarshal([]byte(body), &e)).To(Succeed())
	g.Expect(e).To(Equal(validatorapi.Error{Error: validatorapi.ReasonClientRateLimited, Message: msg}))
	resp, body = h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: "apt_guess_guess"}), nil)
	g.Expect(resp.StatusCode).To(Equal(429))
	var out validatorapi.ValidateResponse
	g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
	g.Expect(out.Message).To(Equal(msg))
	g.Expect(h.srv.Authenticate("apt_guess_guess", "127.0.0.1").Status).To(Equal(429))
}

// TestClientAddressFromEveryLine: behind a trusted proxy that appends its own
// X-Forwarded-For line after the client's, the client is the right-most untrusted
// address of all lines, so a client cannot pick the address it is limited and
// audited as.
func TestClientAddressFromEveryLine(t *testing.T) {
	h := start(t, Options{ClientIPHeader: validatorapi.HeaderForwardedFor, TrustedProxies: loopbackProxy,
		Limits: RateLimits{FailureRate: 0.1, FailureBurst: 2}})
	g := NewWithT(t)
	const xff = validatorapi.HeaderForwardedFor
	// The client writes 6.6.6.6; the proxy appends the address it saw on its own line.
	asClient := func(addr string) int {
		resp, _ := h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine("apt_guess_guess"), [2]string{xff, "6.6.6.6"}, [2]string{xff, addr})
		return resp.StatusCode
	}
	g.Expect([]int{asClient("1.2.3.4"), asClient("1.2.3.4"), asClient("1.2.3.4")}).To(Equal([]int{401, 401, 429}))
	g.Expect(asClient("5.5.5.5")).To(Equal(401), "another client behind the same proxy has its own budget")

	lines := h.auditLines(HaveField("Client", "5.5.5.5"))
	clients := map[string]int{}
	for _, l := range lines {
		clients[l.Client]++
	}
	g.Expect(clients).To(Equal(map[string]int{"1.2.3.4": 3, "5.5.5.5": 1}))
}

// TestRequirementHeaders: the configured partner-style headers carry requirements
// beside the query and X-Required-*; anything given twice, or two ways differently,
// and two Authorization headers, are 400; --require-tenant refuses a request naming no
// tenant with a message that says where to name one.
func TestRequirementHeaders(t *testing.T) {
	h := start(t, Options{TenantHeader: "X-Tenant-Id", SubTenantHeader: "X-Sub-Tenant-Id", RoleHeader: "X-Role"})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{subTenant: "payments"})
	h.waitIndexed(m)
	auth := bearerLine(m.token)

	for _, tc := range []struct {
		name    string
		query   string
		lines   [][2]string
		status  int
		reason  string
		message string
	}{
		{"partner headers met", "", [][2]string{auth, {"x-tenant-id", "acme"}, {"x-sub-tenant-id", "payments"}, {"x-role", "viewer"}}, 200, validatorapi.ReasonAllowed, ""},
		{"partner tenant header of another tenant", "", [][2]string{auth, {"X-Tenant-Id", "globex"}}, 404, validatorapi.ReasonTenantMismatch, "not found"},
		{"partner sub-tenant header of another sub-tenant", "", [][2]string{auth, {"X-Sub-Tenant-Id", "shipping"}}, 404, validatorapi.ReasonSubTenantMismatch, "not found"},
		{"role header above the token's", "", [][2]string{auth, {"X-Role", "admin"}}, 403, validatorapi.ReasonInsufficientRole, "the token's role does not grant the required role"},
		{"all sources agreeing", "tenant=acme", [][2]string{auth, {"X-Required-Tenant", "acme"}, {"X-Tenant-Id", "acme"}}, 200, validatorapi.ReasonAllowed, ""},
		{"query parameter twice", "tenant=acme&tenant=acme", [][2]string{auth}, 400, validatorapi.ReasonBadRequirement,
			"required tenant is given more than once (query parameter tenant)"},
		{"an empty and a full parameter", "tenant=&tenant=globex", [][2]string{auth}, 400, validatorapi.ReasonBadRequirement,
			"required tenant is given more than once (query parameter tenant)"},
		{"X-Required-Tenant twice", "", [][2]string{auth, {"X-Required-Tenant", "acme"}, {"X-Required-Tenant", "globex"}}, 400, validatorapi.ReasonBadRequirement,
			"required tenant is given more than once (header X-Required-Tenant)"},
		{"partner header twice", "", [][2]string{auth, {"X-Tenant-Id", "acme"}, {"X-Tenant-Id", "acme"}}, 400, validatorapi.ReasonBadRequirement,
			"required tenant is given more than once (header X-Tenant-Id)"},
		{"role header twice", "", [][2]string{auth, {"X-Role", "viewer"}, {"X-Role", "viewer"}}, 400, validatorapi.ReasonBadRequirement,
			"required role is given more than once (header X-Role)"},
		// url.ParseQuery gives up on a query of more than 10000 parameters and reads
		// none of them: the requirement must not be lost with the rest.
		{"a requirement among 10001 parameters", "tenant=globex&" + strings.Repeat("x=1&", 10_000), [][2]string{auth}, 404,
			validatorapi.ReasonTenantMismatch, "not found"},
		// url.ParseQuery skips a pair it cannot read: the requirement with it.
		{"a badly escaped tenant", "tenant=glob%zzex", [][2]string{auth}, 400, validatorapi.ReasonBadRequirement,
			"the query cannot be read: a parameter is badly escaped or separated by ';'"},
		{"a tenant separated by ';'", "tenant=globex;role=viewer", [][2]string{auth}, 400, validatorapi.ReasonBadRequirement,
			"the query cannot be read: a parameter is badly escaped or separated by ';'"},
		{"query and partner header disagreeing", "tenant=acme", [][2]string{auth, {"X-Tenant-Id", "globex"}}, 400, validatorapi.ReasonBadRequirement,
			"required tenant differs between query parameter tenant and header X-Tenant-Id"},
		{"two Authorization headers", "", [][2]string{auth, bearerLine("other")}, 400, validatorapi.ReasonBadRequest,
			"the request carries more than one Authorization header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			path := validatorapi.PathAuthorize + "?" + tc.query
			resp, body := h.send(http.MethodGet, path, nil, tc.lines...)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			if tc.status == 400 {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error="invalid_request"`))
			}
			if tc.status == 200 {
				return
			}
			g.Expect(strings.TrimSpace(body)).To(Equal(tc.message))
			resp, body = h.send(http.MethodGet, path, nil, append(tc.lines, [2]string{"Accept", "application/json"})...)
			g.Expect(resp.StatusCode).To(Equal(tc.status))
			var e validatorapi.Error
			g.Expect(json.Unmarshal([]byte(body), &e)).To(Succeed(), body)
			g.Expect(e).To(Equal(validatorapi.Error{Error: tc.reason, Message: tc.message}))
		})
	}

	t.Run("require tenant", func(t *testing.T) {
		g := NewWithT(t)
		strict := New(h.idx, Options{Clock: h.clk, RequireTenant: true, TenantHeader: "X-Tenant-Id"})
		ts := httptest.NewServer(strict.Handler())
		defer ts.Close()
		do := func(req *http.Request) (*http.Response, string) {
			resp, err := h.http.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}
		get := func(query string, lines ...[2]string) (*http.Response, string) {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+validatorapi.PathAuthorize+query, nil)
			for _, l := range lines {
				req.Header.Add(l[0], l[1])
			}
			return do(req)
		}
		resp, body := get("", auth, [2]string{"Accept", "application/json"})
		g.Expect(resp.StatusCode).To(Equal(400))
		var e validatorapi.Error
		g.Expect(json.Unmarshal([]byte(body), &e)).To(Succeed())
		g.Expect(e).To(Equal(validatorapi.Error{Error: validatorapi.ReasonBadRequirement,
			Message: "the request names no tenant: set query parameter tenant or header X-Required-Tenant or header X-Tenant-Id"}))
		resp, _ = get("", auth, [2]string{"X-Tenant-Id", "acme"})
		g.Expect(resp.StatusCode).To(Equal(200))
		resp, _ = get("?tenant=acme", auth)
		g.Expect(resp.StatusCode).To(Equal(200))

		post := func(path string, body []byte) (*http.Response, string) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(body))
			return do(req)
		}
		resp, body = post(validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: m.token}))
		g.Expect(resp.StatusCode).To(Equal(200))
		var out validatorapi.ValidateResponse
		g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
		g.Expect(out).To(And(HaveField("Status", 400), HaveField("Reason", validatorapi.ReasonBadRequirement),
			HaveField("Message", `the request names no tenant: set "tenant" in the body`)))
		resp, body = post(validatorapi.PathTokenReview, mustJSON(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": m.token}}))
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(body).To(ContainSubstring(`"authenticated":true`), "TokenReviews name no tenant and are not affected")
	})
}

// TestDiscoveryNotPoisoned: without --public-url the discovery document, built from
// the request's Host, is kept from shared caches, and a Host that is not a plain host
// name is refused; with --public-url it is public.
func TestDiscoveryNotPoisoned(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	h.g.Eventually(func() bool { return h.srv.readyIssuer(iss.name) != nil }).WithTimeout(informerEvent).Should(BeTrue())
	g := NewWithT(t)
	discover := func(base, host string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, base+validatorapi.PathOIDC+"?issuer="+iss.name, nil)
		g.Expect(err).NotTo(HaveOccurred())
		if host != "" {
			req.Host = host
		}
		resp, err := h.http.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := discover(h.url, "validator.example:8443")
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.Header.Get("Cache-Control")).To(Equal("private, max-age=60"))
	g.Expect(resp.Header.Get("Vary")).To(Equal("Host"))
	g.Expect(body).To(ContainSubstring(`"jwks_uri":"http://validator.example:8443/.well-known/jwks.json?issuer=`))
	for _, bad := range []string{"evil_host.example", "validator.example:http", "[not-v6]"} {
		resp, _ = discover(h.url, bad)
		g.Expect(resp.StatusCode).To(Equal(400), bad)
	}
	resp, _ = h.send(http.MethodGet, validatorapi.PathJWKS, nil)
	g.Expect(resp.Header.Get("Cache-Control")).To(Equal("public, max-age=60"), "the key set does not depend on the request")

	pub := httptest.NewServer(New(h.idx, Options{Clock: h.clk, PublicURL: "https://apitoken-validator.apitoken-system.svc"}).Handler())
	defer pub.Close()
	resp, body = discover(pub.URL, "evil_host.example")
	g.Expect(resp.StatusCode).To(Equal(200), "--public-url: the Host is not read at all")
	g.Expect(resp.Header.Get("Cache-Control")).To(Equal("public, max-age=60"))
	g.Expect(body).To(ContainSubstring(`"jwks_uri":"https://apitoken-validator.apitoken-system.svc/.well-known/jwks.json?issuer=`))
}

// TestLiveLookupBudgets: a token the index already knows as retired or revoked is
// refused without a read, and one tenant replaying the tokens of APITokens that are
// gone spends its own share of the reads, not those a new token of another tenant
// needs.
func TestLiveLookupBudgets(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	g := NewWithT(t)

	t.Run("answered from the index", func(t *testing.T) {
		reader := &countingReader{Reader: env.Client}
		srv := httptest.NewServer(New(h.idx, Options{Clock: h.clk, Live: NewLiveLookup(reader, h.clk, 1000, 2*time.Second)}).Handler())
		defer srv.Close()
		reason := func(tok string) string {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+validatorapi.PathValidate, bytes.NewReader(mustJSON(validatorapi.ValidateRequest{Token: tok})))
			resp, err := h.http.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			var out validatorapi.ValidateResponse
			g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
			return out.Reason
		}

		// An old token, rotated out and dropped from the status.
		m := h.apiToken(iss, tokenSpec{})
		old := m.token
		h.waitIndexed(m)
		h.clk.Step(2 * time.Second)
		current, issued := h.mint(iss, m.obj, tokenSpec{})
		h.updateStatus(m, func(s *tokensv1.APITokenStatus) { s.Current, s.PreviousTokens = &issued, nil })
		h.g.Eventually(func() bool { return h.idx.Token(m.issued.TokenID) == nil && h.idx.Token(issued.TokenID) != nil }).WithTimeout(informerEvent).Should(BeTrue())
		g.Expect(reason(current)).To(Equal(validatorapi.ReasonAllowed))
		g.Expect(reason(old)).To(Equal(validatorapi.ReasonRetired))
		g.Expect(reader.gets.Load()).To(BeZero(), "a token older than the current one is not read for")

		// A token of a revoked APIToken that its status never listed.
		h.updateSpec(m, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
		h.g.Eventually(func() bool { return h.idx.Token(issued.TokenID).Owner.Revoked() }).WithTimeout(informerEvent).Should(BeTrue())
		h.clk.Step(2 * time.Second)
		unlisted, _ := h.mint(iss, m.obj, tokenSpec{})
		g.Expect(reason(unlisted)).To(Equal(validatorapi.ReasonRevoked))
		g.Expect(reader.gets.Load()).To(BeZero())

		// A newer token the index has not heard of is still read for.
		fresh := h.apiToken(iss, tokenSpec{})
		h.waitIndexed(fresh)
		h.clk.Step(2 * time.Second)
		newer, _ := h.mint(iss, fresh.obj, tokenSpec{})
		g.Expect(reason(newer)).To(Equal(string(token.ReasonUnknownToken)))
		g.Expect(reader.gets.Load()).To(BeEquivalentTo(1))
	})

	t.Run("per tenant", func(t *testing.T) {
		// The issuer mints for globex too (the harness's issuers list it).
		cti := &tokensv1.ClusterTokenIssuer{}
		g.Expect(env.Client.Get(h.ctx, client.ObjectKey{Name: iss.name}, cti)).To(Succeed())
		g.Expect(cti.Spec.Tenants).To(ContainElement(HaveField("Name", "globex")))
		reader := &countingReader{Reader: env.Client}
		// 4 reads a second, bursts of 8; a tenant gets 1 a second, bursts of 2.
		url := h.blindValidator(reader, 4, iss)
		status := func(tok string) int {
			req, _ := http.NewRequest(http.MethodGet, url+validatorapi.PathAuthorize, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := h.http.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		// Tokens of acme's APITokens that no longer exist, each replayed once.
		for i := range 8 {
			gone, _ := h.mint(iss, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "gone-" + string(rune('a'+i))}}, tokenSpec{})
			g.Expect(status(gone)).To(Equal(401))
		}
		g.Expect(reader.gets.Load()).To(BeEquivalentTo(2), "acme's share")
		throttled := testutil.ToFloat64(liveLookupsTotal.WithLabelValues(liveThrottled))
		g.Expect(throttled).To(BeNumerically(">=", 6))

		fresh := h.apiToken(iss, tokenSpec{tenant: "globex"})
		g.Expect(status(fresh.token)).To(Equal(200), "globex's new token is still read for")
		g.Expect(reader.gets.Load()).To(BeEquivalentTo(3))
	})
}

// TestAuditStream: one JSON line per decision, accepted ones too, naming the token's
// ID, its APIToken, what it grants, the client and the original request, never the
// token; repeated refusals of one client summarised; nothing at the log's level 0.
func TestAuditStream(t *testing.T) {
	h := start(t, Options{ClientIPHeader: validatorapi.HeaderForwardedFor, TrustedProxies: loopbackProxy})
	iss := h.issuer(token.ES256, true)
	jwt := h.apiToken(iss, tokenSpec{subTenant: "payments"})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)
	g := NewWithT(t)
	const xff = validatorapi.HeaderForwardedFor
	apiToken := func(m *minted) string { return m.obj.Namespace + "/" + m.obj.Name }

	// nginx's headers, then Traefik's and Caddy's.
	resp, _ := h.send(http.MethodGet, validatorapi.PathAuthorize+"?tenant=acme", nil, bearerLine(jwt.token), [2]string{xff, "1.2.3.4"},
		[2]string{"X-Original-Method", "POST"}, [2]string{"X-Original-URI", "/reports/42?api_key=the-secret-key"})
	g.Expect(resp.StatusCode).To(Equal(200))
	resp, _ = h.send(http.MethodGet, validatorapi.PathAuthorize+"?role=admin", nil, bearerLine(opaque.token), [2]string{xff, "1.2.3.5"},
		[2]string{"X-Forwarded-Method", "DELETE"}, [2]string{"X-Forwarded-Uri", "/invoices/7#frag"})
	g.Expect(resp.StatusCode).To(Equal(403))
	wrong, err := token.MintOpaque("apt", opaque.issued.TokenID)
	g.Expect(err).NotTo(HaveOccurred())
	resp, _ = h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: wrong.Token}), nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	_, _, review := h.review(jwt.token)
	g.Expect(review.Status.Authenticated).To(BeTrue())

	lines := h.auditLines(HaveField("Endpoint", "tokenreview"))
	g.Expect(lines).To(ContainElement(And(
		HaveField("Decision", validatorapi.AuditAllowed), HaveField("Endpoint", "authorize"), HaveField("Status", 200),
		HaveField("Result", ResultAllowed), HaveField("Reason", validatorapi.ReasonAllowed), HaveField("TokenID", jwt.issued.TokenID),
		HaveField("APIToken", apiToken(jwt)), HaveField("Tenant", "acme"), HaveField("SubTenant", "payments"), HaveField("Role", "editor"),
		HaveField("Required", validatorapi.Requirement{Tenant: "acme"}), HaveField("Client", "1.2.3.4"),
		HaveField("Method", "POST"), HaveField("URI", "/reports/42"), HaveField("Time", BeTemporally("==", h.clk.Now())))))
	g.Expect(lines).To(ContainElement(And(
		HaveField("Decision", validatorapi.AuditRefused), HaveField("Status", 403), HaveField("Reason", validatorapi.ReasonInsufficientRole),
		HaveField("TokenID", opaque.issued.TokenID), HaveField("APIToken", apiToken(opaque)), HaveField("Role", "viewer"),
		HaveField("Client", "1.2.3.5"), HaveField("Method", "DELETE"), HaveField("URI", "/invoices/7"))))
	g.Expect(lines).To(ContainElement(And(
		HaveField("Decision", validatorapi.AuditRefused), HaveField("Endpoint", "validate"), HaveField("Status", 401),
		HaveField("Reason", validatorapi.ReasonUnknownToken), HaveField("TokenID", opaque.issued.TokenID), HaveField("APIToken", ""),
		HaveField("Client", "127.0.0.1"))))
	g.Expect(lines).To(ContainElement(And(HaveField("Decision", validatorapi.AuditAllowed), HaveField("Endpoint", "tokenreview"),
		HaveField("APIToken", apiToken(jwt)))))
	text := h.stream.String()
	jwtParts := strings.Split(jwt.token, ".")
	for _, secret := range []string{jwt.token, jwtParts[1], jwtParts[2], opaque.token, wrong.Token, wrong.Token[len(wrong.Token)-49:], "the-secret-key"} {
		g.Expect(text).NotTo(ContainSubstring(secret))
	}

	// A flood of refusals from one client: ten lines, then one summary when the
	// window ends. Its accepted requests, and another client's refusals, are written.
	before := len(auditLinesIn(g, h.stream))
	for range 15 {
		resp, _ := h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine("junk"), [2]string{xff, "9.9.9.9"})
		g.Expect(resp.StatusCode).To(Equal(401))
	}
	resp, _ = h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine(jwt.token), [2]string{xff, "9.9.9.9"})
	g.Expect(resp.StatusCode).To(Equal(200))
	resp, _ = h.send(http.MethodGet, validatorapi.PathAuthorize, nil, bearerLine("junk"), [2]string{xff, "8.8.8.8"})
	g.Expect(resp.StatusCode).To(Equal(401))
	h.auditLines(HaveField("Client", "8.8.8.8"))
	h.clk.Step(10 * time.Second)
	lines = h.auditLines(HaveField("Suppressed", 5))[before:]
	byClient := map[string][]validatorapi.AuditLine{}
	for _, l := range lines {
		byClient[l.Client] = append(byClient[l.Client], l)
	}
	g.Expect(byClient["9.9.9.9"]).To(HaveLen(12), "10 refusals, 1 acceptance, 1 summary")
	g.Expect(byClient["9.9.9.9"]).To(ContainElement(HaveField("Decision", validatorapi.AuditAllowed)))
	g.Expect(byClient["9.9.9.9"]).To(ContainElement(And(HaveField("Decision", validatorapi.AuditRefused), HaveField("Suppressed", 5),
		HaveField("Reasons", map[string]int{validatorapi.ReasonMalformed: 5}), HaveField("Since", Not(BeZero())))))
	g.Expect(byClient["8.8.8.8"]).To(HaveLen(1))

	// The log carries decisions at V(1) only: at level 0 a flood writes nothing.
	var logged []string
	quiet := New(h.idx, Options{Clock: h.clk, Log: funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{Verbosity: 0})})
	ts := httptest.NewServer(quiet.Handler())
	defer ts.Close()
	for range 3 {
		resp, err := h.http.Get(ts.URL + validatorapi.PathAuthorize)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
	}
	g.Expect(logged).To(BeEmpty())
}

// blockingSink is an audit sink whose first write waits until release is closed.
type blockingSink struct {
	entered, release chan struct{}
	out              testenv.Buffer
}

func (b *blockingSink) Write(p []byte) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.out.Write(p)
}

// TestAuditStreamNeverBlocks: with the sink stuck, requests are answered at once; the
// lines past the buffer are dropped and counted, and the buffered ones written once
// the sink moves again.
func TestAuditStreamNeverBlocks(t *testing.T) {
	sink := &blockingSink{entered: make(chan struct{}, 1), release: make(chan struct{})}
	stream := NewAuditStream(sink, AuditOptions{Buffer: 4, FlushInterval: time.Millisecond})
	h := start(t, Options{Audit: stream})
	go stream.Run(h.ctx)
	t.Cleanup(func() {
		select {
		case <-sink.release:
		default:
			close(sink.release)
		}
	})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{})
	h.waitIndexed(m)
	g := NewWithT(t)

	g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))
	g.Eventually(sink.entered).Should(Receive(), "the writer is stuck in the sink")
	dropped := testutil.ToFloat64(auditDroppedTotal)
	for range 10 {
		g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))
	}
	g.Expect(testutil.ToFloat64(auditDroppedTotal)-dropped).To(Equal(6.0), "10 lines, 4 buffered")
	g.Expect(h.scrape("apitoken_validator_audit_dropped_total")[""]).To(BeNumerically(">=", 6))

	close(sink.release)
	g.Eventually(func() int { return strings.Count(sink.out.String(), "\n") }).WithTimeout(5 * time.Second).Should(Equal(5))
}
