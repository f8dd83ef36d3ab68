package exchange

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	testenv.Main(m, &env, nil)
}

// harness runs, against the test API server, the exchange and a validator as their
// binaries wire them (validator.NewFront, one index each), each on a real listener,
// with one fake clock.
type harness struct {
	t        testing.TB
	g        Gomega
	ctx      context.Context
	clk      *clocktesting.FakeClock
	idx      *index.Index // the exchange's
	vidx     *index.Index // the validator's
	exURL    string       // the exchange
	valURL   string       // the validator
	http     *http.Client
	ns       string // the tenant's namespace
	keysNS   string // the operator's namespace, holding key Secrets
	audit    *auditLog
	exchange *Server
}

type auditLog struct {
	mu    sync.Mutex
	lines []string
}

func (a *auditLog) logger() logr.Logger {
	return funcr.New(func(_, args string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.lines = append(a.lines, args)
	}, funcr.Options{})
}

func (a *auditLog) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines, "\n")
}

// harnessFlags are the flags of both processes: the shipped defaults, with the
// partner-style credential headers.
func harnessFlags() validator.FrontFlags {
	return validator.FrontFlags{
		TenantMismatchStatus: http.StatusNotFound, FailedRPS: 1, FailedBurst: 20, CacheSize: 10000,
		IDHeader: "X-Api-Key", SecretHeader: "X-Api-Secret", TokenHeaders: validator.List{"Token"},
		KubeAPIQPS: 50, KubeAPIBurst: 100,
	}
}

func start(t testing.TB, flags validator.FrontFlags) *harness {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{t: t, g: g, ctx: ctx, clk: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)), audit: &auditLog{},
		http: &http.Client{Timeout: 10 * time.Second}}
	h.ns, h.keysNS = "t-"+rand.String(8), "k-"+rand.String(8)
	for _, ns := range []string{h.ns, h.keysNS} {
		g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	}

	// The exchange, as cmd/exchange builds it.
	fr, err := validator.NewFront(ctx, env.Config, &flags, nil, h.clk, logr.Discard())
	g.Expect(err).NotTo(HaveOccurred())
	opts, err := flags.Options()
	g.Expect(err).NotTo(HaveOccurred())
	opts.Ready, opts.Live, opts.Clock = fr.Synced, fr.Live, h.clk
	h.idx = fr.Index
	h.exchange = New(validator.New(fr.Index, opts), fr.Index, NewKeys(fr.Client, h.keysNS), Options{
		Clock: h.clk, Ready: fr.Synced, Log: h.audit.logger(), TenantMismatchStatus: flags.TenantMismatchStatus,
	})
	go func() { _ = fr.Cache.Start(ctx) }()
	ex := httptest.NewServer(h.exchange.Handler())
	t.Cleanup(ex.Close)
	h.exURL = ex.URL

	// A validator of its own, as cmd/validator builds it: the cascade must hold in
	// every replica, not only in the index the exchange authenticated against.
	vfr, err := validator.NewFront(ctx, env.Config, &flags, nil, h.clk, logr.Discard())
	g.Expect(err).NotTo(HaveOccurred())
	vopts, err := flags.Options()
	g.Expect(err).NotTo(HaveOccurred())
	vopts.Ready, vopts.Live, vopts.Clock = vfr.Synced, vfr.Live, h.clk
	h.vidx = vfr.Index
	go func() { _ = vfr.Cache.Start(ctx) }()
	val := httptest.NewServer(validator.New(vfr.Index, vopts).Handler())
	t.Cleanup(val.Close)
	h.valURL = val.URL

	g.Eventually(func() bool { return fr.Synced() && vfr.Synced() }).WithTimeout(30 * time.Second).Should(BeTrue())
	return h
}

// issuerFixture is a ClusterTokenIssuer, its key Secret and its keys.
type issuerFixture struct {
	name string
	url  string
	keys []*token.SigningKey
}

