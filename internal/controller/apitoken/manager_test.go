package apitoken

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// bufferLogger logs as JSON into a buffer, debug levels up to V(5) included (the
// controller's "Reconciling" lines). From V(8) on, client-go dumps request bodies,
// Secret data included, for any controller: never run a manager that verbose.
func bufferLogger() (logr.Logger, *testenv.Buffer) {
	return bufferLoggerAt(-5)
}

func bufferLoggerAt(level zapcore.Level) (logr.Logger, *testenv.Buffer) {
	buf := &testenv.Buffer{}
	return zap.New(zap.WriteTo(buf), zap.Level(level)), buf
}

// writeCounter counts the requests that change something on the API server and the
// reads that are not watches, and times every request by kind.
type writeCounter struct {
	writes atomic.Int64 // everything but events
	events atomic.Int64
	reads  atomic.Int64 // GETs and LISTs, watches not included

	mu    sync.Mutex
	calls map[string]*callStats
}

// callStats is the number and total duration of one kind of request.
type callStats struct {
	n     int
	total time.Duration
}

func (c *writeCounter) record(kind string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]*callStats{}
	}
	s := c.calls[kind]
	if s == nil {
		s = &callStats{}
		c.calls[kind] = s
	}
	s.n++
	s.total += d
}

// summary lists the kinds of requests with their count and mean latency.
func (c *writeCounter) summary() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, s := range c.calls {
		out = append(out, fmt.Sprintf("%s: %d, mean %s", k, s.n, (s.total/time.Duration(s.n)).Round(10*time.Microsecond)))
	}
	sort.Strings(out)
	return out
}

// requestKind is "METHOD resource[/subresource]" of an API request.
func requestKind(req *http.Request) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	kind := ""
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			kind = strings.Join(parts[i+2:min(len(parts), i+3)], "/")
			if i+4 < len(parts) {
				kind += "/" + parts[i+4]
			}
		}
	}
	if kind == "" && len(parts) > 0 {
		kind = parts[len(parts)-1]
	}
	if req.URL.Query().Get("watch") == "true" {
		kind += " (watch)"
	}
	return req.Method + " " + kind
}

// countingTransport counts the requests of one client into a shared writeCounter;
// they still go to the API server.
type countingTransport struct {
	next http.RoundTripper
	c    *writeCounter
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet:
		if req.URL.Query().Get("watch") != "true" {
			t.c.reads.Add(1)
		}
	case http.MethodHead, http.MethodOptions:
	default:
		if strings.Contains(req.URL.Path, "/events") {
			t.c.events.Add(1)
		} else {
			t.c.writes.Add(1)
		}
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.c.record(requestKind(req), time.Since(start))
	return resp, err
}

// testManager runs the controller in a manager, watching only namespaces (and the
// operator's), as main does apart from that.
type testManager struct {
	mgr     ctrl.Manager
	counter *writeCounter
	logs    *testenv.Buffer
	// cfg is the manager's configuration without the counting transport.
	cfg *rest.Config
	// stop stops the manager and waits until it stopped.
	stop func()
}

func startManager(t testing.TB, maxConcurrent int, namespaces ...string) *testManager {
	return startManagerWith(t, managerOptions{workers: maxConcurrent, logLevel: -5}, namespaces...)
}

// managerOptions vary the test manager.
type managerOptions struct {
	workers  int
	logLevel zapcore.Level // 0: info
	// cacheAllSecrets drops the label filter of the Secret cache, to show its worth.
	cacheAllSecrets bool
}

