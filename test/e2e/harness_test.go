package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// leaseName is the manager's leader-election Lease (cmd/manager's LeaderElectionID).
const leaseName = "apitoken-operator-manager"

// sut is the system under test of one test: a namespace of its own, the manager and
// validator processes it started, and where their logs go.
type sut struct {
	t   *testing.T
	g   *WithT
	ctx context.Context
	ns  string
	dir string

	managers   []*manager
	validators []*validatorProc
	exchanges  []*validatorProc
}

// newSUT makes the namespace ns and registers the teardown: delete the namespace's
// APITokens while a manager still runs (so their finalizers go), stop every process,
// then look through their logs for panics and data races.
func newSUT(t *testing.T, ns string) *sut {
	t.Helper()
	s := &sut{t: t, g: NewWithT(t), ctx: t.Context(), ns: ns, dir: filepath.Join(workDir, sanitize(t.Name()))}
	s.g.Expect(os.MkdirAll(s.dir, 0o700)).To(Succeed())
	if err := cp.Client.Create(s.ctx, testenv.Namespace(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(s.teardown)
	return s
}

func sanitize(name string) string {
	return regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(name, "_")
}

func (s *sut) teardown() {
	// t.Context is done by now.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if len(s.managers) > 0 {
		var live *manager
		for _, m := range s.managers {
			if m.running() {
				live = m
			}
		}
		if live == nil {
			live = s.managers[0]
			live.start(s)
		}
		if err := cp.Client.DeleteAllOf(ctx, &tokensv1.APIToken{}, client.InNamespace(s.ns)); err != nil {
			s.t.Errorf("deleting the APITokens of %s: %v", s.ns, err)
		}
		s.g.Eventually(func(g Gomega) {
			var list tokensv1.APITokenList
			g.Expect(cp.Client.List(ctx, &list, client.InNamespace(s.ns))).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(2*time.Minute).WithPolling(500*time.Millisecond).Should(Succeed(),
			"the APITokens of %s were not released (see %s)", s.ns, live.logPath())
	}
	for _, v := range append(s.validators, s.exchanges...) {
		_ = v.proc.Stop(15 * time.Second)
	}
	for _, m := range s.managers {
		m.stop()
	}
	s.checkLogs()
}

// checkLogs fails the test when a process panicked, a handler panicked (net/http
// recovers those and logs them) or the race detector found a race.
func (s *sut) checkLogs() {
	bad := regexp.MustCompile(`(?m)^panic: |http: panic serving|WARNING: DATA RACE|fatal error: `)
	logs, _ := filepath.Glob(filepath.Join(s.dir, "*.log"))
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			s.t.Errorf("reading %s: %v", path, err)
			continue
		}
		if loc := bad.FindIndex(raw); loc != nil {
			s.t.Errorf("%s: %q", path, excerpt(raw, loc[0]))
		}
	}
}

func excerpt(raw []byte, at int) string {
	end := min(len(raw), at+2000)
	return string(raw[at:end])
}

// manager is one manager replica: the process of its current life and the flags it
// is restarted with.
type manager struct {
	name        string
	args        []string
	webhookAddr string
	proc        *localenv.Process
	lives       int
	dir         string
}

// startManager starts a manager replica whose webhook server sits behind the webhook
// service; extra flags follow the common ones.
func (s *sut) startManager(name string, extra ...string) *manager {
	s.t.Helper()
	port, err := localenv.FreePort()
	s.g.Expect(err).NotTo(HaveOccurred())
	wh := cp.Webhook()
	m := &manager{
		name:        name,
		webhookAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:         s.dir,
		args: append([]string{
			"--namespace=" + operatorNamespace,
			"--metrics-bind-address=0",
			"--health-probe-bind-address=127.0.0.1:0",
			"--webhook-host=127.0.0.1",
			"--webhook-port=" + strconv.Itoa(port),
			"--webhook-cert-dir=" + wh.LocalServingCertDir,
		}, extra...),
	}
	m.start(s)
	s.managers = append(s.managers, m)
	return m
}

func (m *manager) logPath() string {
	return filepath.Join(m.dir, fmt.Sprintf("manager-%s-%d.log", m.name, m.lives))
}

// start starts a new life of the replica.
func (m *manager) start(s *sut) {
	s.t.Helper()
	m.lives++
	proc, err := localenv.StartProcess("manager "+m.name, managerBin, cp.Kubeconfig, m.logPath(), m.args...)
	if err != nil {
		s.t.Fatal(err)
	}
	m.proc = proc
	webhooks.add(m.webhookAddr)
}

func (m *manager) running() bool {
	if m.proc == nil {
		return false
	}
	exited, _ := m.proc.Exited()
	return !exited
}

// kill SIGKILLs the replica, as a node failure or an OOM kill would.
func (m *manager) kill() error {
	webhooks.remove(m.webhookAddr)
	return m.proc.Kill()
}

func (m *manager) stop() {
	webhooks.remove(m.webhookAddr)
	if m.proc != nil {
		_ = m.proc.Stop(15 * time.Second)
	}
}

// validatorProc is a validator process and its base URL.
type validatorProc struct {
	proc *localenv.Process
	url  string
}

// startValidator starts a validator serving plain HTTP on a port of 127.0.0.1 and
// waits until it is ready (its caches synced).
func (s *sut) startValidator(extra ...string) *validatorProc {
	s.t.Helper()
	v := s.startFront("validator", validatorBin, len(s.validators)+1, extra...)
	s.validators = append(s.validators, v)
	return v
}

// startExchange starts a token exchange the same way, reading key Secrets from the
// operator's namespace.
func (s *sut) startExchange(extra ...string) *validatorProc {
	s.t.Helper()
	args := append([]string{"--namespace=" + operatorNamespace, "--metrics-bind-address=127.0.0.1:0"}, extra...)
	x := s.startFront("exchange", exchangeBin, len(s.exchanges)+1, args...)
	s.exchanges = append(s.exchanges, x)
	return x
}

// startFront starts the n-th process of a binary that serves plain HTTP on
// --listen-address and /readyz there once its caches synced, and waits for that.
func (s *sut) startFront(name, bin string, n int, extra ...string) *validatorProc {
	port, err := localenv.FreePort()
	s.g.Expect(err).NotTo(HaveOccurred())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"--insecure-http", "--listen-address=" + addr}, extra...)
	logPath := filepath.Join(s.dir, fmt.Sprintf("%s-%d.log", name, n))
	proc, err := localenv.StartProcess(name, bin, cp.Kubeconfig, logPath, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	v := &validatorProc{proc: proc, url: "http://" + addr}
	s.g.Eventually(func() int { return httpStatus(v.url + "/readyz") }).
		WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(Equal(http.StatusOK), "the %s never became ready (see %s)", name, logPath)
	return v
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitIssuerReady waits until the default issuer has a signing key.
func (s *sut) waitIssuerReady() {
	s.t.Helper()
	s.g.Expect(localenv.WaitReady(s.ctx, cp.Client, defaultIssuer(), 2*time.Minute)).To(Succeed(), "the default ClusterTokenIssuer is not Ready")
}

// rotatingToken is an APIToken of the namespace's tenant, role editor, that lives
// lifetime and stays accepted grace after it was replaced; renewBefore 0 keeps the
// default (a third of lifetime).
func rotatingToken(ns, name string, lifetime, renewBefore, grace time.Duration, format tokensv1.TokenFormat) *tokensv1.APIToken {
	rot := &tokensv1.RotationSpec{GracePeriod: &metav1.Duration{Duration: grace}}
	if renewBefore > 0 {
		rot.RenewBefore = &metav1.Duration{Duration: renewBefore}
	}
	return &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tokensv1.APITokenSpec{
			Tenant:   ns,
			Role:     "editor",
			Format:   format,
			Lifetime: metav1.Duration{Duration: lifetime},
			Rotation: rot,
		},
	}
}

