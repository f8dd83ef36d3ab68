package validator

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

var env *testenv.Env

// apiServerWebhook is where the test API server sends TokenReviews for bearer tokens
// it does not know itself: a test that serves a validator there (serveAPIServerWebhook)
// proves that kube-apiserver authenticates the operator's tokens and that RBAC binds
// by the groups the validator answers.
var apiServerWebhook = &webhookFront{}

// apiServerAudience is the audience the test API server asks TokenReviews for
// (--api-audiences): a token must carry it to authenticate there.
const apiServerAudience = "apitoken-test-apiserver"

func TestMain(m *testing.M) {
	// The caches log through controller-runtime's root logger; what matters here is
	// in each test's audit log.
	ctrllog.SetLogger(logr.Discard())
	front := httptest.NewUnstartedServer(apiServerWebhook)
	front.StartTLS()
	dir, err := os.MkdirTemp("", "validator-webhook")
	if err != nil {
		panic(err)
	}
	kubeconfig := filepath.Join(dir, "token-webhook.kubeconfig")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
	if err := writeWebhookKubeconfig(kubeconfig, front.URL+validatorapi.PathTokenReview, ca); err != nil {
		panic(err)
	}
	// No webhook cache: every request asks the validator again, as revocation needs.
	testenv.Main(m, &env, func(e *testenv.Env) error {
		e.Cleanup(func() { front.Close(); _ = os.RemoveAll(dir) })
		return nil
	}, withTokenWebhook(kubeconfig, 0, apiServerAudience))
}

// withTokenWebhook configures kube-apiserver as docs/kube-apiserver-webhook.md says:
// the webhook token authenticator of kubeconfig, its decisions cached for ttl, tokens
// asked to carry audience.
func withTokenWebhook(kubeconfig string, ttl time.Duration, audience string) func(*envtest.Environment) {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().
			Set("authentication-token-webhook-config-file", kubeconfig).
			Set("authentication-token-webhook-version", "v1").
			Set("authentication-token-webhook-cache-ttl", ttl.String()).
			Set("api-audiences", audience)
	}
}

// webhookFront passes requests to the handler a test set, and answers 503 while none
// is set: the API server then refuses the token.
type webhookFront struct{ h atomic.Pointer[http.Handler] }

func (f *webhookFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := f.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "no validator serves the API server in this test", http.StatusServiceUnavailable)
}

// writeWebhookKubeconfig writes the file of kube-apiserver's
// --authentication-token-webhook-config-file, as docs/kube-apiserver-webhook.md
// describes it: the validator at url as the cluster, trusted by its CA (none for
// plain HTTP); no user credentials.
func writeWebhookKubeconfig(path, url string, ca []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["validator"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: ca}
	cfg.AuthInfos["kube-apiserver"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "validator", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "webhook"
	return clientcmd.WriteToFile(*cfg, path)
}

// serveAPIServerWebhook makes h's validator the test API server's token authenticator
// until the test ends.
func (h *harness) serveAPIServerWebhook() {
	handler := h.srv.Handler()
	apiServerWebhook.h.Store(&handler)
	h.t.Cleanup(func() { apiServerWebhook.h.Store(nil) })
}

// harness is a validator running against the test API server: its own cache and
// index, a fake clock, and a real listener.
type harness struct {
	t     testing.TB
	g     Gomega
	ctx   context.Context
	clk   *clocktesting.FakeClock
	idx   *index.Index
	srv   *Server
	usage *UsageReporter
	url   string
	// probeURL serves ProbeHandler: /metrics, /healthz, /readyz.
	probeURL string
	http     *http.Client
	ns       string
	audit    *auditLog
	// stream is what the audit stream wrote, when the test did not bring its own.
	stream *testenv.Buffer
}

// auditLinesIn decodes every line b holds so far; a line that is not an AuditLine fails.
func auditLinesIn(g Gomega, b *testenv.Buffer) []validatorapi.AuditLine {
	var out []validatorapi.AuditLine
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var a validatorapi.AuditLine
		g.Expect(json.Unmarshal([]byte(l), &a)).To(Succeed(), l)
		out = append(out, a)
	}
	return out
}

// auditLines returns the audit stream's lines once one of them matches m.
func (h *harness) auditLines(m OmegaMatcher) []validatorapi.AuditLine {
	var lines []validatorapi.AuditLine
	h.g.Eventually(func(g Gomega) {
		lines = auditLinesIn(g, h.stream)
		g.Expect(lines).To(ContainElement(m))
	}).WithTimeout(5 * time.Second).Should(Succeed())
	return lines
}