func startManagerWith(t testing.TB, opts managerOptions, namespaces ...string) *testManager {
	t.Helper()
	g := NewWithT(t)
	counter := &writeCounter{}
	plain := rest.CopyConfig(env.Config)
	plain.QPS, plain.Burst = 1000, 2000
	cfg := rest.CopyConfig(plain)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return &countingTransport{next: rt, c: counter}
	}
	logger, logs := bufferLoggerAt(opts.logLevel)
	cacheOpts := controller.CacheOptions()
	if opts.cacheAllSecrets {
		cacheOpts.ByObject = nil
	}
	cacheOpts.DefaultNamespaces = map[string]cache.Config{operatorNS: {}}
	for _, ns := range namespaces {
		cacheOpts.DefaultNamespaces[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 logger,
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	events := controller.NewEventWriter(mgr.GetClient(), mgr.GetScheme(), "apitoken-controller", 1024, logger)
	g.Expect(mgr.Add(events)).To(Succeed())
	r := &Reconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Namespace:               operatorNS,
		Clock:                   clock.RealClock{},
		Recorder:                events,
		MaxConcurrentReconciles: opts.workers,
	}
	g.Expect(r.SetupWithManager(mgr)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	g.Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	return &testManager{mgr: mgr, counter: counter, logs: logs, cfg: plain, stop: stop}
}

// TestManager drives the controller through its watches only: no test calls
// Reconcile. It also checks that no log line, event or condition holds token material.
func TestManager(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	m := startManager(t, 2, ns)

	values := map[string]bool{} // every token value seen in a Secret
	ready := func(tok *tokensv1.APIToken) func(Gomega) {
		return func(g Gomega) {
			got := &tokensv1.APIToken{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tok), got)).To(Succeed())
			c := condition(got, tokensv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			sec := getSecret(t, ns, secretName(got))
			g.Expect(sec).NotTo(BeNil())
			g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID))
			values[string(sec.Data[tokensv1.SecretKeyToken])] = true
		}
	}
	currentID := func(tok *tokensv1.APIToken) string {
		cur := getToken(t, tok).Status.Current
		if cur == nil {
			return ""
		}
		return cur.TokenID
	}

	// An APIToken whose issuer does not exist yet stalls, and the issuer's creation
	// wakes it.
	issuerName := randName("iss")
	a := newToken(t, ns, issuerName, nil)
	g.Eventually(func() string {
		c := condition(getToken(t, a), tokensv1.ConditionStalled)
		if c == nil {
			return ""
		}
		return c.Reason
	}).Should(Equal(tokensv1.ReasonIssuerNotFound))
	f := newIssuerNamed(t, issuerName, nil)
	g.Eventually(ready(a)).Should(Succeed())

	// Created: Ready.
	b := newToken(t, ns, f.name, func(tok *tokensv1.APIToken) { tok.Spec.Format = tokensv1.FormatOpaque })
	g.Eventually(ready(b)).Should(Succeed())
	first := currentID(b)

	// Secret deleted: repaired.
	g.Expect(k8s.Delete(ctx, getSecret(t, ns, b.Name))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(currentID(b)).NotTo(Equal(first))
		ready(b)(g)
	}).Should(Succeed())
	g.Eventually(func() []string { return eventReasons(t, ns, b.Name) }).Should(ContainElement(tokensv1.ReasonSecretRepaired))

	// Secret edited: repaired.
	second := currentID(b)
	sec := getSecret(t, ns, b.Name)
	sec.Data[tokensv1.SecretKeyToken] = []byte("apt_garbage")
	g.Expect(k8s.Update(ctx, sec)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(currentID(b)).NotTo(Equal(second))
		ready(b)(g)
	}).Should(Succeed())

	// A JWT's Secret with another key edited: rewritten around the same token. The
	// cache keeps the JWT only as its digest; the rewrite reads the Secret past it.
	jwtID := currentID(a)
	sec = getSecret(t, ns, a.Name)
	jwtValue := string(sec.Data[tokensv1.SecretKeyToken])
	sec.Data[tokensv1.SecretKeyTenant] = []byte("someone-else")
	g.Expect(k8s.Update(ctx, sec)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getSecret(t, ns, a.Name)
		g.Expect(string(got.Data[tokensv1.SecretKeyTenant])).NotTo(Equal("someone-else"))
		g.Expect(string(got.Data[tokensv1.SecretKeyToken])).To(Equal(jwtValue))
	}).Should(Succeed())
	g.Expect(currentID(a)).To(Equal(jwtID))

	// A JWT's Secret with the JWT edited (still a JWT, of another digest): re-minted.
	sec = getSecret(t, ns, a.Name)
	sec.Data[tokensv1.SecretKeyToken] = []byte(jwtValue[:len(jwtValue)-2] + "AA")
	g.Expect(k8s.Update(ctx, sec)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(currentID(a)).NotTo(Equal(jwtID))
		ready(a)(g)
	}).Should(Succeed())

	// Rotate now: the annotation alone starts a pass.
	third := currentID(a)
	update(t, a, func(tok *tokensv1.APIToken) { tok.Annotations = map[string]string{tokensv1.RotateAnnotation: "1"} })
	g.Eventually(func(g Gomega) {
		g.Expect(currentID(a)).NotTo(Equal(third))
		ready(a)(g)
	}).Should(Succeed())

	// Issuer keys lost: the issuer's status change re-mints the JWT.
	fourth := currentID(a)
	f.addKey(t, true)
	g.Eventually(func(g Gomega) {
		g.Expect(currentID(a)).NotTo(Equal(fourth))
		ready(a)(g)
	}).Should(Succeed())

	// Revoked: the Secret goes.
	update(t, b, func(tok *tokensv1.APIToken) { tok.Spec.Revoked = true })
	g.Eventually(func(g Gomega) {
		g.Expect(getSecret(t, ns, b.Name)).To(BeNil())
		got := getToken(t, b)
		g.Expect(condition(got, tokensv1.ConditionRevoked).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Status.Current).To(BeNil())
	}).Should(Succeed())

	// Deleted: no finalizer holds it, and its Secret is left to garbage collection
	// (none runs here), owned by the deleted APIToken.
	deleted := getToken(t, a)
	g.Expect(deleted.Finalizers).To(BeEmpty())
	g.Expect(k8s.Delete(ctx, a)).To(Succeed())
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(a), &tokensv1.APIToken{}))).To(BeTrue())
	g.Expect(metav1.GetControllerOf(getSecret(t, ns, a.Name)).UID).To(Equal(deleted.UID))

	assertNoTokenMaterial(t, ns, values, m.logs.String())
}

