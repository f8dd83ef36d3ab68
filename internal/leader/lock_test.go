package leader

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, nil) }

func namespace(t *testing.T) string {
	ns := "leader-" + rand.String(6)
	if err := env.Client.Create(t.Context(), testenv.Namespace(ns)); err != nil {
		t.Fatal(err)
	}
	return ns
}

// fakeNow is a clock the test moves by hand; it starts at the real now, so its
// values carry a monotonic reading like time.Now's.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) step(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func record(holder string) resourcelock.LeaderElectionRecord {
	now := metav1.NewTime(time.Now())
	return resourcelock.LeaderElectionRecord{HolderIdentity: holder, LeaseDurationSeconds: 15, AcquireTime: now, RenewTime: now}
}

// TestHeldFollowsRenewals writes the Lease as client-go's elector does and checks
// what Held answers after each write, by an injected clock.
func TestHeldFollowsRenewals(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ns := namespace(t)
	const deadline = 10 * time.Second
	clk := &fakeNow{t: time.Now()}
	l, err := NewLock(env.Config, ns, "manager", deadline)
	g.Expect(err).NotTo(HaveOccurred())
	l.now = clk.now
	g.Expect(l.Held()).To(BeFalse(), "nothing is held before the lease is taken")

	g.Expect(l.Create(ctx, record(l.Identity()))).To(Succeed())
	g.Expect(l.Held()).To(BeTrue())
	clk.step(deadline - time.Millisecond)
	g.Expect(l.Held()).To(BeTrue())
	clk.step(time.Millisecond)
	g.Expect(l.Held()).To(BeFalse(), "a renewal sent a whole renew deadline ago no longer proves the lease")

	_, _, err = l.Get(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(l.Update(ctx, record(l.Identity()))).To(Succeed())
	g.Expect(l.Held()).To(BeTrue(), "renewed")

	// Another replica takes the lease over (as after our lease expired); our next
	// renewal, built on the Lease as we last read it, fails.
	other, err := NewLock(env.Config, ns, "manager", deadline)
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = other.Get(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(other.Update(ctx, record(other.Identity()))).To(Succeed())
	clk.step(time.Second)
	g.Expect(l.Update(ctx, record(l.Identity()))).NotTo(Succeed())
	g.Expect(l.Held()).To(BeTrue(), "a failed renewal changes nothing until the deadline")
	clk.step(deadline)
	g.Expect(l.Held()).To(BeFalse())

	// Taking it back, then releasing it on shutdown.
	_, _, err = l.Get(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(l.Update(ctx, record(l.Identity()))).To(Succeed())
	g.Expect(l.Held()).To(BeTrue())
	g.Expect(l.Update(ctx, record(""))).To(Succeed())
	g.Expect(l.Held()).To(BeFalse(), "released")
}

// TestHeldWithTheElector runs client-go's elector on the lock: Held turns true once
// it leads, stays true while it renews, and false once it released the lease; the
// elector's events land on the Lease.
func TestHeldWithTheElector(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	l, err := NewLock(env.Config, ns, "manager", 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cs, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	g.Expect(broadcaster.StartRecordingToSinkWithContext(ctx)).To(Succeed())
	defer broadcaster.Shutdown()
	l.RecordEventsWith(broadcaster.NewRecorder(clientgoscheme.Scheme, "leader-test"))
	started := make(chan struct{})
	done := make(chan struct{})
	el, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: l, LeaseDuration: 8 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: 200 * time.Millisecond,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(started) },
			OnStoppedLeading: func() {},
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	go func() { el.Run(ctx); close(done) }()
	g.Eventually(started).WithTimeout(30 * time.Second).Should(BeClosed())
	g.Expect(l.Held()).To(BeTrue())
	g.Eventually(func(g Gomega) []string {
		list, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		var notes []string
		for _, e := range list.Items {
			if e.Reason == "LeaderElection" && e.Regarding.Kind == "Lease" && e.Regarding.Name == "manager" {
				notes = append(notes, e.Note)
			}
		}
		return notes
	}).WithTimeout(30 * time.Second).Should(ContainElement(l.Identity() + " became leader"))
	// Renewals every 200ms keep it held.
	g.Consistently(l.Held).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(BeTrue())
	cancel()
	g.Eventually(done).WithTimeout(30 * time.Second).Should(BeClosed())
	g.Expect(l.Held()).To(BeFalse(), "the elector released the lease")
}
