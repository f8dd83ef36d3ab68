package tokensource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/exchange"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// exchangeEpoch is where the exchange tests' clock starts, a whole second as JWT
// times are.
var exchangeEpoch = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

// keysNamespace holds the issuers' key Secrets, as the operator's namespace does.
const keysNamespace = "apitoken-system"

// exchangeWorld is the real exchange service (internal/exchange over the validator's
// authenticator) on a local listener, over an index the test fills as the informers
// would, and a validator beside it to check what the exchange issued. Both read one
// fake clock, which the Exchanging under test reads too.
type exchangeWorld struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	idx   *index.Index
	authn *validator.Server
	url   string
	keys  map[string]*token.SigningKey // by issuer name
	secs  []*corev1.Secret

	mu sync.Mutex
	// presented is the Authorization header of every GET /v1/token, in order.
	presented []string
}

// serveExchange starts the exchange over the issuers named, each with its exchange
// policy.
func serveExchange(t *testing.T, issuers map[string]tokensv1.ExchangeSpec) *exchangeWorld {
	w := &exchangeWorld{t: t, clk: clocktesting.NewFakeClock(exchangeEpoch), keys: map[string]*token.SigningKey{}}
	w.idx = index.New(index.Config{Clock: w.clk})
	w.authn = validator.New(w.idx, validator.Options{Clock: w.clk})
	for name, x := range issuers {
		w.issuer(name, x)
	}
	w.serve()
	return w
}

// issuer records a ClusterTokenIssuer with one current key and the exchange policy x.
func (w *exchangeWorld) issuer(name string, x tokensv1.ExchangeSpec) {
	w.t.Helper()
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		w.t.Fatal(err)
	}
	w.keys[name] = key
	jwk := key.PublicJWK()
	cti := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-issuer-" + name)},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:   "https://" + name + ".tokens.test",
			Roles:    []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}},
			Exchange: &x,
		},
		Status: tokensv1.ClusterTokenIssuerStatus{
			CurrentKeyID: key.ID,
			JWKS:         &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: jwk.Kty, Kid: jwk.Kid, Alg: jwk.Alg, Use: jwk.Use, Crv: jwk.Crv, X: jwk.X, Y: jwk.Y}}},
		},
	}
	meta.SetStatusCondition(&cti.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonKeyGenerated})
	w.idx.PutIssuer(cti)
	pem, err := key.MarshalPrivateKey()
	if err != nil {
		w.t.Fatal(err)
	}
	w.secs = append(w.secs, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: keysNamespace, Name: keystore.SecretName(name)},
		Data:       map[string][]byte{keystore.DataKey(key.ID): pem},
	})
}

// serve starts the exchange once the issuers are recorded. The key Secrets are held
// by controller-runtime's fake client: what is under test is the HTTP client of the
// exchange, not how the service reads Kubernetes, which internal/exchange's own
// envtest suite covers.
func (w *exchangeWorld) serve() {
	objs := make([]corev1.Secret, len(w.secs))
	builder := fake.NewClientBuilder()
	for i, s := range w.secs {
		objs[i] = *s
		builder = builder.WithObjects(&objs[i])
	}
	srv := exchange.New(w.authn, w.idx, exchange.NewKeys(builder.Build(), keysNamespace), exchange.Options{Clock: w.clk})
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == exchangeapi.PathToken {
			w.mu.Lock()
			w.presented = append(w.presented, r.Header.Get("Authorization"))
			w.mu.Unlock()
		}
		h.ServeHTTP(rw, r)
	}))
	w.t.Cleanup(hs.Close)
	w.url = hs.URL
}

// exchanges returns the Authorization headers the exchange received so far.
func (w *exchangeWorld) exchanges() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.presented...)
}

// parent is an APIToken whose tokens the test mints and mounts.
type parent struct {
	w       *exchangeWorld
	at      *tokensv1.APIToken
	kubelet *kubelet
	dir     string
	value   string
}

// mount records the APIToken ns/name of issuer (editor of tenant acme, with two
// scopes, for a day) with a fresh current token, and writes its Secret volume.
func (w *exchangeWorld) mount(issuer, ns, name string) *parent {
	w.t.Helper()
	dir := w.t.TempDir()
	p := &parent{w: w, dir: dir, kubelet: &kubelet{t: w.t, dir: dir}, at: &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: issuer}, Tenant: "acme", Role: "editor"},
	}}
	p.rotate()
	return p
}