// TestManagerRevokesRetainedJWT: revoking an APIToken whose Secret is retained takes
// the JWT out of it, though the cache the pass reads through keeps only the JWT's
// digest: the patch that empties the Secret is computed from the Secret as the API
// server holds it.
func TestManagerRevokesRetainedJWT(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	startManager(t, 2, ns)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: tokensv1.DeletionRetain}
	})
	g.Eventually(func() []byte {
		if sec := getSecret(t, ns, tok.Name); sec != nil {
			return sec.Data[tokensv1.SecretKeyToken]
		}
		return nil
	}).ShouldNot(BeEmpty())

	update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Revoked = true })
	g.Eventually(func(g Gomega) {
		sec := getSecret(t, ns, tok.Name)
		g.Expect(sec).NotTo(BeNil(), "retained")
		g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyToken))
		g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyTokenID))
		g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyExpiresAt))
	}).Should(Succeed())
}

// TestRequestsPerToken counts, on the wire, what the controller asks of the API
// server: a new APIToken costs 2 writes (its status, listing the first token with
// Ready, then the Secret's create) and 1 event, and no read past the cache; a
// rotation 2 writes (status, Secret apply) and 1 event. The passes woken by the
// controller's own Secret writes cost nothing.
func TestRequestsPerToken(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	m := startManagerWith(t, managerOptions{workers: 4}, ns)
	const n = 10
	allReady := func(rotations int64) func(Gomega) {
		return func(g Gomega) {
			var list tokensv1.APITokenList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(n))
			for i := range list.Items {
				tok := &list.Items[i]
				g.Expect(condition(tok, tokensv1.ConditionReady)).NotTo(BeNil())
				g.Expect(condition(tok, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
				g.Expect(tok.Status.Rotations).To(Equal(rotations))
			}
		}
	}
	// Each APIToken is served by the pass its change starts and by the pass its Secret
	// write starts, secretEventDelay later; the counts are read once both ran.
	measure := func(change func(i int), rotations int64) (writes, events, reads int64) {
		w0, e0, r0 := m.counter.writes.Load(), m.counter.events.Load(), m.counter.reads.Load()
		passes := reconcileCount()
		for i := range n {
			change(i)
		}
		g.Eventually(allReady(rotations)).Should(Succeed())
		g.Eventually(reconcileCount).Should(BeNumerically(">=", passes+2*n))
		// Events go out asynchronously, through the recorder's broadcaster.
		g.Eventually(func() int64 { return m.counter.events.Load() - e0 }).Should(BeNumerically(">=", n))
		return m.counter.writes.Load() - w0, m.counter.events.Load() - e0, m.counter.reads.Load() - r0
	}

	writes, events, reads := measure(func(i int) {
		g.Expect(k8s.Create(ctx, benchToken(ns, i, f.name))).To(Succeed())
	}, 0)
	g.Expect(writes).To(Equal(int64(2*n)), "writes for %d new APITokens:\n%s", n, strings.Join(m.counter.summary(), "\n"))
	g.Expect(events).To(Equal(int64(n)))
	g.Expect(reads).To(BeZero(), "reads past the cache:\n%s", strings.Join(m.counter.summary(), "\n"))

	writes, events, reads = measure(func(i int) {
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+tokensv1.RotateAnnotation+`":"1"}}}`))
		g.Expect(k8s.Patch(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("tok-%d", i)}}, patch)).To(Succeed())
	}, 1)
	g.Expect(writes).To(Equal(int64(2*n)), "writes for %d rotations:\n%s", n, strings.Join(m.counter.summary(), "\n"))
	g.Expect(events).To(Equal(int64(n)))
	g.Expect(reads).To(BeZero())
}

