package validator

import (
	"context"
	"sync"
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
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
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
// can make the validator read the API server without holding a token it minted. Even
// so, a token's holder must not be able to spend the reads that genuinely new tokens
// need, by replaying its own old (retired, still unexpired) JWTs:
//   - a token the index can already answer for is never read: its APIToken is
//     revoked, or lists a current token issued after it (the controller never lists
//     a token older than the current one, so an unlisted older one was retired);
//   - the reads are budgeted per APIToken and per tenant (the claims' tenant, which
//     the signature vouches for), each a share of the global rate;
//   - one read at a time per APIToken, each answer, found or not, reused for a second.
type LiveLookup struct {
	reader  client.Reader
	clock   clock.PassiveClock
	limit   *rate.Limiter
	group   singleflight.Group
	timeout time.Duration

	recent *lru.Cache // namespace/name -> *liveAnswer; safe for concurrent use

	// budgets are the per-APIToken and per-tenant limiters; mu makes get-or-create
	// atomic, so a key never gets two.
	mu                  sync.Mutex
	perToken, perTenant *lru.Cache
	tenantRate          rate.Limit
	tenantBurst         int
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

// The per-APIToken budget: a read every two seconds, two at once. A token minted
// while the informer lags needs one read, or two when the first came before the
// status write.
const (
	liveTokenRate  = 0.5
	liveTokenBurst = 2
)

// NewLiveLookup reads through reader, at most perSecond times a second (bursts of
// twice that), each read given timeout. One tenant may use a quarter of that.
func NewLiveLookup(reader client.Reader, clk clock.PassiveClock, perSecond float64, timeout time.Duration) *LiveLookup {
	return &LiveLookup{
		reader: reader, clock: clk, timeout: timeout,
		limit:       rate.NewLimiter(rate.Limit(perSecond), max(1, int(2*perSecond))),
		recent:      lru.New(1024),
		perToken:    lru.New(4096),
		perTenant:   lru.New(1024),
		tenantRate:  rate.Limit(max(perSecond/4, 0.01)),
		tenantBurst: max(1, int(perSecond/2)),
	}
}

// Results of live lookups, for the metric.
const (
	liveFound     = "found"
	liveNotListed = "not_listed"
	liveNotFound  = "not_found"
	liveError     = "error"
	liveThrottled = "throttled"
	liveRetired   = "retired"
	liveRevoked   = "revoked"
)

var liveLookupsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apitoken_validator_live_lookups_total",
	Help: "Signed JWTs the index did not know, by what the APIToken read past the informer (or reused from a read under a second old) said: found, not_listed, not_found, error; throttled, when no read was allowed; or retired, revoked, when the index answered without a read.",
}, []string{"result"})

func init() { metrics.Registry.MustRegister(liveLookupsTotal) }

// Find returns the record of token id (claims' own ID, or their listed parent's) as
// the APIToken the claims' subject names lists it now on the API server; or nil and
// the reason to refuse the token. The record is checked like any other by the caller.
func (l *LiveLookup) Find(idx *index.Index, id string, claims *token.Claims) (*index.Record, string) {
	ns, name, ok := token.ParseSubject(claims.Subject)
	if !ok {
		return nil, string(token.ReasonUnknownToken)
	}
	key := types.NamespacedName{Namespace: ns, Name: name}
	if ts := idx.TokenSet(key); ts != nil {
		switch {
		case ts.Revoked():
			liveLookupsTotal.WithLabelValues(liveRevoked).Inc()
			return nil, validatorapi.ReasonRevoked
		case !claims.IssuedAt.IsZero() && claims.IssuedAt.Before(ts.CurrentIssuedAt()):
			liveLookupsTotal.WithLabelValues(liveRetired).Inc()
			return nil, validatorapi.ReasonRetired
		}
	}
	a, ok := l.reused(key.String())
	if !ok {
		if !l.allow(key.String(), claims.Tenant) {
			liveLookupsTotal.WithLabelValues(liveThrottled).Inc()
			return nil, string(token.ReasonUnknownToken)
		}
		v, _, _ := l.group.Do(key.String(), func() (any, error) { return l.read(key), nil })
		a = v.(*liveAnswer)
	}
	ts := a.ts
	if ts == nil {
		liveLookupsTotal.WithLabelValues(a.miss).Inc()
		return nil, string(token.ReasonUnknownToken)
	}
	for i := range ts.Tokens {
		if ts.Tokens[i].TokenID == id {
			liveLookupsTotal.WithLabelValues(liveFound).Inc()
			return &ts.Tokens[i], ""
		}
	}
	liveLookupsTotal.WithLabelValues(liveNotListed).Inc()
	return nil, string(token.ReasonUnknownToken)
}

// allow takes a read from the budgets of the APIToken, of the tenant and of all, in
// that order, so that a token whose own budget is spent takes nothing from the
// others'.
func (l *LiveLookup) allow(apiToken, tenant string) bool {
	now := l.clock.Now()
	return l.budget(l.perToken, apiToken, liveTokenRate, liveTokenBurst).AllowN(now, 1) &&
		l.budget(l.perTenant, tenant, l.tenantRate, l.tenantBurst).AllowN(now, 1) &&
		l.limit.AllowN(now, 1)
}

func (l *LiveLookup) budget(c *lru.Cache, key string, r rate.Limit, burst int) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := c.Get(key); ok {
		return v.(*rate.Limiter)
	}
	lim := rate.NewLimiter(r, burst)
	c.Add(key, lim)
	return lim
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
