package apitoken

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
)

// RotationBudget paces the scheduled rotations of a manager: a token bucket of perSecond
// rotations with room for a burst. Renewal jitter spreads tokens that were minted
// together, but not tokens that fall due together for another reason: a manager that
// comes back after an outage finds every rotation of the outage overdue at once. Each
// rotation is two writes and an event; unpaced, such a storm takes the API server's
// whole capacity from everyone else, this manager's first mints and repairs included.
//
// A rotation the bucket cannot serve now keeps the slot the bucket gave it and its
// pass comes back at that time, holding the worker no longer than a quiet pass. Only
// scheduled rotations wait, and only while their token has at least half of
// renewBefore left (paced): a token still valid can. First mints, repairs, rotations
// a person asked for and rotations away from a withdrawn signing key do not.
type RotationBudget struct {
	lim *rate.Limiter

	mu sync.Mutex
	// slots are the times reserved for rotations sent away to wait, by APIToken.
	slots map[types.NamespacedName]time.Time
}

// NewRotationBudget returns a budget of perSecond scheduled rotations, in bursts of at
// most burst. perSecond <= 0 means no pacing: nil, which every method accepts.
func NewRotationBudget(perSecond float64, burst int) *RotationBudget {
	if perSecond <= 0 {
		return nil
	}
	return &RotationBudget{lim: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)), slots: map[types.NamespacedName]time.Time{}}
}

// wait returns how long the due rotation of key must wait, from now; 0 means rotate
// now. A rotation sent away keeps its slot: asking again before the slot returns what
// is left of the wait, and at or after it returns 0 and frees the slot.
func (b *RotationBudget) wait(key types.NamespacedName, now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if at, ok := b.slots[key]; ok {
		if now.Before(at) {
			return at.Sub(now)
		}
		delete(b.slots, key)
		return 0
	}
	d := b.lim.ReserveN(now, 1).DelayFrom(now)
	if d <= 0 {
		return 0
	}
	b.slots[key] = now.Add(d)
	return d
}

// forget frees the slot of key: its APIToken is gone, or minted for another reason.
func (b *RotationBudget) forget(key types.NamespacedName) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.slots, key)
}

// waiting is how many rotations wait for their slot.
func (b *RotationBudget) waiting() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.slots)
}
