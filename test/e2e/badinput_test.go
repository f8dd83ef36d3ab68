package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// The failed-attempt limit is per client address: 1 failure a second, a burst of 20
// (the validator's defaults). The bad traffic comes from badSources addresses of
// 127.2.0.0/16 in turn, so that each stays within its budget and every bad request
// reaches the token checks instead of stopping at the limit. The good traffic comes
// from 127.0.0.1, and so does an attacker that then hammers on its own, as a client
// behind the same proxy or NAT as the good ones would: the limit must slow it and
// refuse the good clients nothing.
const badSources = 1000

// attackDuration is how long the attacker from the good clients' address keeps
// sending bad tokens while the good traffic goes on.
const attackDuration = 3 * time.Second

// TestBadInput sends the validator a long stream of malformed, truncated, oversized
// and forged tokens, headers and bodies, while it serves valid traffic: it must not
// crash, must allow none of the bad requests and must refuse none of the good ones,
// not even while an attacker at their own address is being slowed. Its audit stream
// records the good tokens' acceptances and never a token.
func TestBadInput(t *testing.T) {
	p := loadParams()
	s := newSUT(t, "badinput")
	s.startManager("m")
	s.waitIssuerReady()
	auditLog := filepath.Join(s.dir, "audit.log")
	v := s.startValidator("--audit-log=" + auditLog)

	life := time.Hour
	mk := func(name, role string, format tokensv1.TokenFormat) *tokensv1.APIToken {
		tok := rotatingToken(s.ns, name, life, 0, time.Hour, format)
		tok.Spec.Role = role
		return tok
	}
	s.createTokens([]*tokensv1.APIToken{
		mk("good-jwt", "editor", tokensv1.FormatJWT),
		mk("good-admin", "admin", tokensv1.FormatJWT),
		mk("good-opaque", "editor", tokensv1.FormatOpaque),
		mk("revoked", "editor", tokensv1.FormatJWT),
		mk("deleted", "editor", tokensv1.FormatOpaque),
	}, 0)
	s.waitAllReady(2 * time.Minute)

	g := &goodTokens{ns: s.ns, opaquePrefix: "apt"}
	var err error
	read := func(name string) (string, string) {
		id, value, err := secretToken(s.ctx, s.ns, name)
		s.g.Expect(err).NotTo(HaveOccurred())
		return id, value
	}
	g.jwtID, g.jwt = read("good-jwt")
	g.adminID, g.admin = read("good-admin")
	g.opaqueID, g.opaque = read("good-opaque")
	_, g.revoked = read("revoked")
	_, g.deleted = read("deleted")
	g.claims, g.adminClaims = decodeClaims(g.jwt), decodeClaims(g.admin)
	g.adminSub, _ = g.adminClaims["sub"].(string)
	issuer := defaultIssuer()
	s.g.Expect(cp.Client.Get(s.ctx, client.ObjectKeyFromObject(issuer), issuer)).To(Succeed())
	g.key, err = keystore.Load(s.ctx, cp.Client, operatorNamespace, issuer, issuer.Status.CurrentKeyID)
	s.g.Expect(err).NotTo(HaveOccurred())
	g.foreign, err = newForeignKey()
	s.g.Expect(err).NotTo(HaveOccurred())
	g.foreignKid, err = token.Thumbprint(&g.foreign.PublicKey)
	s.g.Expect(err).NotTo(HaveOccurred())

	// Revoke one APIToken and delete another: their tokens are bad from now on.
	s.g.Expect(cp.Client.Patch(s.ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "revoked"}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`)))).To(Succeed())
	s.g.Expect(cp.Client.Delete(s.ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "deleted"}})).To(Succeed())
	hc := &http.Client{Timeout: 10 * time.Second}
	s.g.Eventually(func() []int {
		return []int{
			ask(s.ctx, hc, v.url, authorizeEndpoint, g.revoked, "", "").status,
			ask(s.ctx, hc, v.url, authorizeEndpoint, g.deleted, "", "").status,
		}
	}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Equal([]int{http.StatusUnauthorized, http.StatusUnauthorized}))
	s.g.Eventually(func() bool {
		return apierrors.IsNotFound(cp.Client.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: "deleted"}, &tokensv1.APIToken{}))
	}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(BeTrue())

	// Good traffic from 127.0.0.1 for as long as the bad traffic lasts.
	goods := []struct{ id, value, role string }{{g.jwtID, g.jwt, "editor"}, {g.adminID, g.admin, "admin"}, {g.opaqueID, g.opaque, "editor"}}
	var goodCount, goodRefused atomic.Int64
	var goodMu sync.Mutex
	var goodProblems []string
	goodCtx, stopGood := context.WithCancel(context.Background())
	defer stopGood()
	goodLimiter := rate.NewLimiter(100, 1)
	var goodWG sync.WaitGroup
	for w := range 2 {
		goodWG.Go(func() {
			ghc := &http.Client{Timeout: 10 * time.Second}
			for i := w; goodLimiter.Wait(goodCtx) == nil; i++ {
				gt := goods[i%len(goods)]
				ep := endpoint(i / len(goods) % int(endpoints))
				vd := ask(goodCtx, ghc, v.url, ep, gt.value, s.ns, gt.role)
				if goodCtx.Err() != nil {
					return
				}
				goodCount.Add(1)
				if !vd.allowed || vd.tokenID != gt.id {
					goodRefused.Add(1)
					goodMu.Lock()
					goodProblems = append(goodProblems, fmt.Sprintf("good token %s via %s: %s", gt.id, ep, verdictString(vd)))
					goodMu.Unlock()
				}
			}
		})
	}

	// The bad traffic.
	senders := newSenders(v.url)
	defer senders.close()
	var sent, accepted, echoed atomic.Int64
	var badMu sync.Mutex
	byCategory := map[string]int{}
	byStatus := map[string]int{}
	var badProblems []string
	start := time.Now()
	deadline := start.Add(p.badDuration)
	var next atomic.Int64
	var badWG sync.WaitGroup
	for w := range 4 {
		wr := rng(t, uint64(w))
		badWG.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(p.badRequests) || time.Now().After(deadline) {
					return
				}
				gen := generators[int(i)%len(generators)]
				req := gen.make(wr, g)
				out := senders.send(s.ctx, int(i), req)
				sent.Add(1)
				badMu.Lock()
				byCategory[gen.category]++
				byStatus[out.label()]++
				if out.allowed {
					accepted.Add(1)
					badProblems = append(badProblems, fmt.Sprintf("bad request %d (%s) was allowed: %s", i, req.describe(), out.label()))
				}
				if out.echo {
					echoed.Add(1)
					badProblems = append(badProblems, fmt.Sprintf("bad request %d (%s): the answer echoes the token", i, req.describe()))
				}
				badMu.Unlock()
			}
		})
	}
	badWG.Wait()
	elapsed := time.Since(start)

	// A client at the good clients' own address spends its failure budget and is
	// then turned away with 429, while the good clients, sharing its budget's
	// address, go on being served.
	attacker := senders.from(net.IPv4(127, 0, 0, 1))
	limited, attacks := 0, 0
	goodBefore, refusedBefore := goodCount.Load(), goodRefused.Load()
	attackWR := rng(t, 99)
	for end := time.Now().Add(attackDuration); time.Now().Before(end); attacks++ {
		out := attacker.send(s.ctx, v.url, generators[attacks%len(generators)].make(attackWR, g))
		if out.allowed {
			t.Errorf("attacker request %d was allowed", attacks)
		}
		if out.status == http.StatusTooManyRequests {
			limited++
		}
	}
	goodDuringAttack, refusedDuringAttack := goodCount.Load()-goodBefore, goodRefused.Load()-refusedBefore
	stopGood()
	goodWG.Wait()

	// Still up, still right.
	exited, exitErr := v.proc.Exited()
	s.g.Expect(exited).To(BeFalse(), "the validator exited: %v (see %s)", exitErr, v.proc.LogPath)
	s.g.Expect(httpStatus(v.url + validator.PathHealthz)).To(Equal(http.StatusOK))
	last := ask(s.ctx, hc, v.url, authorizeEndpoint, g.jwt, s.ns, "editor")
	s.g.Expect(last.allowed).To(BeTrue(), "after the storm: %s", verdictString(last))

	report(t, map[string]any{
		"badRequests": sent.Load(), "badAllowed": accepted.Load(), "badEchoed": echoed.Load(),
		"duration": elapsed.Round(100 * time.Millisecond).String(), "badPerSecond": int(float64(sent.Load()) / elapsed.Seconds()),
		"categories": len(byCategory), "answers": byStatus,
		"goodValidations": goodCount.Load(), "goodRefused": goodRefused.Load(),
		"attackerRequests": attacks, "attackerRateLimited": limited,
		"goodDuringAttack": goodDuringAttack, "goodRefusedDuringAttack": refusedDuringAttack,
	})
	var missing []string
	for _, gen := range generators {
		if byCategory[gen.category] == 0 {
			missing = append(missing, gen.category)
		}
	}
	s.g.Expect(missing).To(BeEmpty(), "categories never sent (raise E2E_BAD_DURATION?)")
	s.g.Expect(badProblems).To(BeEmpty(), "bad requests:\n%s", strings.Join(firstFew(badProblems), "\n"))
	s.g.Expect(goodProblems).To(BeEmpty(), "good requests:\n%s", strings.Join(firstFew(goodProblems), "\n"))
	s.g.Expect(goodCount.Load()).To(BeNumerically(">", 0))
	s.g.Expect(limited).To(BeNumerically(">", 0), "the failed-attempt limit never stopped the attacker")
	s.g.Expect(goodDuringAttack).To(BeNumerically(">", 0), "no good traffic while the attacker was slowed")
	s.g.Expect(refusedDuringAttack).To(BeZero())

	// The audit stream, written to its file when the validator stops: the good
	// tokens' acceptances by APIToken, no token at all.
	s.g.Expect(v.proc.Stop(15 * time.Second)).To(Succeed())
	raw, err := os.ReadFile(auditLog)
	s.g.Expect(err).NotTo(HaveOccurred())
	allowedBy := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var l validatorapi.AuditLine
		s.g.Expect(json.Unmarshal(line, &l)).To(Succeed(), "%s", line)
		if l.Decision == validatorapi.AuditAllowed {
			allowedBy[l.APIToken] = true
		}
	}
	s.g.Expect(allowedBy).To(HaveKey(s.ns + "/good-jwt"))
	s.g.Expect(allowedBy).To(HaveKey(s.ns + "/good-opaque"))
	for _, tok := range []string{g.jwt, g.admin, g.opaque, g.revoked, g.deleted} {
		s.g.Expect(bytes.Contains(raw, []byte(tok))).To(BeFalse(), "the audit log holds a token")
	}
}

// outcome is what a bad request got.
type outcome struct {
	// status is the HTTP status, or for /v1/validate and TokenReviews the decision's
	// (see verdict); 0: no answer (the connection closed or timed out).
	status  int
	allowed bool
	echo    bool
	err     error
}

func (o outcome) label() string {
	if o.status == 0 {
		return "no answer"
	}
	if o.err != nil {
		return "error"
	}
	return strconv.Itoa(o.status)
}

// sender sends requests from one source address.
type sender struct {
	ip net.IP
	hc *http.Client
}

// senders are the clients of the bad traffic, one per source address.
type senders struct {
	base string
	all  []*sender
}

func newSenders(base string) *senders {
	s := &senders{base: base}
	for i := range badSources {
		s.all = append(s.all, s.from(net.IPv4(127, 2, byte(i/250), byte(1+i%250))))
	}
	return s
}

// from makes a sender whose connections come from ip.
func (s *senders) from(ip net.IP) *sender {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return &sender{ip: ip, hc: &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, IdleConnTimeout: 10 * time.Second},
	}}
}

func (s *senders) send(ctx context.Context, i int, req badRequest) outcome {
	return s.all[i%len(s.all)].send(ctx, s.base, req)
}

func (s *senders) close() {
	for _, c := range s.all {
		c.hc.CloseIdleConnections()
	}
}

// send sends req and reads whether it was allowed and whether the answer echoes the
// token it carried.
func (c *sender) send(ctx context.Context, base string, req badRequest) outcome {
	switch {
	case req.raw != nil:
		return c.sendRaw(base, req.raw)
	case req.body != nil:
		return c.do(ctx, req, http.MethodPost, base+req.path, bytes.NewReader(req.body), nil)
	case req.header != nil:
		return c.do(ctx, req, http.MethodGet, base+validatorapi.PathAuthorize+"?"+req.query, nil, req.header)
	}
	v := ask(ctx, c.hc, base, req.endpoint, req.token, req.tenant, req.role)
	if v.err != nil {
		return outcome{err: v.err}
	}
	return outcome{status: v.status, allowed: v.allowed, echo: v.echo}
}

func (c *sender) do(ctx context.Context, req badRequest, method, url string, body io.Reader, header http.Header) outcome {
	hr, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return outcome{err: err}
	}
	for k, vs := range header {
		hr.Header[k] = vs
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return outcome{err: err}
	}
	v := readVerdict(req.endpoint, resp, raw, "")
	if v.err != nil {
		return outcome{err: v.err}
	}
	return outcome{status: v.status, allowed: v.allowed}
}

// sendRaw writes raw to a fresh connection and reads the status line of the answer.
func (c *sender) sendRaw(base string, raw []byte) outcome {
	u, err := url.Parse(base)
	if err != nil {
		return outcome{err: err}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: c.ip}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		return outcome{err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return outcome{err: err}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return outcome{err: err}
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return outcome{err: fmt.Errorf("unreadable status line %q", line)}
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil {
		return outcome{err: fmt.Errorf("unreadable status line %q", line)}
	}
	return outcome{status: code, allowed: code >= 200 && code < 300}
}