// issuer creates a ClusterTokenIssuer with exchange as its exchange policy, writes its
// key Secret and status as the issuer controller would, and waits until both
// indexes publish it.
func (h *harness) issuer(exchange *tokensv1.ExchangeSpec) *issuerFixture {
	key, err := token.GenerateKey(token.ES256)
	h.g.Expect(err).NotTo(HaveOccurred())
	f := &issuerFixture{name: "iss-" + rand.String(8), keys: []*token.SigningKey{key}}
	f.url = "https://" + f.name + ".example"
	cti := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: f.name},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer: f.url, Audiences: []string{"acme-apis"}, Signing: tokensv1.SigningSpec{Algorithm: tokensv1.AlgorithmES256},
			Tenants:  []tokensv1.Tenant{{Name: "acme", Namespaces: []string{h.ns}}, {Name: "globex", Namespaces: []string{h.ns}}},
			Exchange: exchange,
		},
	}
	h.g.Expect(env.Client.Create(h.ctx, cti)).To(Succeed())
	h.t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	h.publish(f, key)
	return f
}

// publish makes key the issuer's current key, keeping the ones before it published:
// the key Secret first, then the status, as the issuer controller orders them.
func (h *harness) publish(f *issuerFixture, key *token.SigningKey) {
	if f.keys[len(f.keys)-1] != key {
		f.keys = append(f.keys, key)
	}
	h.writeKeySecret(f)
	h.publishStatus(f, key)
}

// writeKeySecret writes the private halves of f's keys.
func (h *harness) writeKeySecret(f *issuerFixture) {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.keysNS, Name: keystore.SecretName(f.name)}}
	h.g.Eventually(func() error {
		_, err := controllerutil.CreateOrUpdate(h.ctx, env.Client, sec, func() error {
			sec.Data = map[string][]byte{}
			for _, k := range f.keys {
				pem, err := k.MarshalPrivateKey()
				if err != nil {
					return err
				}
				sec.Data[keystore.DataKey(k.ID)] = pem
			}
			return nil
		})
		return err
	}).Should(Succeed())
}

// publishStatus publishes f's keys and key in the issuer's status, key current.
func (h *harness) publishStatus(f *issuerFixture, key *token.SigningKey) {
	keys := f.keys
	if keys[len(keys)-1] != key {
		keys = append(keys, key)
	}
	h.g.Eventually(func() error {
		cti := &tokensv1.ClusterTokenIssuer{}
		if err := env.Client.Get(h.ctx, client.ObjectKey{Name: f.name}, cti); err != nil {
			return err
		}
		cti.Status.JWKS = &tokensv1.JSONWebKeySet{}
		cti.Status.Keys = nil
		for _, k := range keys {
			j := k.PublicJWK()
			cti.Status.JWKS.Keys = append(cti.Status.JWKS.Keys, tokensv1.JSONWebKey{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y})
			cti.Status.Keys = append(cti.Status.Keys, tokensv1.SigningKeyStatus{KeyID: k.ID, Algorithm: tokensv1.SigningAlgorithm(k.Algorithm), CreatedAt: metav1.NewTime(h.clk.Now())})
		}
		cti.Status.CurrentKeyID = key.ID
		meta.SetStatusCondition(&cti.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonKeyGenerated})
		return env.Client.Status().Update(h.ctx, cti)
	}).Should(Succeed())
	for _, idx := range []*index.Index{h.idx, h.vidx} {
		h.g.Eventually(func() string {
			if iss := idx.Issuer(f.name); iss != nil {
				return iss.CurrentKeyID
			}
			return ""
		}).Should(Equal(key.ID))
	}
}

// updateExchange changes the issuer's exchange policy and waits until the exchange's
// index has it.
func (h *harness) updateExchange(f *issuerFixture, change func(*tokensv1.ExchangeSpec)) {
	h.g.Eventually(func() error {
		cti := &tokensv1.ClusterTokenIssuer{}
		if err := env.Client.Get(h.ctx, client.ObjectKey{Name: f.name}, cti); err != nil {
			return err
		}
		change(cti.Spec.Exchange)
		return env.Client.Update(h.ctx, cti)
	}).Should(Succeed())
}