// rotate mints a new current token, keeps the old one as a previous token in its
// grace period, and delivers the new one to the volume as the kubelet would.
func (p *parent) rotate() {
	w := p.w
	w.t.Helper()
	now := w.clk.Now()
	iss := p.at.Spec.IssuerRef.Name
	key := w.keys[iss]
	id := token.NewTokenID()
	claims := tokensv1.TokenClaims{Tenant: "acme", Role: "editor", Scopes: []string{"reports:read", "reports:write"}}
	tok, err := token.MintJWT(key, token.Claims{
		Issuer: "https://" + iss + ".tokens.test", Subject: token.Subject(p.at.Namespace, p.at.Name),
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(24 * time.Hour), ID: id,
		Tenant: claims.Tenant, Role: claims.Role, Scopes: claims.Scopes,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	st := &p.at.Status
	if st.Current != nil {
		st.PreviousTokens = append(st.PreviousTokens, *st.Current)
	}
	st.Current = &tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Claims: claims,
		IssuedAt: metav1.NewTime(now), ExpiresAt: metav1.NewTime(now.Add(24 * time.Hour))}
	w.idx.PutTokenSet(index.NewTokenSet(p.at.DeepCopy()))
	p.value = tok
	p.kubelet.write(map[string]string{"token": tok, "tokenID": id, "expiresAt": now.Add(24 * time.Hour).Format(time.RFC3339)})
}

// revoke sets spec.revoked, as the informers would deliver it.
func (p *parent) revoke() {
	p.at.Spec.Revoked = true
	p.w.idx.PutTokenSet(index.NewTokenSet(p.at.DeepCopy()))
}

func (p *parent) id() string { return p.at.Status.Current.TokenID }

// source follows the parent's volume.
func (p *parent) source() *Source {
	p.w.t.Helper()
	return newSource(p.w.t, p.dir, Options{})
}

func (w *exchangeWorld) exchanging(src *Source, opts ExchangeOptions) *Exchanging {
	w.t.Helper()
	opts.URL, opts.Now = w.url, w.clk.Now
	ex, err := NewExchanging(src, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return ex
}

// TestExchanging: the first Token exchanges; later ones reuse the token until its
// refresh time, then exchange again; a rotation of the mounted parent exchanges at
// once with the new parent; every token it returns is one the validator accepts,
// narrowed as asked, and Transport sends it.
func TestExchanging(t *testing.T) {
	g := NewWithT(t)
	w := serveExchange(t, map[string]tokensv1.ExchangeSpec{"default": {Enabled: true}})
	p := w.mount("default", "acme", "ci")
	src := p.source()
	ex := w.exchanging(src, ExchangeOptions{Lifetime: 600 * time.Second, Role: "viewer", Scopes: []string{"reports:read"}})
	ctx := context.Background()

	g.Expect(ex.Current()).To(BeNil())
	first, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.exchanges()).To(Equal([]string{"Bearer " + p.value}))
	accepted := func(tok, parentID string) {
		t.Helper()
		d := w.authn.Authenticate(tok, "")
		g.Expect(d.Status).To(BeZero(), "the validator refuses the exchanged token: %s", d.Reason)
		g.Expect(d.Identity).To(HaveField("ParentTokenID", parentID))
		g.Expect(d.Identity).To(HaveField("Role", "viewer"))
		g.Expect(d.Identity).To(HaveField("Scopes", []string{"reports:read"}))
		g.Expect(d.Identity).To(HaveField("Subject", "apitoken:acme:ci"))
	}
	accepted(first, p.id())
	cur := ex.Current()
	g.Expect(cur.Value).To(Equal(first))
	g.Expect(cur.ID).NotTo(Or(BeEmpty(), Equal(p.id())))
	g.Expect(cur.ExpiresAt).To(BeTemporally("==", exchangeEpoch.Add(600*time.Second)))

	// Before the refresh point (two thirds of 600s) the token is reused.
	w.clk.Step(399 * time.Second)
	g.Expect(ex.Token(ctx)).To(Equal(first))
	g.Expect(w.exchanges()).To(HaveLen(1))

	// Past it, a new one is fetched with the same parent.
	w.clk.Step(2 * time.Second)
	second, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second).NotTo(Equal(first))
	g.Expect(w.exchanges()).To(Equal([]string{"Bearer " + p.value, "Bearer " + p.value}))
	accepted(second, p.id())
	g.Expect(ex.Token(ctx)).To(Equal(second))
	g.Expect(w.exchanges()).To(HaveLen(2))

	// The kubelet delivers a rotated parent: the next Token exchanges the new one,
	// long before the refresh point.
	old := p.value
	p.rotate()
	g.Eventually(func() string { return src.Current().ID }).Should(Equal(p.id()))
	third, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(third).NotTo(Or(Equal(first), Equal(second)))
	g.Expect(w.exchanges()).To(Equal([]string{"Bearer " + old, "Bearer " + old, "Bearer " + p.value}))
	accepted(third, p.id())

	// Transport sends the exchanged token; a validator behind it accepts it.
	api := httptest.NewServer(w.authn.Handler())
	t.Cleanup(api.Close)
	resp, err := NewContextClient(ex).Get(api.URL + validatorapi.PathAuthorize + "?tenant=acme&role=viewer")
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get(validatorapi.HeaderTokenID)).To(Equal(ex.Current().ID))
	g.Expect(w.exchanges()).To(HaveLen(3))
}