// createTokens creates toks spread evenly over spread, so that their rotations
// spread too. A create refused because no webhook answered yet is tried again.
func (s *sut) createTokens(toks []*tokensv1.APIToken, spread time.Duration) {
	s.t.Helper()
	gap := spread / time.Duration(max(1, len(toks)))
	for _, tok := range toks {
		s.g.Eventually(func() error {
			err := cp.Client.Create(s.ctx, tok.DeepCopy())
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		time.Sleep(gap) // pacing, not waiting for anything
	}
}

// waitAllReady waits until every APIToken of the namespace is Ready for its current
// generation and its Secret holds its current token.
func (s *sut) waitAllReady(timeout time.Duration) {
	s.t.Helper()
	s.g.Eventually(func(g Gomega) {
		g.Expect(notReady(s.ctx, s.ns)).To(BeEmpty())
	}).WithTimeout(timeout).WithPolling(500*time.Millisecond).Should(Succeed(), "APITokens of %s are not Ready", s.ns)
}

// notReady lists the APITokens of ns that are not Ready, or whose Secret does not
// hold their current token, with why.
func notReady(ctx context.Context, ns string) []string {
	var list tokensv1.APITokenList
	if err := cp.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return []string{err.Error()}
	}
	var secrets corev1.SecretList
	if err := cp.Client.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		return []string{err.Error()}
	}
	held := map[string]string{}
	for _, sec := range secrets.Items {
		held[sec.Name] = string(sec.Data[tokensv1.SecretKeyTokenID])
	}
	var out []string
	for _, tok := range list.Items {
		switch {
		case !localenv.IsReady(&tok):
			out = append(out, tok.Name+": not Ready")
		case tok.Status.ObservedGeneration != tok.Generation:
			out = append(out, tok.Name+": generation not observed")
		case tok.Status.Current == nil || held[tok.Status.SecretName] != tok.Status.Current.TokenID:
			out = append(out, tok.Name+": the Secret does not hold the current token")
		}
	}
	return out
}

// leaseHolder is the identity holding the manager's Lease in ns, "" when none does.
func leaseHolder(ctx context.Context, ns string) string {
	var lease coordinationv1.Lease
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: leaseName}, &lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// secretToken reads the token and its ID from the Secret of an APIToken.
func secretToken(ctx context.Context, ns, name string) (id, value string, err error) {
	var sec corev1.Secret
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sec); err != nil {
		return "", "", err
	}
	id, value = string(sec.Data[tokensv1.SecretKeyTokenID]), string(sec.Data[tokensv1.SecretKeyToken])
	if id == "" || value == "" {
		return "", "", fmt.Errorf("secret %s/%s holds no token", ns, name)
	}
	return id, strings.TrimSpace(value), nil
}

// waitMints waits until the history holds at least n mints since t: the run is
// under way, and rotations happen.
func (s *sut) waitMints(h *history, since time.Time, n int, why string) {
	s.t.Helper()
	s.g.Eventually(func() int { return len(h.mintsSince(since)) }).
		WithTimeout(2*time.Minute).WithPolling(200*time.Millisecond).Should(BeNumerically(">=", n), why)
}
