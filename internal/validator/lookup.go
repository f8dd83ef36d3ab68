package validator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// LiveLookup reads an APIToken from the API server when a JWT arrives that its
// issuer's key signed but whose ID the index does not know yet.
//
// The index learns of a new token through an informer, a few milliseconds after the
// controller lists it, but much later when the watch broke: after the API server
// restarts, client-go retries with a backoff that reaches 30 s, and a token minted in
// that time would be refused to every client that read its Secret at once. A signed
// JWT names its APIToken in sub, so one GET settles whether the status lists it.
//
// Only a signature made by a published key of a known issuer leads here, so nobody
// can make the validator read the API server without holding a token it minted; the
// reads are limited all the same (a rate for all of them, one at a time per
// APIToken, and each answer, found or not, reused for a second).
type LiveLookup struct {
	reader  client.Reader
	clock   clock.PassiveClock
	limit   *rate.Limiter
	group   singleflight.Group
	timeout time.Duration

	recent *lru.Cache // namespace/name -> *liveAnswer; safe for concurrent use
}

// liveAnswer is what a read found: ts is nil when the APIToken does not exist or
// could not be read, and miss then says which (liveNotFound, liveError).
type liveAnswer struct {
	ts   *index.TokenSet
	miss string
	at   time.Time
}

// liveReuse is how long an answer is reused for the same APIToken.
const liveReuse = time.Second

// NewLiveLookup reads through reader, at most perSecond times a second (bursts of
// twice that), each read given timeout.
func NewLiveLookup(reader client.Reader, clk clock.PassiveClock, perSecond float64, timeout time.Duration) *LiveLookup {
	return &LiveLookup{
		reader: reader, clock: clk, timeout: timeout,
		limit:  rate.NewLimiter(rate.Limit(perSecond), max(1, int(2*perSecond))),
		recent: lru.New(1024),
	}
}

// Results of live lookups, for the metric.
const (
	liveFound     = "found"
	liveNotListed = "not_listed"
	liveNotFound  = "not_found"
	liveError     = "error"
	liveThrottled = "throttled"
)

var liveLookupsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apitoken_validator_live_lookups_total",
	Help: "Signed JWTs the index did not know, by what the APIToken read past the informer (or reused from a read under a second old) said: found, not_listed, not_found, error; or throttled, when no read was allowed.",
}, []string{"result"})

func init() { metrics.Registry.MustRegister(liveLookupsTotal) }

// Find returns the record of token id as the APIToken namespace/name lists it now on
// the API server, or nil. The record is checked like any other by the caller.
func (l *LiveLookup) Find(namespace, name, id string) *index.Record {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	a, ok := l.reused(key.String())
	if !ok {
		if !l.limit.Allow() {
			liveLookupsTotal.WithLabelValues(liveThrottled).Inc()
			return nil
		}
		v, _, _ := l.group.Do(key.String(), func() (any, error) { return l.read(key), nil })
		a = v.(*liveAnswer)
	}
	ts := a.ts
	if ts == nil {
		liveLookupsTotal.WithLabelValues(a.miss).Inc()
		return nil
	}
	for i := range ts.Tokens {
		if ts.Tokens[i].TokenID == id {
			liveLookupsTotal.WithLabelValues(liveFound).Inc()
			return &ts.Tokens[i]
		}
	}
	liveLookupsTotal.WithLabelValues(liveNotListed).Inc()
	return nil
}

// reused returns the answer of a read less than liveReuse ago.
func (l *LiveLookup) reused(key string) (*liveAnswer, bool) {
	v, ok := l.recent.Get(key)
	if !ok {
		return nil, false
	}
	a := v.(*liveAnswer)
	if l.clock.Since(a.at) >= liveReuse {
		return nil, false
	}
	return a, true
}

// read GETs the APIToken and remembers the answer.
func (l *LiveLookup) read(key types.NamespacedName) *liveAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	a := &liveAnswer{}
	tok := &tokensv1.APIToken{}
	switch err := l.reader.Get(ctx, key, tok); {
	case err == nil:
		a.ts = index.NewTokenSet(tok)
	case apierrors.IsNotFound(err):
		a.miss = liveNotFound
	default:
		a.miss = liveError
	}
	a.at = l.clock.Now()
	l.recent.Add(key.String(), a)
	return a
}