// TestExchangingConcurrent: callers that find the token due at the same time share
// one exchange.
func TestExchangingConcurrent(t *testing.T) {
	g := NewWithT(t)
	w := serveExchange(t, map[string]tokensv1.ExchangeSpec{"default": {Enabled: true}})
	ex := w.exchanging(w.mount("default", "acme", "ci").source(), ExchangeOptions{})
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			tok, err := ex.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		})
	}
	wg.Wait()
	g.Expect(w.exchanges()).To(HaveLen(1))
	for _, tok := range got {
		g.Expect(tok).To(Equal(got[0]))
	}
	// No lifetime asked: the issuer's default, 600s.
	g.Expect(ex.Current().ExpiresAt).To(BeTemporally("==", exchangeEpoch.Add(policy.DefaultExchangeLifetime)))
}

// TestExchangingRefused: each refusal is an *ExchangeError with the service's status,
// code and message, and no token in it.
func TestExchangingRefused(t *testing.T) {
	w := serveExchange(t, map[string]tokensv1.ExchangeSpec{
		"default": {Enabled: true, MaxLifetime: metav1.Duration{Duration: time.Hour}},
		"closed":  {},
	})
	for i, tc := range []struct {
		name    string
		issuer  string
		revoke  bool
		opts    ExchangeOptions
		status  int
		code    string
		message string
	}{
		{"revoked parent", "default", true, ExchangeOptions{}, http.StatusUnauthorized, validatorapi.ReasonRevoked, ""},
		{"role above the parent's", "default", false, ExchangeOptions{Role: "admin"}, http.StatusForbidden, string(policy.RuleRoleNarrowing), "admin"},
		{"scope the parent lacks", "default", false, ExchangeOptions{Scopes: []string{"billing:write"}}, http.StatusForbidden, string(policy.RuleScopeNarrowing), ""},
		{"another tenant", "default", false, ExchangeOptions{Tenant: "globex"}, http.StatusNotFound, string(policy.RuleTenantNarrowing), ""},
		{"lifetime above the maximum", "default", false, ExchangeOptions{Lifetime: 2 * time.Hour}, http.StatusBadRequest, string(policy.RuleExchangeLifetime), "maxLifetime"},
		{"exchange disabled", "closed", false, ExchangeOptions{}, http.StatusForbidden, string(policy.RuleExchangeDisabled), "spec.exchange.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := w.mount(tc.issuer, "acme", fmt.Sprintf("refused-%d", i))
			if tc.revoke {
				p.revoke()
			}
			ex := w.exchanging(p.source(), tc.opts)
			tok, err := ex.Token(context.Background())
			g.Expect(tok).To(BeEmpty())
			var xe *ExchangeError
			g.Expect(errors.As(err, &xe)).To(BeTrue(), "%v", err)
			g.Expect(xe.StatusCode).To(Equal(tc.status))
			g.Expect(xe.Code).To(Equal(tc.code))
			g.Expect(xe.Message).NotTo(BeEmpty())
			g.Expect(xe.Message).To(ContainSubstring(tc.message))
			g.Expect(err.Error()).To(HavePrefix(fmt.Sprintf("tokensource: the token exchange refused (%d %s): ", tc.status, tc.code)))
			g.Expect(err.Error()).NotTo(ContainSubstring(p.value))
			g.Expect(ex.Err()).To(Equal(err))
			g.Expect(ex.Current()).To(BeNil())
		})
	}
}