// assertNoTokenMaterial fails if a log line, an event or a condition of ns holds one
// of values or, for opaque tokens, their secret part.
func assertNoTokenMaterial(t testing.TB, ns string, values map[string]bool, logs string) {
	t.Helper()
	g := NewWithT(t)
	needles := leakNeedles(values)
	g.Expect(needles).NotTo(BeEmpty())
	g.Expect(logs).NotTo(BeEmpty())
	g.Expect(containsAny(logs, needles)).To(BeFalse(), "a log line holds token material")

	evs, err := clientset.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(evs.Items).NotTo(BeEmpty())
	for _, e := range evs.Items {
		g.Expect(containsAny(e.Note+e.Reason+e.Action, needles)).To(BeFalse(), "event %s holds token material", e.Reason)
	}
	var list tokensv1.APITokenList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	for _, tok := range list.Items {
		for _, c := range tok.Status.Conditions {
			g.Expect(containsAny(c.Message, needles)).To(BeFalse(), "condition %s holds token material", c.Type)
		}
	}
}

// leakNeedles are the strings that must appear nowhere: each token, its base64 form
// (as in Secret data), and its secret part (an opaque token's secret, a JWT's
// signature).
func leakNeedles(values map[string]bool) []string {
	var needles []string
	for v := range values {
		if v == "" {
			continue
		}
		needles = append(needles, v, base64.StdEncoding.EncodeToString([]byte(v)))
		if parts := strings.Split(v, "."); len(parts) == 3 {
			needles = append(needles, parts[2])
		} else if s := opaqueSecret(v); s != "" {
			needles = append(needles, s)
		}
	}
	return needles
}
