package apitoken

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// syncBuffer is a bytes.Buffer safe for the manager's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bufferLogger logs everything, debug levels included, as JSON into a buffer.
func bufferLogger() (logr.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return zap.New(zap.WriteTo(buf), zap.Level(zapcore.Level(-10))), buf
}

// writeCounter counts the requests that change something on the API server.
type writeCounter struct {
	writes atomic.Int64 // everything but events
	events atomic.Int64
}

// countingTransport counts the requests of one client into a shared writeCounter;
// they still go to the API server.
type countingTransport struct {
	next http.RoundTripper
	c    *writeCounter
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if strings.Contains(req.URL.Path, "/events") {
			t.c.events.Add(1)
		} else {
			t.c.writes.Add(1)
		}
	}
	return t.next.RoundTrip(req)
}

// testManager runs the controller in a manager, watching only namespaces (and the
// operator's), as main does apart from that.
type testManager struct {
	mgr     ctrl.Manager
	counter *writeCounter
	logs    *syncBuffer
}

func startManager(t testing.TB, maxConcurrent int, namespaces ...string) *testManager {
	t.Helper()
	g := NewWithT(t)
	counter := &writeCounter{}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return &countingTransport{next: rt, c: counter}
	}
	logger, logs := bufferLogger()
	cacheOpts := controller.CacheOptions()
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
	r := &Reconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Namespace:               operatorNS,
		Clock:                   clock.RealClock{},
		Recorder:                mgr.GetEventRecorder("apitoken-controller"),
		MaxConcurrentReconciles: maxConcurrent,
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
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testManager{mgr: mgr, counter: counter, logs: logs}
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

	// Deleted: the finalizer is released and the Secret goes.
	g.Expect(k8s.Delete(ctx, a)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(a), &tokensv1.APIToken{}))
	}).Should(BeTrue())
	g.Expect(getSecret(t, ns, a.Name)).To(BeNil())

	t.Log(m.logs.String())
	assertNoTokenMaterial(t, ns, values, m.logs.String())
}

// assertNoTokenMaterial fails if a log line, an event or a condition of ns holds one
// of values or, for opaque tokens, their secret part.
func assertNoTokenMaterial(t testing.TB, ns string, values map[string]bool, logs string) {
	t.Helper()
	g := NewWithT(t)
	var needles []string
	for v := range values {
		g.Expect(v).NotTo(BeEmpty())
		needles = append(needles, v)
		if s := opaqueSecret(v); s != "" && !strings.Contains(v, ".") {
			needles = append(needles, s)
		} else if parts := strings.Split(v, "."); len(parts) == 3 {
			needles = append(needles, parts[2]) // the signature
		}
	}
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
