package apitoken

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

var (
	labels = []string{"namespace", "name"}

	expirationTimestamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_expiration_timestamp_seconds",
		Help: "When the current token of an APIToken expires, in Unix seconds.",
	}, labels)
	renewalTimestamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_renewal_timestamp_seconds",
		Help: "When the current token of an APIToken will be rotated, in Unix seconds.",
	}, labels)
	readyStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_ready_status",
		Help: "1 when the Secret of an APIToken holds a valid token, else 0.",
	}, labels)
	rotationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_rotations_total",
		Help: "Tokens minted to replace an earlier token of an APIToken, by this process.",
	}, labels)
)

func init() {
	metrics.Registry.MustRegister(expirationTimestamp, renewalTimestamp, readyStatus, rotationsTotal)
}

// recordMetrics publishes the state of tok as its status says.
func recordMetrics(tok *tokensv1.APIToken) {
	ns, name := tok.Namespace, tok.Name
	st := &tok.Status
	ready := 0.0
	if meta.IsStatusConditionTrue(st.Conditions, tokensv1.ConditionReady) {
		ready = 1
	}
	readyStatus.WithLabelValues(ns, name).Set(ready)
	if st.Current != nil {
		expirationTimestamp.WithLabelValues(ns, name).Set(float64(st.Current.ExpiresAt.Unix()))
	} else {
		expirationTimestamp.DeleteLabelValues(ns, name)
	}
	if st.RenewalTime != nil {
		renewalTimestamp.WithLabelValues(ns, name).Set(float64(st.RenewalTime.Unix()))
	} else {
		renewalTimestamp.DeleteLabelValues(ns, name)
	}
}

// forgetMetrics deletes the series of an APIToken that is gone. It reports whether
// this process had served the APIToken (its Ready series existed).
func forgetMetrics(namespace, name string) bool {
	served := readyStatus.DeleteLabelValues(namespace, name)
	for _, v := range []*prometheus.MetricVec{expirationTimestamp.MetricVec, renewalTimestamp.MetricVec, rotationsTotal.MetricVec} {
		v.DeleteLabelValues(namespace, name)
	}
	return served
}
