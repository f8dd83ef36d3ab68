package issuer

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	keysGenerated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_issuer_keys_generated_total",
		Help: "Signing keys made current, by issuer and reason (NoKey, KeyLost, AlgorithmChanged, RotationDue).",
	}, []string{"issuer", "reason"})
	keysLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_issuer_keys_lost_total",
		Help: "Signing keys whose private key was found missing or corrupt, by issuer.",
	}, []string{"issuer"})
	keysPublished = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "apitoken_issuer_published_keys",
		Help: "Public keys in the issuer's JWKS: the current key and the retired ones still needed.",
	}, []string{"issuer"})
)

func init() {
	metrics.Registry.MustRegister(keysGenerated, keysLost, keysPublished)
}