// parent is a listed token: an APIToken and the token of its status.current.
type parent struct {
	obj    *tokensv1.APIToken
	token  string
	issued tokensv1.IssuedToken
}

type parentSpec struct {
	format    tokensv1.TokenFormat
	subTenant string
	role      string
	scopes    []string
	expiresIn time.Duration
	// memberships make a multi-tenant parent, of no tenant and role of its own.
	memberships []tokensv1.Membership
}

// grant is the tenant, sub-tenant and role of spec's token, or its memberships.
func (spec parentSpec) grant() (tenant, subTenant, role string, ms []tokensv1.Membership) {
	if len(spec.memberships) > 0 {
		return "", "", "", spec.memberships
	}
	return "acme", spec.subTenant, spec.role, nil
}

// apiToken creates an APIToken and writes status.current as the controller would,
// then waits until the exchange's index lists it.
func (h *harness) apiToken(iss *issuerFixture, spec parentSpec) *parent {
	if spec.format == "" {
		spec.format = tokensv1.FormatJWT
	}
	if spec.role == "" {
		spec.role = "editor"
	}
	if spec.expiresIn == 0 {
		spec.expiresIn = 48 * time.Hour
	}
	tenant, subTenant, role, ms := spec.grant()
	obj := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "tok-" + rand.String(8)},
		Spec: tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.name}, Tenant: tenant, SubTenant: subTenant,
			Role: role, Memberships: ms, Scopes: spec.scopes, Format: spec.format},
	}
	h.g.Expect(env.Client.Create(h.ctx, obj)).To(Succeed())
	p := &parent{obj: obj}
	p.token, p.issued = h.mint(iss, obj, spec)
	obj.Status.Current = &p.issued
	h.g.Expect(env.Client.Status().Update(h.ctx, obj)).To(Succeed())
	for _, idx := range []*index.Index{h.idx, h.vidx} {
		h.g.Eventually(func() *index.Record { return idx.Token(p.issued.TokenID) }).ShouldNot(BeNil())
	}
	return p
}

func (h *harness) mint(iss *issuerFixture, obj *tokensv1.APIToken, spec parentSpec) (string, tokensv1.IssuedToken) {
	now := h.clk.Now()
	tenant, subTenant, role, ms := spec.grant()
	it := tokensv1.IssuedToken{
		TokenID: token.NewTokenID(), Format: spec.format,
		Claims: tokensv1.TokenClaims{Tenant: tenant, SubTenant: subTenant, Role: role, Memberships: ms,
			Scopes: spec.scopes, Audiences: []string{"acme-apis"}},
		IssuedAt:  metav1.NewTime(now),
		ExpiresAt: metav1.NewTime(now.Add(spec.expiresIn)),
	}
	if spec.format == tokensv1.FormatOpaque {
		op, err := token.MintOpaque(tokensv1.DefaultOpaquePrefix, it.TokenID)
		h.g.Expect(err).NotTo(HaveOccurred())
		it.TokenHash = op.Hash
		return op.Token, it
	}
	key := iss.keys[len(iss.keys)-1]
	it.SigningKeyID = key.ID
	var claimed []token.Membership
	for _, m := range ms {
		claimed = append(claimed, token.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role})
	}
	tok, err := token.MintJWT(key, token.Claims{
		Issuer: iss.url, Subject: token.Subject(obj.Namespace, obj.Name), Audience: it.Claims.Audiences,
		IssuedAt: now, ExpiresAt: now.Add(spec.expiresIn), ID: it.TokenID,
		Tenant: tenant, SubTenant: subTenant, Role: role, Memberships: claimed, Scopes: spec.scopes,
	})
	h.g.Expect(err).NotTo(HaveOccurred())
	return tok, it
}

