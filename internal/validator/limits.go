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
	// once a client spent its budget on refused tokens, every request it makes is
	// refused with 429 until the budget refills, which makes guessing slow.
	FailureRate  float64
	FailureBurst int
	// FailureExempt are client addresses the failed-attempt limit never applies to:
	// kube-apiserver, whose TokenReviews carry every user's bearer token from one
	// address, so that one client sending bad tokens to the API server cannot get
	// everyone refused.
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

// client returns 0 when client may make an attempt, or how long it must wait for its
// failure budget to hold one attempt again. It takes nothing from the budget.
func (l *limiter) client(client string, now time.Time) time.Duration {
	if l.clients == nil || l.exempt(client) {
		return 0
	}
	v, ok := l.clients.Get(client)
	if !ok {
		return 0
	}
	tokens := v.(*rate.Limiter).TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / l.cfg.FailureRate * float64(time.Second))
}

// failed takes one attempt from client's failure budget.
func (l *limiter) failed(client string, now time.Time) {
	if l.clients == nil || l.exempt(client) {
		return
	}
	l.get(l.clients, client, l.cfg.FailureRate, l.cfg.FailureBurst).AllowN(now, 1)
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
