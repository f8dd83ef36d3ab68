package issuer

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/apitoken"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// writes counts a manager's requests that change something, by "METHOD resource".
type writes struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *writes) RoundTrip(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		kind := parts[len(parts)-1]
		for i, p := range parts {
			// .../namespaces/NS/RESOURCE/NAME[/SUBRESOURCE] or, cluster-scoped, .../RESOURCE/NAME[/SUBRESOURCE]
			if p == "namespaces" && i+2 < len(parts) {
				kind = parts[i+2]
				if i+4 < len(parts) {
					kind += "/" + parts[i+4]
				}
			}
			if p == "clustertokenissuers" {
				kind = p
				if i+2 < len(parts) {
					kind += "/" + parts[i+2]
				}
			}
		}
		w.mu.Lock()
		w.n[req.Method+" "+kind]++
		w.mu.Unlock()
	}
	return next.RoundTrip(req)
}

// snapshot returns the counts so far and their total.
func (w *writes) snapshot() (map[string]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out, total := map[string]int{}, 0
	for k, v := range w.n {
		out[k] = v
		total += v
	}
	return out, total
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func benchEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkCompromisedRotation measures what a compromised-key rotation costs:
// APITOKEN_BENCH_N (default 1000) JWT APITokens of one issuer are minted by a manager
// running both controllers as cmd/manager does (APITOKEN_BENCH_WORKERS APITokens in
// parallel, default 4 like --max-concurrent-reconciles; no client-side rate limit,
// controller-runtime's default), then the issuer is asked for a compromised-key
// rotation. It reports the time until every APIToken holds a token of the new key in
// its Secret and the issuer says all were re-minted, the API writes the manager made
// meanwhile, and, from the same run, the time and writes of the first mint of the
// same tokens. Run with -benchtime=1x.
func BenchmarkCompromisedRotation(b *testing.B) {
	n := benchEnvInt("APITOKEN_BENCH_N", 1000)
	workers := benchEnvInt("APITOKEN_BENCH_WORKERS", 4)
	g := NewWithT(b)
	ctx := context.Background()
	for range b.N {
		ns := "bench-" + rand.String(6)
		g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
		w := &writes{n: map[string]int{}}
		cfg := rest.CopyConfig(env.Config)
		cfg.QPS = -1
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(r *http.Request) (*http.Response, error) { return w.RoundTrip(rt, r) })
		}
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme: testenv.Scheme, Cache: controller.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0", Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect((&Reconciler{Client: mgr.GetClient(), Namespace: keyNamespace, Clock: clock.RealClock{},
			Recorder: mgr.GetEventRecorder("apitoken-issuer")}).SetupWithManager(mgr)).To(Succeed())
		g.Expect((&apitoken.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: keyNamespace, Clock: clock.RealClock{},
			Recorder: mgr.GetEventRecorder("apitoken-controller"), MaxConcurrentReconciles: workers}).SetupWithManager(mgr)).To(Succeed())
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = mgr.Start(mctx) }()

		name := "bench-" + rand.String(4)
		create(b, prePublished(name))
		g.Eventually(func(g Gomega) {
			g.Expect(meta.IsStatusConditionTrue(getIssuer(g, name).Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
		}).WithTimeout(time.Minute).Should(Succeed())

		cached := mgr.GetClient()
		// signedBy counts the Ready APITokens of ns whose current JWT kid signed.
		signedBy := func(g Gomega, kid string) int {
			var list tokensv1.APITokenList
			g.Expect(cached.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			c := 0
			for _, t := range list.Items {
				if cur := t.Status.Current; cur != nil && cur.SigningKeyID == kid && meta.IsStatusConditionTrue(t.Status.Conditions, tokensv1.ConditionReady) {
					c++
				}
			}
			return c
		}

		_, w0 := w.snapshot()
		start := time.Now()
		var eg errgroup.Group
		eg.SetLimit(16)
		for i := range n {
			eg.Go(func() error {
				return env.Client.Create(ctx, &tokensv1.APIToken{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("tok-%d", i)},
					Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: name}, Tenant: ns, Role: "viewer", Lifetime: metav1.Duration{Duration: 3 * time.Hour}},
				})
			})
		}
		g.Expect(eg.Wait()).To(Succeed())
		k1 := getIssuer(g, name).Status.CurrentKeyID
		g.Eventually(func(g Gomega) int { return signedBy(g, k1) }).WithTimeout(30 * time.Minute).WithPolling(200 * time.Millisecond).Should(Equal(n))
		minted := time.Since(start)
		mintKinds, w1 := w.snapshot()

		start = time.Now()
		compromise(g, name, "bench")
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(iss.Status.LastWithdrawal).NotTo(BeNil())
			g.Expect(iss.Status.LastWithdrawal.Remaining).To(BeZero())
			g.Expect(signedBy(g, iss.Status.CurrentKeyID)).To(Equal(n))
		}).WithTimeout(30 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		reminted := time.Since(start)
		rotKinds, w2 := w.snapshot()
		g.Expect(getIssuer(g, name).Status.LastWithdrawal.Tokens).To(Equal(int32(n)))

		var kinds []string
		for k, v := range rotKinds {
			if d := v - mintKinds[k]; d > 0 {
				kinds = append(kinds, fmt.Sprintf("%s: %d", k, d))
			}
		}
		sort.Strings(kinds)
		b.Logf("writes of the compromised rotation by kind: %s", strings.Join(kinds, "; "))
		b.ReportMetric(float64(n), "tokens")
		b.ReportMetric(float64(workers), "workers")
		b.ReportMetric(minted.Seconds(), "s-first-mint")
		b.ReportMetric(float64(w1-w0)/float64(n), "writes/token-first-mint")
		b.ReportMetric(reminted.Seconds(), "s-compromised-rotation")
		b.ReportMetric(float64(w2-w1), "writes-compromised-rotation")
		b.ReportMetric(float64(w2-w1)/float64(n), "writes/token-compromised-rotation")

		// The finalizers need the manager.
		deleteTokens(b, ns)
		cancel()
		<-done
	}
}
