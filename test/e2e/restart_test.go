package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TestAPIServerRestart stops kube-apiserver in the middle of a run (etcd keeps
// running) and starts it again on the same address: the manager and the validator
// must recover on their own, without a restart, and lose nothing. While the API is
// down the validator keeps answering from its cache; once it is back every APIToken
// rotates again, a new APIToken is minted and validated, a revocation reaches the
// validator, and the client saw no false refusal throughout.
func TestAPIServerRestart(t *testing.T) {
	p := loadParams()
	s := newSUT(t, "restart")

	// Leader-elected, with a renew deadline longer than the outage: a manager that
	// cannot renew its lease in time gives up leadership and exits by design.
	m := s.startManager("m", "--leader-elect", "--leader-election-namespace="+s.ns,
		"--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=50s", "--leader-elect-retry-period=2s")
	s.waitIssuerReady()
	v := s.startValidator("--failed-attempt-rate-limit=0")

	h := newHistory()
	recCtx, stopRecording := context.WithCancel(context.Background())
	defer stopRecording()
	h.record(recCtx, s.ns)

	// renewBefore 30s leaves each token 30s to be rotated in: longer than the outage.
	const n = 10
	var names []string
	var toks []*tokensv1.APIToken
	for i := range n {
		name := fmt.Sprintf("tok-%02d", i)
		format := tokensv1.FormatJWT
		if i%2 == 1 {
			format = tokensv1.FormatOpaque
		}
		names = append(names, name)
		toks = append(toks, rotatingToken(s.ns, name, chaosLifetime, 30*time.Second, chaosGrace, format))
	}
	s.createTokens(toks, 10*time.Second)
	s.waitAllReady(2 * time.Minute)

	pr := newProber(s.ns, names, v.url, min(p.probeRate, 20), chaosLifetime+10*time.Second)
	probeCtx, stopProbing := context.WithCancel(context.Background())
	defer stopProbing()
	probed := make(chan struct{})
	go func() { pr.run(probeCtx); close(probed) }()
	h.count(true)
	start := time.Now()

	s.waitMints(h, start, 3, "no rotation before the outage")
	down := time.Now()
	s.g.Expect(cp.StopAPIServer()).To(Succeed())
	time.Sleep(p.apiDowntime) // the outage
	s.g.Expect(cp.StartAPIServer()).To(Succeed())
	up := time.Now()
	t.Logf("kube-apiserver was down from %s to %s (%s)", stamp(down), stamp(up), up.Sub(down).Round(100*time.Millisecond))

	// A new APIToken is admitted and minted, and the validator accepts its token:
	// the webhook, the manager and the validator's watches all came back. Until the
	// validator sees that change its view is frozen at the outage: client-go's
	// reflectors retry a broken watch with a backoff that doubles from 0.8s up to
	// [30s, 60s), so the validator may stay blind well after the API is back. The
	// canary is opaque: the validator reads the APIToken of an unknown but validly
	// signed JWT past its index (LiveLookup), so only an opaque token proves that the
	// watch itself came back. After a long outage that takes up to a minute (the soak
	// saw 51s after 19s down), hence the two-minute deadline.
	canary := rotatingToken(s.ns, "canary", time.Hour, 0, time.Minute, tokensv1.FormatOpaque)
	s.createTokens([]*tokensv1.APIToken{canary}, 0)
	// The manager's informers reconnect on the same backoff, and a pass that wrote
	// from the stale view meanwhile is retried on the workqueue's own backoff: give
	// both their worst case (seen once in CI: a token Ready only after 60s).
	s.g.Eventually(func() []string { return notReady(s.ctx, s.ns) }).
		WithTimeout(3 * time.Minute).WithPolling(200 * time.Millisecond).Should(BeEmpty())
	id, value, err := secretToken(s.ctx, s.ns, canary.Name)
	s.g.Expect(err).NotTo(HaveOccurred())
	hc := &http.Client{Timeout: 10 * time.Second}
	s.g.Eventually(func() string {
		if v := ask(s.ctx, hc, v.url, authorizeEndpoint, value, s.ns, "editor"); !v.allowed {
			return verdictString(v)
		} else {
			return v.tokenID
		}
	}).WithTimeout(2*time.Minute).WithPolling(100*time.Millisecond).Should(Equal(id), "the validator never caught up after the restart (see %s)", v.proc.LogPath)
	caughtUp := time.Now()
	blind := window{from: down, to: caughtUp}
	t.Logf("the validator caught up %s after kube-apiserver came back", caughtUp.Sub(up).Round(100*time.Millisecond))

	// A revocation reaches the validator.
	s.g.Expect(cp.Client.Patch(s.ctx, &tokensv1.APIToken{ObjectMeta: canary.ObjectMeta},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`)))).To(Succeed())
	s.g.Eventually(func() int { return ask(s.ctx, hc, v.url, authorizeEndpoint, value, s.ns, "editor").status }).
		WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(Equal(http.StatusUnauthorized),
		"the validator still accepts a token revoked after the restart")
	// A revoked APIToken stays not Ready; it has served its purpose.
	s.g.Expect(cp.Client.Delete(s.ctx, &tokensv1.APIToken{ObjectMeta: canary.ObjectMeta})).To(Succeed())
	s.g.Eventually(func() bool {
		return apierrors.IsNotFound(cp.Client.Get(s.ctx, client.ObjectKeyFromObject(canary), &tokensv1.APIToken{}))
	}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(BeTrue())

	// Every APIToken rotates again after the restart, through the manager that was
	// running before it.
	s.g.Eventually(func() []string {
		rotated := map[string]bool{}
		for _, mt := range h.mintsSince(up) {
			rotated[mt.owner] = true
		}
		var waiting []string
		for _, name := range names {
			if !rotated[name] {
				waiting = append(waiting, name)
			}
		}
		return waiting
	}).WithTimeout(2*chaosLifetime).WithPolling(time.Second).Should(BeEmpty(), "APITokens not rotated since the API server came back (see %s)", m.logPath())

	// Neither process was restarted.
	for _, proc := range []interface{ Exited() (bool, error) }{m.proc, v.proc} {
		exited, err := proc.Exited()
		s.g.Expect(exited).To(BeFalse(), "a process exited: %v", err)
	}
	s.g.Expect(m.lives).To(Equal(1))

	stopProbing()
	<-probed
	h.count(false)
	s.waitAllReady(time.Minute)
	s.g.Eventually(func() []string { return h.unknown(pr.tokenIDs()) }).
		WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(BeEmpty())
	stopRecording()

	obs, reads := pr.results()
	f, problems := judge(h.token, obs, reads, p.informerSlack, blind)
	// After the outage the manager's Secret cache can lag its APIToken cache (each
	// informer backs off on its own); the controller reads the Secret past the cache
	// before it repairs, so nothing is minted twice.
	mints, mintProblems := h.mintFigures()
	tokenWrites, usageWrites, secretWrites, minted := h.writes()
	report(t, map[string]any{
		"tokens": n, "duration": time.Since(start).Round(time.Second).String(),
		"apiServerDowntime":     up.Sub(down).Round(100 * time.Millisecond).String(),
		"validatorBlindAfterUp": caughtUp.Sub(up).Round(100 * time.Millisecond).String(),
		"mints":                 mints,
		"apiTokenWrites":        tokenWrites, "secretWrites": secretWrites, "usageWrites": usageWrites, "minted": minted,
		"secretReadErrors": pr.readErrors,
		"client":           f,
	})
	s.g.Expect(problems).To(BeEmpty(), "what the client saw:\n%s", strings.Join(firstFew(problems), "\n"))
	s.g.Expect(mintProblems).To(BeEmpty(), "mints:\n%s", strings.Join(firstFew(mintProblems), "\n"))
	s.g.Expect(pr.readErrors).To(BeNumerically(">", 0), "the client never saw the API server down")
}
