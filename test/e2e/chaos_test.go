package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// Lifetimes of the rotating tokens: the API's minimum lifetime, so that they rotate
// every 40s (renewBefore defaults to a third of it), with a grace period.
const (
	chaosLifetime = time.Minute
	chaosGrace    = 30 * time.Second
)

// maxWritesPerRotation bounds the API writes of a rotation, on average: a status
// write listing the new token, the Secret write, and a status write dropping the
// previous token once it retired, plus a margin for repairs after kills. A hot loop
// would blow it.
const maxWritesPerRotation = 4.0

// TestChaos rotates many short-lived tokens while the manager is SIGKILLed at random
// (every other time just as a rotation falls due) and restarted at once, and a client keeps reading every token Secret and validating every
// token it read. It asserts that every token read from a Secret was accepted until
// its grace period ended and refused after, that nothing unlisted was accepted, that
// every APIToken ends Ready, and that rotations cost a bounded number of writes.
func TestChaos(t *testing.T) {
	p := loadParams()
	s := newSUT(t, "chaos")
	r := rng(t)

	m := s.startManager("m")
	s.waitIssuerReady()
	// The client presents retired tokens on purpose: with the failed-attempt limit
	// on, those refusals would get its good tokens refused with 429 too.
	v := s.startValidator("--failed-attempt-rate-limit=0")
	x := s.startExchange("--failed-attempt-rate-limit=0")

	h := newHistory()
	recCtx, stopRecording := context.WithCancel(context.Background())
	defer stopRecording()
	h.record(recCtx, s.ns)

	var names []string
	var toks []*tokensv1.APIToken
	for i := range p.chaosTokens {
		name := fmt.Sprintf("tok-%03d", i)
		format := tokensv1.FormatJWT
		if i%4 == 3 {
			format = tokensv1.FormatOpaque
		}
		names = append(names, name)
		toks = append(toks, rotatingToken(s.ns, name, chaosLifetime, 0, chaosGrace, format))
	}
	s.createTokens(toks, 10*time.Second)
	s.waitAllReady(3 * time.Minute)

	pr := newProber(s.ns, names, v.url, p.probeRate, chaosLifetime+10*time.Second)
	probeCtx, stopProbing := context.WithCancel(context.Background())
	defer stopProbing()
	probed := make(chan struct{})
	go func() { pr.run(probeCtx); close(probed) }()
	h.count(true)

	// Tokens exchanged from long-lived parents during the chaos: the exchange and the
	// validator need no manager, so none may be refused while its parent is valid,
	// and none accepted once the validator refuses its revoked parent.
	ex := newExchanger(s, p.exchangeParents, x.url, v.url)
	exCtx, stopExchanging := context.WithCancel(context.Background())
	defer stopExchanging()
	exchanged := make(chan struct{})

	start := time.Now()
	deadline := start.Add(p.chaosDuration)
	go func() { ex.run(exCtx, start.Add(p.chaosDuration/2)); close(exchanged) }()
	kills, crashes := 0, 0
	for {
		wait := p.killMin + time.Duration(r.Int64N(int64(p.killMax-p.killMin)+1))
		if time.Now().Add(wait).After(deadline) {
			break
		}
		time.Sleep(wait) // the pace of the chaos
		// Every other kill lands just after a renewal time, while the manager is
		// minting: between the status write and the Secret write is where a crash
		// hurts most.
		if kills%2 == 1 {
			if due, name := nextRenewal(s.ctx, s.ns, 0); name != "" && time.Until(due) < 5*time.Second {
				time.Sleep(time.Until(due) + time.Duration(r.Int64N(int64(300*time.Millisecond))))
			}
		}
		if exited, err := m.proc.Exited(); exited {
			crashes++
			t.Errorf("the manager exited on its own: %v (see %s)", err, m.logPath())
		} else {
			s.g.Expect(m.kill()).To(Succeed())
			kills++
		}
		m.start(s)
	}
	time.Sleep(time.Until(deadline))
	chaosEnd := time.Now()
	stopExchanging()
	<-exchanged
	exFigures, exProblems := ex.results()

	// The chaos is over; the last manager stays. Every APIToken must end Ready, its
	// Secret holding its current token.
	s.waitAllReady(2 * chaosLifetime)
	stopProbing()
	<-probed
	h.count(false)
	s.g.Eventually(func() []string { return h.unknown(pr.tokenIDs()) }).
		WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(BeEmpty(), "tokens read from Secrets never seen listed")
	stopRecording()

	obs, reads := pr.results()
	f, problems := judge(h.token, obs, reads, p.informerSlack)
	mints, mintProblems := h.mintFigures()
	tokenWrites, usageWrites, secretWrites, minted := h.writes()
	perRotation := float64(tokenWrites+secretWrites) / float64(max(1, minted))
	report(t, map[string]any{
		"tokens": p.chaosTokens, "duration": chaosEnd.Sub(start).Round(time.Second).String(),
		"kills": kills, "crashes": crashes, "mints": mints,
		"apiTokenWrites": tokenWrites, "secretWrites": secretWrites, "usageWrites": usageWrites,
		"writesPerRotation": fmt.Sprintf("%.2f", perRotation),
		"client":            f,
		"exchange":          exFigures,
	})

	s.g.Expect(kills).To(BeNumerically(">", 0), "the manager was never killed")
	s.g.Expect(problems).To(BeEmpty(), "what the client saw:\n%s", strings.Join(firstFew(problems), "\n"))
	s.g.Expect(mintProblems).To(BeEmpty(), "mints:\n%s", strings.Join(firstFew(mintProblems), "\n"))
	s.g.Expect(f.Accepted).To(BeNumerically(">", 0))
	s.g.Expect(exProblems).To(BeEmpty(), "exchanged tokens:\n%s", strings.Join(firstFew(exProblems), "\n"))
	s.g.Expect(exFigures["exchanged"]).To(BeNumerically(">", 0))
	s.g.Expect(exFigures["parentsRevoked"]).To(Equal(len(ex.doomed)), "the validator never refused every revoked parent")
	s.g.Expect(mints.Rotations).To(BeNumerically(">=", p.chaosTokens), "every token should have rotated at least once")
	s.g.Expect(perRotation).To(BeNumerically("<=", maxWritesPerRotation),
		"API writes per rotation: %d APIToken writes and %d Secret writes for %d mints", tokenWrites, secretWrites, minted)
}
