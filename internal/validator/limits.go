package validator

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// RateLimits configures the validator's two rate limits. A zero rate disables a limit.
type RateLimits struct {
	// TokenRate and TokenBurst limit the requests of each accepted token, so that one
	// leaked or runaway client cannot monopolise the upstream.
	TokenRate  float64
	TokenBurst int
	// FailureRate and FailureBurst limit the failed attempts of each client address:
	// once a client spent its budget on refused tokens, each further refused token is
	// answered 429 until the budget refills, which makes guessing slow. A token that
	// authenticates is never refused by it: clients behind one address (a proxy, a
	// NAT, kube-apiserver) do not pay for each other's failures.
	FailureRate  float64
	FailureBurst int
	// FailureExempt are client addresses the failed-attempt limit never applies to,
	// such as kube-apiserver, whose TokenReviews carry every user's bearer token from
	// one address and whose clients the validator cannot tell apart.
	FailureExempt []netip.Prefix
	// Entries bounds how many tokens and clients are tracked, each (least recently
	// seen first out). Default 100000.
	Entries int
}

// limiter holds per-token and per-client rate limiters in bounded LRU caches.
type limiter struct {
	cfg     RateLimits
	mu      sync.Mutex // serialises get-or-create, so a key never gets two limiters
	tokens  *lru.Cache
	clients *lru.Cache
}

func newLimiter(cfg RateLimits) *limiter {
	if cfg.Entries <= 0 {
		cfg.Entries = 100000
	}
	if cfg.TokenBurst < 1 {
		cfg.TokenBurst = 1
	}
	if cfg.FailureBurst < 1 {
		cfg.FailureBurst = 1
	}
	l := &limiter{cfg: cfg}
	if cfg.TokenRate > 0 {
		l.tokens = lru.New(cfg.Entries)
	}
	if cfg.FailureRate > 0 {
		l.clients = lru.New(cfg.Entries)
	}
	return l
}

func (l *limiter) get(c *lru.Cache, key string, r float64, burst int) *rate.Limiter {
	if v, ok := c.Get(key); ok {
		return v.(*rate.Limiter)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := c.Get(key); ok {
		return v.(*rate.Limiter)
	}
	lim := rate.NewLimiter(rate.Limit(r), burst)
	c.Add(key, lim)
	return lim
}

// token takes one request from the budget of tokenID and returns 0, or how long to
// wait when the budget is spent (the request is then not counted).
func (l *limiter) token(tokenID string, now time.Time) time.Duration {
	if l.tokens == nil {
		return 0
	}
	lim := l.get(l.tokens, tokenID, l.cfg.TokenRate, l.cfg.TokenBurst)
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// failed takes one attempt from client's failure budget and returns 0, or, when the
// budget is spent, how long until it holds one attempt again. It is asked only about
// requests whose token was refused, so that nobody's failures can refuse a token that
// authenticates.
func (l *limiter) failed(client string, now time.Time) time.Duration {
	if l.clients == nil || l.exempt(client) {
		return 0
	}
	lim := l.get(l.clients, client, l.cfg.FailureRate, l.cfg.FailureBurst)
	if lim.AllowN(now, 1) {
		return 0
	}
	return time.Duration((1 - lim.TokensAt(now)) / l.cfg.FailureRate * float64(time.Second))
}

// exempt reports whether client is in cfg.FailureExempt.
func (l *limiter) exempt(client string) bool {
	if len(l.cfg.FailureExempt) == 0 {
		return false
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range l.cfg.FailureExempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