// auditLog captures the audit log lines.
type auditLog struct {
	mu    sync.Mutex
	lines []string
}

func (a *auditLog) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.lines = append(a.lines, args)
	}, funcr.Options{Verbosity: 1})
}

func (a *auditLog) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines, "\n")
}

// start runs a validator with opts against env (or cfg when given); its clock
// starts at the current second.
func start(t testing.TB, opts Options) *harness {
	return startWith(t, env.Config, opts)
}

func startWith(t testing.TB, cfg *rest.Config, opts Options) *harness {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &harness{t: t, g: g, ctx: ctx, clk: clocktesting.NewFakeClock(time.Now().Truncate(time.Second)), audit: &auditLog{}}
	h.idx = index.New(index.Config{Audiences: opts.Audiences, Clock: h.clk})
	c, err := cache.New(cfg, CacheOptions(testenv.Scheme))
	g.Expect(err).NotTo(HaveOccurred())
	synced, err := Watch(ctx, c, h.idx, logr.Discard())
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = c.Start(ctx) }()
	cl, err := client.New(cfg, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	h.usage = NewUsageReporter(cl, h.clk, time.Minute, logr.Discard())
	opts.Clock, opts.Ready, opts.Usage, opts.Log = h.clk, synced, h.usage, h.audit.logger()
	if opts.Audit == nil {
		h.stream = &testenv.Buffer{}
		opts.Audit = NewAuditStream(h.stream, AuditOptions{Clock: h.clk, FlushInterval: 20 * time.Millisecond})
		go opts.Audit.Run(ctx)
	}
	h.srv = New(h.idx, opts)
	ts := httptest.NewServer(h.srv.Handler())
	t.Cleanup(ts.Close)
	h.url = ts.URL
	probes := httptest.NewServer(h.srv.ProbeHandler())
	t.Cleanup(probes.Close)
	h.probeURL = probes.URL
	h.http = &http.Client{Timeout: 10 * time.Second}
	g.Eventually(synced).WithTimeout(30 * time.Second).Should(BeTrue())

	h.ns = "t-" + rand.String(8)
	g.Expect(env.Client.Create(ctx, testenv.Namespace(h.ns))).To(Succeed())
	return h
}

// issuerFixture is a ClusterTokenIssuer with its signing keys.
type issuerFixture struct {
	name string
	url  string
	keys []*token.SigningKey
}

func apiJWK(k *token.SigningKey) tokensv1.JSONWebKey {
	j := k.PublicJWK()
	return tokensv1.JSONWebKey{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y, N: j.N, E: j.E}
}

// issuer creates a ClusterTokenIssuer and writes its status as the issuer controller
// would: the JWKS of its keys, the current key and Ready.
func (h *harness) issuer(alg token.Algorithm, ready bool) *issuerFixture {
	return h.issuerNamed("iss-"+rand.String(8), alg, ready)
}

func (h *harness) issuerNamed(name string, alg token.Algorithm, ready bool) *issuerFixture {
	key, err := token.GenerateKey(alg)
	h.g.Expect(err).NotTo(HaveOccurred())
	f := &issuerFixture{name: name, keys: []*token.SigningKey{key}}
	f.url = "https://" + f.name + ".example"
	cti := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: f.name},
		Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: f.url, Audiences: []string{"acme-apis"}, Signing: tokensv1.SigningSpec{Algorithm: tokensv1.SigningAlgorithm(alg)},
			// The test namespace mints for tenant acme, the tokens' default, and for
			// globex, the second tenant of multi-tenant tokens.
			Tenants: []tokensv1.Tenant{{Name: "acme", Namespaces: []string{h.ns}}, {Name: "globex", Namespaces: []string{h.ns}}}},
	}
	h.g.Expect(env.Client.Create(h.ctx, cti)).To(Succeed())
	h.t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cti) })
	h.setIssuerKeys(f, ready, f.keys...)
	return f
}

