package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// Short leader-election timings, so that a failover fits in a test.
const (
	failoverLease = 6 * time.Second
	failoverRenew = 4 * time.Second
	failoverRetry = time.Second
)

// TestFailover runs two leader-elected managers and takes the leader away, killed
// (SIGKILL) or frozen (SIGSTOP, as a node that stops responding; it is thawed once the
// standby took over, and must then step down): the standby takes the Lease over,
// rotation resumes within about the lease duration, and nothing is minted twice.
// A thawed leader runs for a moment before it notices it lost the lease; the lease
// fence keeps it from writing meanwhile.
func TestFailover(t *testing.T) {
	p := loadParams()
	s := newSUT(t, "failover")
	le := []string{
		"--leader-elect", "--leader-election-namespace=" + s.ns,
		"--leader-elect-lease-duration=" + failoverLease.String(),
		"--leader-elect-renew-deadline=" + failoverRenew.String(),
		"--leader-elect-retry-period=" + failoverRetry.String(),
	}

	// The first replica to start leads; whoever holds the Lease once the leader is
	// gone is the one that was standing by, so identities map to processes.
	leader := s.startManager("a", le...)
	var leaderID string
	s.g.Eventually(func() string { leaderID = leaseHolder(s.ctx, s.ns); return leaderID }).
		WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).ShouldNot(BeEmpty())
	standby := s.startManager("b", le...)
	s.waitIssuerReady()
	v := s.startValidator("--failed-attempt-rate-limit=0")

	h := newHistory()
	recCtx, stopRecording := context.WithCancel(context.Background())
	defer stopRecording()
	h.record(recCtx, s.ns)

	var names []string
	var toks []*tokensv1.APIToken
	for i := range p.failoverTokens {
		name := fmt.Sprintf("tok-%02d", i)
		names = append(names, name)
		toks = append(toks, rotatingToken(s.ns, name, chaosLifetime, 0, chaosGrace, tokensv1.FormatJWT))
	}
	// Spread, so that rotations keep falling due.
	s.createTokens(toks, chaosLifetime/3)
	s.waitAllReady(2 * time.Minute)

	pr := newProber(s.ns, names, v.url, min(p.probeRate, 20), chaosLifetime+10*time.Second)
	probeCtx, stopProbing := context.WithCancel(context.Background())
	defer stopProbing()
	probed := make(chan struct{})
	go func() { pr.run(probeCtx); close(probed) }()
	h.count(true)
	start := time.Now()

	type round struct {
		Mode     string `json:"mode"`
		Takeover string `json:"takeover"`
		Resumed  string `json:"resumed"`
	}
	var rounds []round
	leading := start // since when the current leader leads
	for i := range p.failoverRounds {
		mode := "kill"
		if i%2 == 1 {
			mode = "freeze"
		}
		s.waitMints(h, leading, 2, fmt.Sprintf("round %d: the leader rotates nothing", i))
		// Take the leader away just before a token is due, so that a rotation is
		// waiting for the new leader.
		due, dueName := nextRenewal(s.ctx, s.ns, 2*time.Second)
		time.Sleep(time.Until(due.Add(-time.Second)))
		gone := time.Now()
		if mode == "kill" {
			s.g.Expect(leader.kill()).To(Succeed())
		} else {
			webhooks.remove(leader.webhookAddr) // its readiness probe would fail
			s.g.Expect(leader.proc.Signal(syscall.SIGSTOP)).To(Succeed())
		}

		var newID string
		s.g.Eventually(func() string { newID = leaseHolder(s.ctx, s.ns); return newID }).
			WithTimeout(failoverLease+failoverRenew+30*time.Second).WithPolling(100*time.Millisecond).
			Should(SatisfyAll(Not(BeEmpty()), Not(Equal(leaderID))), "round %d (%s): the standby did not take the lease over (see %s)", i, mode, standby.logPath())
		takeover := time.Since(gone)

		// The rotation that fell due while nobody led happens, and no token is left
		// overdue.
		var resumed time.Duration
		s.g.Eventually(func(g Gomega) {
			var at time.Time
			for _, m := range h.mintsSince(gone) {
				if m.owner == dueName {
					at = m.seen
					break
				}
			}
			if dueName != "" {
				g.Expect(at).NotTo(BeZero(), "%s was due at %s and has not rotated", dueName, stamp(due))
				resumed = at.Sub(gone)
			}
			g.Expect(overdue(s.ctx, s.ns, 2*time.Second)).To(BeEmpty())
		}).WithTimeout(2*failoverLease+30*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(),
			"round %d (%s): rotation did not resume (see %s)", i, mode, standby.logPath())
		t.Logf("Round %d (%s): the standby took over after %s; the rotation due at %s happened %s after the leader went",
			i, mode, takeover.Round(100*time.Millisecond), stamp(due), resumed.Round(100*time.Millisecond))
		rounds = append(rounds, round{Mode: mode, Takeover: takeover.Round(100 * time.Millisecond).String(), Resumed: resumed.Round(100 * time.Millisecond).String()})

		if mode == "freeze" {
			// Thawed, the old leader finds its lease taken: it must step down, which
			// ends the process, without having minted anything meanwhile.
			thawed := time.Now()
			s.g.Expect(leader.proc.Signal(syscall.SIGCONT)).To(Succeed())
			s.g.Eventually(leader.proc.Done()).WithTimeout(failoverRenew+30*time.Second).Should(BeClosed(),
				"round %d: the thawed leader did not step down (see %s)", i, leader.logPath())
			// Until it noticed, its controllers ran, but the lease fence
			// (internal/leader) kept them from writing: nothing is minted twice.
			t.Logf("Round %d: the thawed leader stepped down %s after it was thawed", i, time.Since(thawed).Round(100*time.Millisecond))
		}
		// The old leader comes back as the standby.
		leader.start(s)
		leader, standby, leaderID = standby, leader, newID
		leading = time.Now()
	}
	s.waitMints(h, leading, 3, "the last leader rotates nothing")

	stopProbing()
	<-probed
	h.count(false)
	s.waitAllReady(time.Minute)
	s.g.Eventually(func() []string { return h.unknown(pr.tokenIDs()) }).
		WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(BeEmpty())
	stopRecording()

	obs, reads := pr.results()
	f, problems := judge(h.token, obs, reads, p.informerSlack)
	mints, mintProblems := h.mintFigures()
	report(t, map[string]any{
		"tokens": p.failoverTokens, "duration": time.Since(start).Round(time.Second).String(),
		"rounds": rounds, "mints": mints,
		"client": f,
	})
	s.g.Expect(problems).To(BeEmpty(), "what the client saw:\n%s", strings.Join(firstFew(problems), "\n"))
	s.g.Expect(mintProblems).To(BeEmpty(), "mints:\n%s", strings.Join(firstFew(mintProblems), "\n"))
}

