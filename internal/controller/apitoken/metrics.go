package apitoken

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// The per-APIToken series. They are kept as a few numbers per APIToken and turned
// into metrics when scraped (tokenMetrics.Collect): a prometheus vector keeps the
// label pairs and a metric struct for every series, over a kilobyte per APIToken,
// which at 100k APITokens is more memory than the rest of what the manager keeps of
// them.
var (
	labels = []string{"namespace", "name"}

	expirationDesc = prometheus.NewDesc("apitoken_expiration_timestamp_seconds",
		"When the current token of an APIToken expires, in Unix seconds.", labels, nil)
	renewalDesc = prometheus.NewDesc("apitoken_renewal_timestamp_seconds",
		"When the current token of an APIToken will be rotated, in Unix seconds.", labels, nil)
	readyDesc = prometheus.NewDesc("apitoken_ready_status",
		"1 when the Secret of an APIToken holds a valid token, else 0.", labels, nil)
	rotationsDesc = prometheus.NewDesc("apitoken_rotations_total",
		"Tokens minted to replace an earlier token of an APIToken, by this process.", labels, nil)

	tokens = &tokenMetrics{series: map[types.NamespacedName]*tokenSeries{}}
)

func init() {
	metrics.Registry.MustRegister(tokens)
}

// tokenSeries is what the metrics of one APIToken say. Zero times have no series.
type tokenSeries struct {
	ready              bool
	expires, renews    int64
	rotations          uint64
	hasExpiry, hasNext bool
}

// tokenMetrics holds the series of every APIToken this process serves.
type tokenMetrics struct {
	mu     sync.Mutex
	series map[types.NamespacedName]*tokenSeries
}

func (m *tokenMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expirationDesc, renewalDesc, readyDesc, rotationsDesc} {
		ch <- d
	}
}

func (m *tokenMetrics) Collect(ch chan<- prometheus.Metric) {
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

// get returns the series of key, made if missing; m.mu is held.
func (m *tokenMetrics) get(key types.NamespacedName) *tokenSeries {
	s := m.series[key]
	if s == nil {
		s = &tokenSeries{}
		m.series[key] = s
	}
	return s
}

// recordMetrics publishes the state of tok as its status says.
func recordMetrics(tok *tokensv1.APIToken) {
	st := &tok.Status
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	s := tokens.get(types.NamespacedName{Namespace: tok.Namespace, Name: tok.Name})
	s.ready = meta.IsStatusConditionTrue(st.Conditions, tokensv1.ConditionReady)
	s.hasExpiry = st.Current != nil
	if s.hasExpiry {
		s.expires = st.Current.ExpiresAt.Unix()
	}
	s.hasNext = st.RenewalTime != nil
	if s.hasNext {
		s.renews = st.RenewalTime.Unix()
	}
}

// countRotation counts a rotation of tok by this process.
func countRotation(tok *tokensv1.APIToken) {
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	tokens.get(types.NamespacedName{Namespace: tok.Namespace, Name: tok.Name}).rotations++
}

// forgetMetrics deletes the series of an APIToken that is gone. It reports whether
// this process had served the APIToken.
func forgetMetrics(namespace, name string) bool {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	_, served := tokens.series[key]
	delete(tokens.series, key)
	return served
}
