package apitoken

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// benchWorkers is both the controller's MaxConcurrentReconciles and the number of
// goroutines writing the objects of the write bounds, so that both sides have the
// same parallelism: APITOKEN_BENCH_WORKERS, default 16.
var benchWorkers = envInt("APITOKEN_BENCH_WORKERS", 16)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// benchTokens is N: APITOKEN_BENCH_N, default 1000.
func benchTokens() int { return envInt("APITOKEN_BENCH_N", 1000) }

// inParallel runs fn(0..n-1) on benchWorkers goroutines.
func inParallel(n int, fn func(i int) error) error {
	var eg errgroup.Group
	eg.SetLimit(benchWorkers)
	for i := range n {
		eg.Go(func() error { return fn(i) })
	}
	return eg.Wait()
}

// countReady counts the APITokens of ns that are Ready and have rotated at least
// rotations times.
func countReady(g Gomega, c client.Client, ns string, rotations int64) int {
	var list tokensv1.APITokenList
	g.Expect(c.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	n := 0
	for i := range list.Items {
		t := &list.Items[i]
		if c := condition(t, tokensv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue && t.Status.Rotations >= rotations {
			n++
		}
	}
	return n
}

// BenchmarkMintAll creates N APITokens and times until all are Ready, next to the
// time the same client takes to create 2N ConfigMaps on the same API server (the
// write bound: a Secret and a status per token); then rotates all of them. It
// reports the API writes the controller made per mint and per rotation, counted by
// a RoundTripper around the manager's rest.Config. Run with -benchtime=1x.
func BenchmarkMintAll(b *testing.B) {
	n := benchTokens()
	g := NewWithT(b)
	ctx := context.Background()
	f := newIssuer(b, nil)
	for range b.N {
		ns := newNamespace(b)
		m := startManagerWith(b, managerOptions{workers: benchWorkers}, ns)
		c, err := client.New(m.cfg, client.Options{Scheme: testenv.Scheme})
		g.Expect(err).NotTo(HaveOccurred())

		start := time.Now()
		g.Expect(inParallel(2*n, func(i int) error {
			return c.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bound-%d", i)},
				Data:       map[string]string{"k": "v"},
			})
		})).To(Succeed())
		bound := time.Since(start)

		// The same-kind bound: the two writes a mint cannot do without (a Secret by
		// server-side apply, a status patch of an APIToken), made by the same client
		// in a namespace the manager does not watch.
		other := newNamespace(b)
		g.Expect(inParallel(n, func(i int) error {
			return c.Create(ctx, benchToken(other, i, f.name))
		})).To(Succeed())
		start = time.Now()
		g.Expect(inParallel(2*n, func(j int) error {
			i := j / 2
			if j%2 == 0 {
				ac := corev1ac.Secret(fmt.Sprintf("tok-%d", i), other).
					WithLabels(map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}).
					WithData(map[string][]byte{tokensv1.SecretKeyToken: []byte("x"), tokensv1.SecretKeyTokenID: []byte(strconv.Itoa(i))})
				return c.Apply(ctx, ac, client.FieldOwner("bench"), client.ForceOwnership)
			}
			tok := benchToken(other, i, f.name)
			patch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"secretName":"x","rotations":1}}`))
			return c.Status().Patch(ctx, tok, patch)
		})).To(Succeed())
		sameKind := time.Since(start)

		w0, e0 := m.counter.writes.Load(), m.counter.events.Load()
		start = time.Now()
		g.Expect(inParallel(n, func(i int) error {
			return c.Create(ctx, benchToken(ns, i, f.name))
		})).To(Succeed())
		// Readiness is counted in the manager's cache: polling the API server with
		// lists of N objects would load it more than the controller does.
		cached := m.mgr.GetClient()
		g.Eventually(func(g Gomega) int { return countReady(g, cached, ns, 0) }).
			WithTimeout(10 * time.Minute).WithPolling(50 * time.Millisecond).Should(Equal(n))
		ready := time.Since(start)
		mintWrites, mintEvents := m.counter.writes.Load()-w0, m.counter.events.Load()-e0

		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)

		w1, e1 := m.counter.writes.Load(), m.counter.events.Load()
		start = time.Now()
		g.Expect(inParallel(n, func(i int) error {
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+tokensv1.RotateAnnotation+`":"1"}}}`))
			return c.Patch(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("tok-%d", i)}}, patch)
		})).To(Succeed())
		g.Eventually(func(g Gomega) int { return countReady(g, cached, ns, 1) }).
			WithTimeout(10 * time.Minute).WithPolling(50 * time.Millisecond).Should(Equal(n))
		rotated := time.Since(start)
		rotWrites, rotEvents := m.counter.writes.Load()-w1, m.counter.events.Load()-e1

		for _, l := range m.counter.summary() {
			b.Log(l)
		}
		b.ReportMetric(float64(n), "tokens")
		b.ReportMetric(bound.Seconds(), "s-write-bound-2N")
		b.ReportMetric(ready.Seconds(), "s-all-ready")
		b.ReportMetric(ready.Seconds()/bound.Seconds(), "x-bound")
		b.ReportMetric(sameKind.Seconds(), "s-same-kind-bound-2N")
		b.ReportMetric(ready.Seconds()/sameKind.Seconds(), "x-same-kind-bound")
		b.ReportMetric(float64(benchWorkers), "workers")
		b.ReportMetric(rotated.Seconds(), "s-all-rotated")
		b.ReportMetric(float64(mintWrites)/float64(n), "writes/mint")
		b.ReportMetric(float64(mintEvents)/float64(n), "events/mint")
		b.ReportMetric(float64(rotWrites)/float64(n), "writes/rotation")
		b.ReportMetric(float64(rotEvents)/float64(n), "events/rotation")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB-heap-inuse")
	}
}