// setIssuerKeys publishes keys (the first is current) in the issuer's status.
func (h *harness) setIssuerKeys(f *issuerFixture, ready bool, keys ...*token.SigningKey) {
	cti := &tokensv1.ClusterTokenIssuer{}
	h.g.Expect(env.Client.Get(h.ctx, client.ObjectKey{Name: f.name}, cti)).To(Succeed())
	cti.Status.JWKS = &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{}}
	cti.Status.Keys = nil
	for _, k := range keys {
		cti.Status.JWKS.Keys = append(cti.Status.JWKS.Keys, apiJWK(k))
		cti.Status.Keys = append(cti.Status.Keys, tokensv1.SigningKeyStatus{KeyID: k.ID, Algorithm: tokensv1.SigningAlgorithm(k.Algorithm), CreatedAt: metav1.NewTime(h.clk.Now())})
	}
	if len(keys) > 0 {
		cti.Status.CurrentKeyID = keys[0].ID
	}
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&cti.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: status, Reason: tokensv1.ReasonKeyGenerated, ObservedGeneration: cti.Generation})
	h.g.Expect(env.Client.Status().Update(h.ctx, cti)).To(Succeed())
	// The APIToken and ClusterTokenIssuer informers deliver independently: a token can
	// be indexed before its issuer's keys are, and a test that waits for one must not
	// be answered "the token's signing key is unknown".
	want := kids(cti.Status.JWKS.Keys)
	h.g.Eventually(func() []string {
		if iss := h.idx.Issuer(f.name); iss != nil {
			return kids(iss.JWKS)
		}
		return nil
	}).Should(Equal(want))
}

// issuerObject is a ClusterTokenIssuer with key published, as the index receives it.
func issuerObject(name, url string, key *token.SigningKey, ready bool) *tokensv1.ClusterTokenIssuer {
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	return &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: url, OpaquePrefix: "apt",
			Roles: []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}}},
		Status: tokensv1.ClusterTokenIssuerStatus{
			JWKS:         &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{apiJWK(key)}},
			CurrentKeyID: key.ID,
			Conditions:   []metav1.Condition{{Type: tokensv1.ConditionReady, Status: status, Reason: tokensv1.ReasonKeyGenerated}},
		},
	}
}

// tokenSpec is what a test APIToken grants.
type tokenSpec struct {
	format    tokensv1.TokenFormat
	tenant    string
	subTenant string
	role      string
	scopes    []string
	audiences []string
	// memberships make a multi-tenant token; tenant, subTenant and role stay empty.
	memberships []tokensv1.Membership
	// creator is the apitoken.dev/created-by annotation, as the webhook would set it.
	creator string
	// expiresIn is the lifetime left at the fake clock's now; default 1h.
	expiresIn time.Duration
}

func (s tokenSpec) withDefaults() tokenSpec {
	if s.format == "" {
		s.format = tokensv1.FormatJWT
	}
	if s.expiresIn == 0 {
		s.expiresIn = time.Hour
	}
	if len(s.memberships) > 0 {
		return s
	}
	if s.tenant == "" {
		s.tenant = "acme"
	}
	if s.role == "" {
		s.role = "editor"
	}
	return s
}

// minted is an APIToken and the bearer token of its current status.current.
type minted struct {
	obj    *tokensv1.APIToken
	token  string
	issued tokensv1.IssuedToken
}

// mint mints a token for apiToken as the controller would, without writing it.
func (h *harness) mint(iss *issuerFixture, obj *tokensv1.APIToken, spec tokenSpec) (string, tokensv1.IssuedToken) {
	spec = spec.withDefaults()
	now := h.clk.Now()
	it := tokensv1.IssuedToken{
		TokenID: token.NewTokenID(), Format: spec.format,
		Claims: tokensv1.TokenClaims{Tenant: spec.tenant, SubTenant: spec.subTenant, Role: spec.role, Memberships: spec.memberships,
			Scopes: spec.scopes, Audiences: spec.audiences},
		IssuedAt:  metav1.NewTime(now),
		ExpiresAt: metav1.NewTime(now.Add(spec.expiresIn)),
	}
	if spec.format == tokensv1.FormatOpaque {
		op, err := token.MintOpaque("apt", it.TokenID)
		h.g.Expect(err).NotTo(HaveOccurred())
		it.TokenHash = op.Hash
		return op.Token, it
	}
	key := iss.keys[0]
	it.SigningKeyID = key.ID
	var ms []token.Membership
	for _, m := range spec.memberships {
		ms = append(ms, token.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role})
	}
	tok, err := token.MintJWT(key, token.Claims{
		Issuer: iss.url, Subject: "apitoken:" + obj.Namespace + ":" + obj.Name, Audience: spec.audiences,
		IssuedAt: now, ExpiresAt: now.Add(spec.expiresIn), ID: it.TokenID,
		Tenant: spec.tenant, SubTenant: spec.subTenant, Role: spec.role, Memberships: ms, Scopes: spec.scopes,
	})
	h.g.Expect(err).NotTo(HaveOccurred())
	it.Digest = token.Digest(tok)
	return tok, it
}