// TestExchangingRateLimited: a 429 is honoured: no exchange before its Retry-After,
// the current token served while it lives, the error once it has expired, and the
// next exchange after the wait succeeds.
func TestExchangingRateLimited(t *testing.T) {
	g := NewWithT(t)
	w := serveExchange(t, map[string]tokensv1.ExchangeSpec{"limited": {Enabled: true, RatePerMinute: 1}})
	p := w.mount("limited", "acme", "ci")
	ex := w.exchanging(p.source(), ExchangeOptions{Lifetime: 30 * time.Second})
	ctx := context.Background()

	first, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	// Due at 20s; the budget of one a minute refills at 60s.
	w.clk.Step(21 * time.Second)
	g.Expect(ex.Token(ctx)).To(Equal(first), "the token still lives, so it is served")
	g.Expect(w.exchanges()).To(HaveLen(2))
	var xe *ExchangeError
	g.Expect(errors.As(ex.Err(), &xe)).To(BeTrue())
	g.Expect(xe.StatusCode).To(Equal(http.StatusTooManyRequests))
	g.Expect(xe.Code).To(Equal(exchangeapi.CodeRateLimited))
	g.Expect(xe.RetryAfter).To(Equal(39 * time.Second))
	g.Expect(xe.Message).To(ContainSubstring("try again in 39 seconds"))

	g.Expect(ex.Token(ctx)).To(Equal(first))
	g.Expect(w.exchanges()).To(HaveLen(2), "no exchange before Retry-After")

	// Expired, still before Retry-After: the 429 is the answer, without asking again.
	w.clk.Step(10 * time.Second)
	tok, err := ex.Token(ctx)
	g.Expect(tok).To(BeEmpty())
	g.Expect(err).To(MatchError(xe))
	g.Expect(err.Error()).NotTo(ContainSubstring(p.value))
	g.Expect(err.Error()).NotTo(ContainSubstring(first))
	g.Expect(w.exchanges()).To(HaveLen(2))

	w.clk.Step(30 * time.Second)
	next, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(next).NotTo(Equal(first))
	g.Expect(ex.Err()).NotTo(HaveOccurred())
	g.Expect(w.exchanges()).To(HaveLen(3))
}

// TestExchangingBackoff: a failed refresh is not retried on every call, only after
// the backoff, or at once when the parent rotates.
func TestExchangingBackoff(t *testing.T) {
	g := NewWithT(t)
	w := serveExchange(t, map[string]tokensv1.ExchangeSpec{"default": {Enabled: true}})
	p := w.mount("default", "acme", "ci")
	src := p.source()
	ex := w.exchanging(src, ExchangeOptions{Lifetime: 60 * time.Second, RefreshBefore: 30 * time.Second})
	ctx := context.Background()
	first, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())

	p.revoke()
	w.clk.Step(31 * time.Second)
	g.Expect(ex.Token(ctx)).To(Equal(first))
	g.Expect(ex.Err()).To(MatchError(ContainSubstring("(401 " + validatorapi.ReasonRevoked + ")")))
	g.Expect(ex.Token(ctx)).To(Equal(first))
	g.Expect(w.exchanges()).To(HaveLen(2))
	w.clk.Step(failureBackoff)
	g.Expect(ex.Token(ctx)).To(Equal(first))
	g.Expect(w.exchanges()).To(HaveLen(3))

	// The operator minted a new token (say, after un-revoking): the new parent is
	// tried at once.
	p.at.Spec.Revoked = false
	p.rotate()
	g.Eventually(func() string { return src.Current().ID }).Should(Equal(p.id()))
	second, err := ex.Token(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second).NotTo(Equal(first))
	g.Expect(w.exchanges()).To(HaveLen(4))
	g.Expect(ex.Err()).NotTo(HaveOccurred())
}