// benchToken is the i-th APIToken of a benchmark.
func benchToken(ns string, i int, issuer string) *tokensv1.APIToken {
	return &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("tok-%d", i)},
		Spec: tokensv1.APITokenSpec{
			IssuerRef: tokensv1.IssuerReference{Name: issuer},
			Tenant:    ns,
			Role:      "viewer",
			Lifetime:  metav1.Duration{Duration: 3 * time.Hour},
		},
	}
}

// BenchmarkMemoryUnrelatedSecrets measures how much the heap of a manager serving 100
// APITokens grows, in a namespace without and with APITOKEN_BENCH_SECRETS (default
// 2000) unrelated 10 KiB Secrets, with the label-filtered Secret cache and, to show
// what the filter saves, with a cache of every Secret. The heap is the whole test
// process's after a GC, before the manager started and once all tokens are Ready.
func BenchmarkMemoryUnrelatedSecrets(b *testing.B) {
	const tokens = 100
	unrelated := envInt("APITOKEN_BENCH_SECRETS", 2000)
	g := NewWithT(b)
	ctx := context.Background()
	f := newIssuer(b, nil)
	c, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	for range b.N {
		for _, run := range []struct {
			name     string
			secrets  int
			cacheAll bool
		}{{"filtered-0", 0, false}, {"filtered-" + strconv.Itoa(unrelated), unrelated, false}, {"unfiltered-" + strconv.Itoa(unrelated), unrelated, true}} {
			ns := newNamespace(b)
			g.Expect(createUnrelatedSecrets(ctx, c, ns, run.secrets, 10<<10)).To(Succeed())

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m := startManagerWith(b, managerOptions{workers: benchWorkers, cacheAllSecrets: run.cacheAll}, ns)
			g.Expect(inParallel(tokens, func(i int) error { return c.Create(ctx, benchToken(ns, i, f.name)) })).To(Succeed())
			g.Eventually(func(g Gomega) int { return countReady(g, c, ns, 0) }).
				WithTimeout(5 * time.Minute).WithPolling(50 * time.Millisecond).Should(Equal(tokens))
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), "MiB-heap-growth-"+run.name)
			m.stop()
		}
	}
}

// BenchmarkMemoryAtScale measures the heap a manager keeps while it serves
// APITOKEN_BENCH_MEM_TOKENS (default 10000) Ready APITokens and their Secrets: with the
// label-filtered Secret cache, then with APITOKEN_BENCH_BIG_SECRETS (default 1000)
// unrelated Secrets of 512 KiB beside them, then the same with a cache of every
// Secret. The tokens are minted once, before the measured runs; each run starts a
// fresh manager, waits until it has reconciled every APIToken, and reports how much
// the process's heap in use (after a GC) grew from before the manager started.
func BenchmarkMemoryAtScale(b *testing.B) {
	n := envInt("APITOKEN_BENCH_MEM_TOKENS", 10000)
	big := envInt("APITOKEN_BENCH_BIG_SECRETS", 1000)
	g := NewWithT(b)
	ctx := context.Background()
	f := newIssuer(b, nil)
	c, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	for range b.N {
		ns := newNamespace(b)
		start := time.Now()
		minter := startManagerWith(b, managerOptions{workers: benchWorkers}, ns)
		g.Expect(inParallel(n, func(i int) error { return c.Create(ctx, benchToken(ns, i, f.name)) })).To(Succeed())
		g.Eventually(func(g Gomega) int { return countReady(g, minter.mgr.GetClient(), ns, 0) }).
			WithTimeout(30 * time.Minute).WithPolling(time.Second).Should(Equal(n))
		minter.stop()
		b.Logf("%d APITokens Ready in %s", n, time.Since(start).Round(time.Second))

		measure := func(name string, cacheAll bool) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			reconciled := reconcileCount()
			m := startManagerWith(b, managerOptions{workers: benchWorkers, cacheAllSecrets: cacheAll}, ns)
			g.Eventually(reconcileCount).WithTimeout(10*time.Minute).WithPolling(100*time.Millisecond).
				Should(BeNumerically(">=", reconciled+float64(n)), "the manager reconciles every APIToken once at start")
			runtime.GC()
			runtime.ReadMemStats(&after)
			growth := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / (1 << 20)
			b.ReportMetric(growth, "MiB-heap-"+name)
			b.Logf("%s: heap in use grew %.1f MiB (process total %.1f MiB)", name, growth, float64(after.HeapInuse)/(1<<20))
			m.stop()
		}
		measure("filtered", false)

		g.Expect(createUnrelatedSecrets(ctx, c, ns, big, 512<<10)).To(Succeed())
		measure("filtered+"+strconv.Itoa(big)+"x512KiB", false)
		measure("unfiltered+"+strconv.Itoa(big)+"x512KiB", true)
		b.ReportMetric(float64(n), "tokens")
	}
}

// createUnrelatedSecrets creates n Secrets of size bytes in ns that the operator has
// no business with: no managed-by label.
func createUnrelatedSecrets(ctx context.Context, c client.Client, ns string, n, size int) error {
	payload := make([]byte, size)
	return inParallel(n, func(i int) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("unrelated-%d", i)}, Data: map[string][]byte{"blob": payload}})
	})
}

// reconcileCount is how many reconciles the APIToken controllers of this process
// have finished, from controller-runtime's metrics.
func reconcileCount() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "apitoken" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
