package exchange

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	exchangesIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_exchange_issued_total",
		Help: "Tokens issued by token exchange, by issuer.",
	}, []string{"issuer"})

	exchangesRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_exchange_refused_total",
		Help: "Token exchanges refused, by reason: the validator's refusal reasons for the presented token, the policy rule for a request above a bound, or InvalidParameter, RateLimited, Unavailable.",
	}, []string{"reason"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "apitoken_exchange_request_duration_seconds",
		Help: "Time the token exchange took to answer, by endpoint.",
		// From 25µs to about 0.8s: a signature check and a signature.
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
	}, []string{"endpoint"})
)

func init() {
	metrics.Registry.MustRegister(exchangesIssued, exchangesRefused, requestDuration)
}
