package apitoken

import (
	"bytes"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"k8s.io/apimachinery/pkg/types"
)

// constTokenMetrics publishes the same series as tokenMetrics the way prometheus's
// const metrics would (and tokenMetrics did before): the reference the tests and the
// benchmark compare with.
type constTokenMetrics struct{ *tokenMetrics }

func (m constTokenMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.series {
		ready := 0.0
		if s.ready {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready, k.Namespace, k.Name)
		if s.hasExpiry {
			ch <- prometheus.MustNewConstMetric(expirationDesc, prometheus.GaugeValue, float64(s.expires), k.Namespace, k.Name)
		}
		if s.hasNext {
			ch <- prometheus.MustNewConstMetric(renewalDesc, prometheus.GaugeValue, float64(s.renews), k.Namespace, k.Name)
		}
		if s.rotations > 0 {
			ch <- prometheus.MustNewConstMetric(rotationsDesc, prometheus.CounterValue, float64(s.rotations), k.Namespace, k.Name)
		}
	}
}

// seriesOf makes the series of n APITokens, every kind of series present.
func seriesOf(n int) *tokenMetrics {
	m := &tokenMetrics{series: map[types.NamespacedName]*tokenSeries{}}
	for i := range n {
		s := m.get(types.NamespacedName{Namespace: fmt.Sprintf("tenant-%04d", i%500), Name: fmt.Sprintf("token-%06d", i)})
		s.ready, s.hasExpiry, s.hasNext, s.expires, s.renews = i%7 != 0, i%5 != 0, i%3 != 0, 1900000000+int64(i), 1890000000+int64(i)
		s.rotations = uint64(i % 4)
	}
	return m
}

// exposition is what a scrape of c alone answers, in the text format.
func exposition(t testing.TB, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// TestTokenMetricsExposition: a scrape answers, series for series, what prometheus's
// const metrics would, through the pedantic registry's checks.
func TestTokenMetricsExposition(t *testing.T) {
	g := NewWithT(t)
	m := seriesOf(40)
	got := exposition(t, m)
	g.Expect(got).To(Equal(exposition(t, constTokenMetrics{m})))
	g.Expect(got).To(ContainSubstring(`apitoken_ready_status{name="token-000001",namespace="tenant-0001"} 1`))
	g.Expect(got).To(ContainSubstring(`apitoken_rotations_total{name="token-000003",namespace="tenant-0003"} 3`))
}

// BenchmarkScrapeTokenMetrics gathers the per-APIToken series of 10k APITokens, as
// every scrape of the manager's /metrics does, through the registry controller-runtime
// serves: what one scrape allocates (B/op) is held until the response is written, on
// top of everything the manager keeps. const-metrics is the same series made as
// prometheus's const metrics.
func BenchmarkScrapeTokenMetrics(b *testing.B) {
	const n = 10000
	m := seriesOf(n)
	for _, c := range []struct {
		name string
		c    prometheus.Collector
	}{{"series", m}, {"const-metrics", constTokenMetrics{m}}} {
		b.Run(c.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(c.c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