// updateStatus re-reads p's APIToken, changes its status and writes it.
func (h *harness) updateStatus(p *parent, change func(*tokensv1.APITokenStatus)) {
	h.g.Eventually(func() error {
		if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(p.obj), p.obj); err != nil {
			return err
		}
		change(&p.obj.Status)
		return env.Client.Status().Update(h.ctx, p.obj)
	}).Should(Succeed())
}

// response is an HTTP answer with its body read.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(v any) {
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		panic("not JSON: " + r.body)
	}
}

func (h *harness) do(req *http.Request) response {
	resp, err := h.http.Do(req)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	h.g.Expect(err).NotTo(HaveOccurred())
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// oauth posts form to /oauth2/token.
func (h *harness) oauth(form url.Values) response {
	req, err := http.NewRequest(http.MethodPost, h.exURL+exchangeapi.PathOAuthToken, strings.NewReader(form.Encode()))
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return h.do(req)
}

// exchangeForm is an RFC 8693 request for tok with extra parameters.
func exchangeForm(tok string, extra ...string) url.Values {
	f := url.Values{
		exchangeapi.ParamGrantType:        {exchangeapi.GrantTypeTokenExchange},
		exchangeapi.ParamSubjectToken:     {tok},
		exchangeapi.ParamSubjectTokenType: {exchangeapi.TokenTypeAccessToken},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f[extra[i]] = append(f[extra[i]], extra[i+1])
	}
	return f
}

// simple sends GET /v1/token?query with headers.
func (h *harness) simple(query string, headers map[string]string) response {
	req, err := http.NewRequest(http.MethodGet, h.exURL+exchangeapi.PathToken+"?"+query, nil)
	h.g.Expect(err).NotTo(HaveOccurred())
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return h.do(req)
}

func bearerAuth(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

// exchangeOK exchanges tok by GET /v1/token?query and returns the new token.
func (h *harness) exchangeOK(tok, query string) exchangeapi.TokenResponse {
	h.t.Helper()
	r := h.simple(query, bearerAuth(tok))
	h.g.Expect(r.status).To(Equal(http.StatusOK), r.body)
	var out exchangeapi.TokenResponse
	r.json(&out)
	return out
}

// validate asks the validator's /v1/validate about tok.
func (h *harness) validate(tok string, req validatorapi.Requirement) validatorapi.ValidateResponse {
	body, err := json.Marshal(validatorapi.ValidateRequest{Token: tok, Requirement: req})
	h.g.Expect(err).NotTo(HaveOccurred())
	hr, err := http.NewRequest(http.MethodPost, h.valURL+validatorapi.PathValidate, strings.NewReader(string(body)))
	h.g.Expect(err).NotTo(HaveOccurred())
	var out validatorapi.ValidateResponse
	h.do(hr).json(&out)
	return out
}

// reason is the validator's answer for tok, for Eventually: "Allowed" or why not.
func (h *harness) reason(tok string) func() string {
	return func() string { return h.validate(tok, validatorapi.Requirement{}).Reason }
}

// authorizeStatus is the validator's /authorize answer for tok.
func (h *harness) authorizeStatus(tok string) int {
	req, err := http.NewRequest(http.MethodGet, h.valURL+validatorapi.PathAuthorize, nil)
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+tok)
	return h.do(req).status
}

// tokenReviewAuthenticated is the validator's TokenReview answer for tok.
func (h *harness) tokenReviewAuthenticated(tok string) bool {
	body, err := json.Marshal(authnv1.TokenReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec: authnv1.TokenReviewSpec{Token: tok}})
	h.g.Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodPost, h.valURL+validatorapi.PathTokenReview, strings.NewReader(string(body)))
	h.g.Expect(err).NotTo(HaveOccurred())
	var out authnv1.TokenReview
	h.do(req).json(&out)
	return out.Status.Authenticated
}