// TestExchangeAnswers: what is not the exchange service's own JSON still gives a
// clear error, and a token echoed back never reaches it.
func TestExchangeAnswers(t *testing.T) {
	const parentToken = "apt_01KAAAAAAAAAAAAAAAAAAAAAAA_secretsecretsecret"
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"proxy error page", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		}, "tokensource: the token exchange refused (502): the answer is not the exchange service's: Bad Gateway"},
		{"token echoed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"Unknown","message":"unknown token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + `"}`))
		}, "tokensource: the token exchange refused (401 Unknown): unknown token [token]"},
		{"200 without a token", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"token":"","expiresIn":600}`))
		}, "tokensource: the exchange answered 200 without a token and its lifetime"},
		{"429 with a date", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", exchangeEpoch.Add(time.Minute).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		}, "tokensource: the token exchange refused (429): the answer is not the exchange service's: Too Many Requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			_, err := exchangeOnce(context.Background(), parentToken, &ExchangeOptions{URL: srv.URL}, func() time.Time { return exchangeEpoch })
			g.Expect(err).To(MatchError(tc.want))
			g.Expect(err.Error()).NotTo(ContainSubstring("secretsecret"))
			if xe := (*ExchangeError)(nil); errors.As(err, &xe) && xe.StatusCode == http.StatusTooManyRequests {
				g.Expect(xe.RetryAfter).To(Equal(time.Minute))
			}
		})
	}
}

// TestTokenURL: the request each option makes, and the options refused up front.
func TestTokenURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts ExchangeOptions
		want string
		err  string
	}{
		{"nothing asked", ExchangeOptions{URL: "https://x.test"}, "https://x.test/v1/token", ""},
		{"everything", ExchangeOptions{URL: "https://x.test/", Lifetime: 10 * time.Minute, Tenant: "acme", SubTenant: "eu",
			Role: "viewer", Scopes: []string{"a:read", "b:read"}, Audiences: []string{"api-1", "api-2"}},
			"https://x.test/v1/token?audience=api-1&audience=api-2&expiration=600&role=viewer&scope=a%3Aread+b%3Aread&sub_tenant=eu&tenant=acme", ""},
		{"behind a path", ExchangeOptions{URL: "http://proxy.test/exchange"}, "http://proxy.test/exchange/v1/token", ""},
		{"no URL", ExchangeOptions{}, "", "tokensource: ExchangeOptions.URL is required"},
		{"not http", ExchangeOptions{URL: "ftp://x.test"}, "", `tokensource: the exchange URL "ftp://x.test" is not an http(s) URL`},
		{"no host", ExchangeOptions{URL: "https:///v1"}, "", `tokensource: the exchange URL "https:///v1" is not an http(s) URL`},
		{"part of a second", ExchangeOptions{URL: "https://x.test", Lifetime: 1500 * time.Millisecond}, "", "tokensource: the exchange lifetime 1.5s is not a positive whole number of seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := tokenURL(&tc.opts)
			if tc.err != "" {
				g.Expect(err).To(MatchError(tc.err))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// TestNewExchanging: options that could not work are refused before any exchange.
func TestNewExchanging(t *testing.T) {
	dir := t.TempDir()
	src := newSource(t, dir, Options{})
	for _, tc := range []struct {
		name   string
		parent *Source
		opts   ExchangeOptions
		err    string
	}{
		{"no parent", nil, ExchangeOptions{URL: "https://x.test"}, "tokensource: NewExchanging needs a parent Source"},
		{"no URL", src, ExchangeOptions{}, "tokensource: ExchangeOptions.URL is required"},
		{"negative refresh", src, ExchangeOptions{URL: "https://x.test", RefreshBefore: -time.Second}, "tokensource: RefreshBefore -1s is negative"},
		{"refresh not shorter than the lifetime", src, ExchangeOptions{URL: "https://x.test", Lifetime: time.Minute, RefreshBefore: time.Minute},
			"tokensource: RefreshBefore 1m0s is not shorter than the lifetime 1m0s: every call would exchange"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewExchanging(tc.parent, tc.opts)
			NewWithT(t).Expect(err).To(MatchError(tc.err))
		})
	}
	t.Run("parent without a token", func(t *testing.T) {
		g := NewWithT(t)
		ex, err := NewExchanging(src, ExchangeOptions{URL: "https://x.test"})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = ex.Token(context.Background())
		g.Expect(err).To(MatchError(ErrNoToken))
	})
}