// nextRenewal returns the earliest renewalTime of the APITokens of ns that is more
// than ahead from now, and whose it is; "" when there is none.
func nextRenewal(ctx context.Context, ns string, ahead time.Duration) (time.Time, string) {
	var list tokensv1.APITokenList
	if err := cp.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return time.Now(), ""
	}
	type due struct {
		at   time.Time
		name string
	}
	var dues []due
	for _, tok := range list.Items {
		if rt := tok.Status.RenewalTime; rt != nil && time.Until(rt.Time) > ahead {
			dues = append(dues, due{rt.Time, tok.Name})
		}
	}
	if len(dues) == 0 {
		return time.Now(), ""
	}
	sort.Slice(dues, func(i, j int) bool { return dues[i].at.Before(dues[j].at) })
	return dues[0].at, dues[0].name
}

// overdue lists the APITokens of ns whose renewalTime passed more than tolerance ago.
func overdue(ctx context.Context, ns string, tolerance time.Duration) []string {
	var list tokensv1.APITokenList
	if err := cp.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, tok := range list.Items {
		if rt := tok.Status.RenewalTime; rt != nil && time.Since(rt.Time) > tolerance {
			out = append(out, fmt.Sprintf("%s (due %s)", tok.Name, stamp(rt.Time)))
		}
	}
	return out
}
