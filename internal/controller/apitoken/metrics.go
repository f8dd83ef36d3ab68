package apitoken

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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

// Collect sends the series of every APIToken. A scrape holds all it gathers until
// the response is written, so each series is made as small as it can be: the
// APIToken's label pairs are made once per scrape and shared by its series (a
// prometheus const metric makes and validates its own, about 860 bytes a series),
// and a series is its value and a pointer to them (BenchmarkScrapeTokenMetrics).
// The label values are an APIToken's namespace and name, which the API server has
// validated already.
func (m *tokenMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.series {
		l := newSeriesLabels(k)
		ready := 0.0
		if s.ready {
			ready = 1
		}
		ch <- &seriesMetric{desc: readyDesc, labels: l, value: ready}
		if s.hasExpiry {
			ch <- &seriesMetric{desc: expirationDesc, labels: l, value: float64(s.expires)}
		}
		if s.hasNext {
			ch <- &seriesMetric{desc: renewalDesc, labels: l, value: float64(s.renews)}
		}
		if s.rotations > 0 {
			ch <- &seriesMetric{desc: rotationsDesc, labels: l, value: float64(s.rotations), counter: true}
		}
	}
}

// The label names of every per-APIToken series, shared by all of them.
var (
	nameLabel      = "name"
	namespaceLabel = "namespace"
)

// seriesLabels are the label pairs of one APIToken's series in one allocation,
// sorted by name as the registry expects ("name" before "namespace").
type seriesLabels struct {
	pairs           [2]dto.LabelPair
	sorted          [2]*dto.LabelPair
	name, namespace string
}

func newSeriesLabels(k types.NamespacedName) []*dto.LabelPair {
	l := &seriesLabels{name: k.Name, namespace: k.Namespace}
	l.pairs[0].Name, l.pairs[0].Value = &nameLabel, &l.name
	l.pairs[1].Name, l.pairs[1].Value = &namespaceLabel, &l.namespace
	l.sorted = [2]*dto.LabelPair{&l.pairs[0], &l.pairs[1]}
	return l.sorted[:]
}

// seriesMetric is one series of one APIToken at a scrape.
type seriesMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	value   float64
	counter bool
}

func (m *seriesMetric) Desc() *prometheus.Desc { return m.desc }

// Write fills out for the registry; the label pairs are shared with the APIToken's
// other series, which the registry allows: it never changes what Write hands it.
func (m *seriesMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	if m.counter {
		out.Counter = &dto.Counter{Value: &m.value}
	} else {
		out.Gauge = &dto.Gauge{Value: &m.value}
	}
	return nil
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
