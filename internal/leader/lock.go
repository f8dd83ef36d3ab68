// Package leader fences the manager's writes with its leader-election lease.
//
// Leader election alone does not stop a leader that was paused (a frozen node, a
// stopped process, a long GC or a VM migration) from acting on its old belief once it
// runs again: client-go's elector notices the lost lease only when its next renewal
// fails, up to a renew deadline later, and until then the controllers keep writing.
// With two managers acting on the same APIToken, both can rotate it, and the token
// one of them just wrote to the Secret is replaced before its time.
//
// Lock wraps the lease lock that the elector renews through and remembers when the
// last renewal that kept the lease for this replica was sent. Held then answers, from
// memory and by the monotonic clock, whether the lease is certainly still ours: the
// standby takes over only after a whole lease duration without renewal, counted from
// when it saw the last one, which came after we sent it.
package leader

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lock is a resourcelock.Interface that remembers its last successful renewal.
type Lock struct {
	resourcelock.Interface
	// window is how long after a renewal was sent the lease counts as held: the
	// elector's renew deadline, shorter than the lease duration by construction.
	window time.Duration

	mu      sync.Mutex
	renewed time.Time // when the last renewal that holds the lease for us was sent
	now     func() time.Time
}

// NewLock returns a fenced Lease lock named name in namespace, with a unique identity
// (hostname and a UUID, as controller-runtime makes it). renewDeadline is the
// elector's: the lease counts as held for that long after each renewal was sent.
func NewLock(cfg *rest.Config, namespace, name string, renewDeadline time.Duration) (*Lock, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("naming the leader-election identity: %w", err)
	}
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	// One hung request must not outlast the renew deadline, or a slow API server
	// would cost the leadership.
	cfg.Timeout = max(renewDeadline/2, time.Second)
	coord, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return Wrap(&resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     coord,
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
	}, renewDeadline), nil
}

// RecordEventsWith makes the lock report leadership changes ("<identity> became
// leader", "<identity> stopped leading") as events on the Lease, as controller-runtime's
// own lock does. Call it before the elector starts.
func (l *Lock) RecordEventsWith(r events.EventRecorder) {
	if ll, ok := l.Interface.(*resourcelock.LeaseLock); ok {
		ll.LockConfig.EventRecorder = leaseEvents{r}
	}
}

// leaseEvents speaks the elector's events through the events.k8s.io recorder.
type leaseEvents struct{ r events.EventRecorder }

func (e leaseEvents) Eventf(obj runtime.Object, eventType, reason, message string, args ...any) {
	e.r.Eventf(obj, nil, eventType, reason, "LeaderElection", message, args...)
}

// Wrap fences lock with a window of renewDeadline.
func Wrap(lock resourcelock.Interface, renewDeadline time.Duration) *Lock {
	return &Lock{Interface: lock, window: renewDeadline, now: time.Now}
}

// Create takes the lease for the first time.
func (l *Lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return l.write(ler, func() error { return l.Interface.Create(ctx, ler) })
}

// Update renews, takes over or releases the lease.
func (l *Lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	return l.write(ler, func() error { return l.Interface.Update(ctx, ler) })
}

// write sends a record and remembers when, if it made or kept this replica the
// holder. The time is taken before sending: the API server stores the record, and
// the standby sees it, only after that.
func (l *Lock) write(ler resourcelock.LeaderElectionRecord, send func() error) error {
	sent := l.now()
	err := send()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		// A failed write may still have landed; the earlier renewal stays the
		// last one we know of, so Held errs on the safe side.
	case ler.HolderIdentity == l.Identity():
		l.renewed = sent
	default:
		// Released on shutdown.
		l.renewed = time.Time{}
	}
	return err
}

// Held reports whether this replica certainly holds the lease now: its last
// successful renewal was sent less than the renew deadline ago, by the monotonic
// clock and by the wall clock both. The monotonic clock does not count time the
// machine spent suspended (a paused VM), and the wall clock can be set back; either
// one having run past the deadline is enough to stop.
func (l *Lock) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.renewed.IsZero() {
		return false
	}
	now := l.now()
	return now.Sub(l.renewed) < l.window && now.Round(0).Sub(l.renewed.Round(0)) < l.window
}