// apiToken creates an APIToken, mints its token and writes status.current as the
// APIToken controller would.
func (h *harness) apiToken(iss *issuerFixture, spec tokenSpec) *minted {
	spec = spec.withDefaults()
	obj := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "tok-" + rand.String(8)},
		Spec: tokensv1.APITokenSpec{
			IssuerRef: tokensv1.IssuerReference{Name: iss.name}, Tenant: spec.tenant, SubTenant: spec.subTenant,
			Role: spec.role, Memberships: spec.memberships, Scopes: spec.scopes, Audiences: spec.audiences, Format: spec.format,
		},
	}
	if spec.creator != "" {
		obj.Annotations = map[string]string{tokensv1.CreatedByAnnotation: spec.creator}
	}
	h.g.Expect(env.Client.Create(h.ctx, obj)).To(Succeed())
	tok, it := h.mint(iss, obj, spec)
	obj.Status.Current = &it
	h.g.Expect(env.Client.Status().Update(h.ctx, obj)).To(Succeed())
	return &minted{obj: obj, token: tok, issued: it}
}

// rotate mints a new token for m's APIToken and writes the rotation as the controller
// would: the new token current, the old one previous until retire. It returns the new
// token.
func (h *harness) rotate(iss *issuerFixture, m *minted, spec tokenSpec, retire time.Time) string {
	tok, issued := h.mint(iss, m.obj, spec)
	at := metav1.NewTime(retire)
	h.updateStatus(m, func(s *tokensv1.APITokenStatus) {
		prev := *s.Current
		prev.RetireAt = &at
		s.PreviousTokens, s.Current = []tokensv1.IssuedToken{prev}, &issued
	})
	return tok
}

// updateStatus re-reads m's APIToken, applies change to its status and writes it.
func (h *harness) updateStatus(m *minted, change func(*tokensv1.APITokenStatus)) {
	h.g.Eventually(func() error {
		if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(m.obj), m.obj); err != nil {
			return err
		}
		change(&m.obj.Status)
		return env.Client.Status().Update(h.ctx, m.obj)
	}).Should(Succeed())
}

// updateSpec re-reads m's APIToken, applies change to its spec and writes it.
func (h *harness) updateSpec(m *minted, change func(*tokensv1.APITokenSpec)) {
	h.g.Eventually(func() error {
		if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(m.obj), m.obj); err != nil {
			return err
		}
		change(&m.obj.Spec)
		return env.Client.Update(h.ctx, m.obj)
	}).Should(Succeed())
}

// waitIndexed waits until the validator knows m's current token.
func (h *harness) waitIndexed(m *minted) {
	h.g.Eventually(func() *index.Record { return h.idx.Token(m.issued.TokenID) }).ShouldNot(BeNil())
}

// request sends method path with headers and returns the response with its body read.
func (h *harness) request(method, path string, body []byte, headers map[string]string) (*http.Response, string) {
	lines := make([][2]string, 0, len(headers))
	for k, v := range headers {
		lines = append(lines, [2]string{k, v})
	}
	return h.send(method, path, body, lines...)
}

// send is request with header lines that may repeat.
func (h *harness) send(method, path string, body []byte, lines ...[2]string) (*http.Response, string) {
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	h.g.Expect(err).NotTo(HaveOccurred())
	for _, l := range lines {
		req.Header.Add(l[0], l[1])
	}
	resp, err := h.http.Do(req)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	h.g.Expect(err).NotTo(HaveOccurred())
	return resp, string(b)
}

// authorize calls GET /authorize?query with a bearer token (when not empty).
func (h *harness) authorize(tok, query string) *http.Response {
	headers := map[string]string{}
	if tok != "" {
		headers["Authorization"] = "Bearer " + tok
	}
	resp, _ := h.request(http.MethodGet, validatorapi.PathAuthorize+"?"+query, nil, headers)
	return resp
}

// authorizeStatus is authorize's status, for Eventually.
func (h *harness) authorizeStatus(tok, query string) func() int {
	return func() int { return h.authorize(tok, query).StatusCode }
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
