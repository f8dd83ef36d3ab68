package validator

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

var (
	decisionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_validator_decisions_total",
		Help: "Decisions of the token validator, by result (allowed, unauthenticated, forbidden, not_found, rate_limited, bad_request) and reason.",
	}, []string{"result", "reason"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "apitoken_validator_request_duration_seconds",
		Help: "Time the token validator took to answer, by endpoint.",
		// From 25µs (a cached decision) to about 0.8s.
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
	}, []string{"endpoint"})
)

var (
	auditDroppedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apitoken_validator_audit_dropped_total",
		Help: "Audit lines lost: the audit buffer was full (the sink is slower than the decisions) or the sink failed.",
	})
	auditSuppressedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apitoken_validator_audit_suppressed_total",
		Help: "Refusals not written to the audit stream one by one, past their client's share of a window, but counted in a summary line.",
	})
)

// allowedTotal is the allowed decisions' child of decisionsTotal.
var allowedTotal = decisionsTotal.WithLabelValues(ResultAllowed, validatorapi.ReasonAllowed)

func init() {
	metrics.Registry.MustRegister(decisionsTotal, requestDuration, auditDroppedTotal, auditSuppressedTotal)
}
