// Command dev runs the whole system on one machine, with no cluster: a local
// kube-apiserver and etcd (the envtest binaries built by hack/envtest-build.sh), the
// CRDs, the admission webhook, the default ClusterTokenIssuer, the manager, the
// validator and the token exchange as processes, and a sample APIToken, which it
// validates, exchanges, and validates again in its exchanged form. It prints how to
// reach everything, then waits; Ctrl-C stops every process it started and removes its
// temporary files. With --exit-after-ready it runs the commands it printed, checks
// what each answers, and stops: the smoke test CI runs.
//
// Run it with `make dev`, or `make dev-smoke` for the smoke test.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

const operatorNamespace = "apitoken-system"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run() error {
	root := testenv.RepoRoot()
	var (
		binDir        = flag.String("bin", filepath.Join(root, "bin"), "Directory holding the manager, validator and exchange binaries.")
		stateDir      = flag.String("state", filepath.Join(root, "bin", "dev"), "Directory for the kubeconfig and the processes' logs.")
		validatorPort = flag.Int("validator-port", 8480, "Port of the validator on 127.0.0.1.")
		exchangePort  = flag.Int("exchange-port", 8481, "Port of the token exchange on 127.0.0.1.")
		exitAfter     = flag.Bool("exit-after-ready", false, "Once the sample token validated and its exchanged token too, run every command printed and stop everything (a smoke test).")
	)
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make dev`, which builds the control plane first")
	}
	validatorAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*validatorPort))
	exchangeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*exchangePort))
	// Another process on a port would answer in the validator's or the exchange's place.
	for _, p := range []struct{ name, addr, flag string }{
		{"validator", validatorAddr, "--validator-port=8490"},
		{"token exchange", exchangeAddr, "--exchange-port=8491"},
	} {
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("the %s's address %s is taken (%w): stop what listens there, or choose another port (make dev DEV_FLAGS=%s)", p.name, p.addr, err, p.flag)
		}
		if err := l.Close(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("Starting kube-apiserver and etcd")
	cp, err := localenv.Start(*stateDir)
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping kube-apiserver and etcd")
		_ = cp.Stop()
	}()
	kubeconfig, c := cp.Kubeconfig, cp.Client
	for _, ns := range []string{operatorNamespace, "acme"} {
		if err := c.Create(ctx, testenv.Namespace(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}

	wh := cp.Webhook()
	procs := &processes{dir: *stateDir}
	defer procs.stopAll()
	step("Starting the manager (log: " + filepath.Join(*stateDir, "manager.log") + ")")
	if err := procs.start(ctx, filepath.Join(*binDir, "manager"), kubeconfig,
		"--namespace="+operatorNamespace,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--webhook-host="+wh.LocalServingHost,
		"--webhook-port="+strconv.Itoa(wh.LocalServingPort),
		"--webhook-cert-dir="+wh.LocalServingCertDir,
	); err != nil {
		return err
	}
	step("Starting the validator on http://" + validatorAddr + " (log: " + filepath.Join(*stateDir, "validator.log") + ")")
	if err := procs.start(ctx, filepath.Join(*binDir, "validator"), kubeconfig,
		"--insecure-http",
		"--listen-address="+validatorAddr,
	); err != nil {
		return err
	}
	step("Starting the token exchange on http://" + exchangeAddr + " (log: " + filepath.Join(*stateDir, "exchange.log") + ")")
	if err := procs.start(ctx, filepath.Join(*binDir, "exchange"), kubeconfig,
		"--insecure-http",
		"--listen-address="+exchangeAddr,
		// No separate probe listener: the API port serves /healthz and /readyz too.
		"--metrics-bind-address=",
		"--namespace="+operatorNamespace,
	); err != nil {
		return err
	}

	step("Installing the default ClusterTokenIssuer (token exchange enabled)")
	if err := localenv.ApplyFile(ctx, c, filepath.Join(root, "config", "default-issuer", "clustertokenissuer.yaml")); err != nil {
		return err
	}
	if err := localenv.WaitReady(ctx, c, &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: tokensv1.DefaultIssuerName}}, 2*time.Minute); err != nil {
		return fmt.Errorf("the default issuer did not become Ready: %w (see %s)", err, filepath.Join(*stateDir, "manager.log"))
	}

	step("Applying the sample APIToken acme/ci-pipeline")
	sample := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: "ci-pipeline", Namespace: "acme"},
		Spec: tokensv1.APITokenSpec{
			Tenant: "acme", Role: "editor", Scopes: []string{"reports:read"},
			Lifetime:    metav1.Duration{Duration: 24 * time.Hour},
			Description: "the sample token of make dev",
		},
	}
	// The webhook may need a moment after the manager started to answer.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := c.Create(ctx, sample)
		return err == nil || apierrors.IsAlreadyExists(err), nil
	}); err != nil {
		return fmt.Errorf("creating the sample APIToken: %w", err)
	}
	if err := localenv.WaitReady(ctx, c, sample, 2*time.Minute); err != nil {
		return fmt.Errorf("the sample APIToken did not become Ready: %w (see %s)", err, filepath.Join(*stateDir, "manager.log"))
	}

	step("Validating the sample token through the validator")
	var secret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: "acme", Name: "ci-pipeline"}, &secret); err != nil {
		return err
	}
	sampleToken := string(secret.Data[tokensv1.SecretKeyToken])
	status, err := authorize(ctx, "http://"+validatorAddr, "/authorize?tenant=acme&role=viewer", sampleToken)
	if err != nil {
		return err
	}
	fmt.Printf("    GET /authorize?tenant=acme&role=viewer -> %d\n", status)
	if status != http.StatusOK {
		return fmt.Errorf("the validator refused the sample token with %d (see %s)", status, filepath.Join(*stateDir, "validator.log"))
	}

	step("Exchanging the sample token for a 10-minute one, and validating that")
	child, err := exchange(ctx, "http://"+exchangeAddr, sampleToken, 600)
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, filepath.Join(*stateDir, "exchange.log"))
	}
	fmt.Printf("    GET %s?%s=600 -> 200, token %s expiring in %ds\n", exchangeapi.PathToken, exchangeapi.ParamExpiration, child.TokenID, child.ExpiresIn)
	status, err = authorize(ctx, "http://"+validatorAddr, "/authorize?tenant=acme&role=viewer", child.Token)
	if err != nil {
		return err
	}
	fmt.Printf("    GET /authorize?tenant=acme&role=viewer with the exchanged token -> %d\n", status)
	if status != http.StatusOK {
		return fmt.Errorf("the validator refused the exchanged token with %d (see %s)", status, filepath.Join(*stateDir, "validator.log"))
	}

	setup := []string{
		"export KUBECONFIG=" + kubeconfig,
		// kubectl, built with the control plane, and the kubectl apitoken plugin.
		"export PATH=" + os.Getenv("KUBEBUILDER_ASSETS") + ":" + *binDir + ":$PATH",
	}
	steps := walkthrough("http://"+validatorAddr, "http://"+exchangeAddr)
	fmt.Println("\nThe system is up. In another terminal:")
	fmt.Println()
	for _, l := range setup {
		fmt.Println("  " + l)
	}
	for _, st := range steps {
		if st.comment != "" {
			fmt.Println("\n  # " + st.comment)
		}
		fmt.Println("  " + st.command)
	}
	fmt.Printf("\nLogs: %s\n", *stateDir)

	if *exitAfter {
		step("Running the commands above, as a smoke test")
		if err := runWalkthrough(ctx, setup, steps); err != nil {
			return err
		}
		fmt.Println("    every command answered as expected")
		return nil
	}
	fmt.Println("Press Ctrl-C to stop everything.")
	select {
	case <-ctx.Done():
	case err := <-procs.exited:
		return err
	}
	fmt.Println()
	return nil
}

func step(msg string) { fmt.Println("==> " + msg) }

// tryStep is a command of the walkthrough make dev prints. --exit-after-ready runs
// every one of them, so that each command a new user is told to type is proven.
type tryStep struct {
	// comment is printed above the command; "" for none.
	comment string
	// command is what the user types, in a shell set up as printed.
	command string
	// expect is what its output holds when it works; "" for a command that prints
	// nothing worth checking (it must still succeed).
	expect string
}

// walkthrough is the tour of the system printed once it is up; validator is the
// validator's base URL.
func walkthrough(validator, exchange string) []tryStep {
	authorize := func(query string) string {
		return `curl -sSi -H "Authorization: Bearer $TOKEN" '` + validator + `/authorize?` + query + `'`
	}
	return []tryStep{
		{"", "kubectl get clustertokenissuers", "default"},
		{"", "kubectl get apitokens -A", "ci-pipeline"},
		{"", "kubectl describe apitoken -n acme ci-pipeline", "Secret ci-pipeline holds token"},
		{"", "kubectl explain apitoken.spec.rotation", "renewBefore"},
		{"the minted token, as a pod mounting the Secret would read it",
			`TOKEN=$(kubectl get secret -n acme ci-pipeline -o jsonpath='{.data.token}' | base64 -d)`, ""},
		{"validate it through the validator: 200 with the token's identity", authorize("tenant=acme&role=viewer"), "200 OK"},
		{"another tenant: 404; a role the token does not have: 403; no token: 401", authorize("tenant=globex"), "404 Not Found"},
		{"", authorize("tenant=acme&role=admin"), "403 Forbidden"},
		{"", `curl -sSi '` + validator + `/authorize?tenant=acme'`, "401 Unauthorized"},
		{"exchange it for a token that lives 10 minutes (GET /v1/token); it is accepted only while its parent is",
			`CHILD=$(curl -sS -H "Authorization: Bearer $TOKEN" '` + exchange + `/v1/token?expiration=600' | sed -E 's/.*"token":"([^"]+)".*/\1/')`, ""},
		{"", `curl -sSi -H "Authorization: Bearer $CHILD" '` + validator + `/authorize?tenant=acme&role=viewer'`, "200 OK"},
		{"the same exchange in OAuth 2.0 Token Exchange form (RFC 8693)",
			`curl -sS ` + exchange + `/oauth2/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange -d subject_token_type=urn:ietf:params:oauth:token-type:access_token -d subject_token="$TOKEN" -d expires_in=300`, `"expires_in":300`},
		{"the kubectl plugin: expiry and last use", "kubectl apitoken list -A", "ci-pipeline"},
		{"rotate now (the previous token stays valid until it expires), then revoke",
			`kubectl annotate apitoken -n acme ci-pipeline apitoken.dev/rotate="$(date +%s)" --overwrite`, "annotated"},
		{"", `kubectl patch apitoken -n acme ci-pipeline --type=merge -p '{"spec":{"revoked":true}}'`, "patched"},
		{"", "kubectl wait -n acme apitoken/ci-pipeline --for=condition=Revoked --timeout=1m", "condition met"},
		{"the revoked token: 401", authorize("tenant=acme&role=viewer"), "401 Unauthorized"},
		{"and every token exchanged from it", `curl -sSi -H "Authorization: Bearer $CHILD" '` + validator + `/authorize?tenant=acme&role=viewer'`, "401 Unauthorized"},
	}
}

// runWalkthrough runs the walkthrough in one shell, set up as printed, and fails at
// the first command that fails or does not print what it should. It prints what a
// failing command printed; none of the commands prints the token.
func runWalkthrough(ctx context.Context, setup []string, steps []tryStep) error {
	var script strings.Builder
	script.WriteString("set -eu -o pipefail\n")
	for _, l := range setup {
		script.WriteString(l + "\n")
	}
	for i, st := range steps {
		if st.expect == "" {
			// Run in this shell: the command may set a variable for the next ones.
			fmt.Fprintf(&script, "%s || { echo %s; exit 1; }\n", st.command, shellQuote(fmt.Sprintf("step %d failed: %s", i+1, st.command)))
			continue
		}
		fmt.Fprintf(&script, "out=$(%s 2>&1) || { echo %s; echo \"$out\"; exit 1; }\n", st.command, shellQuote(fmt.Sprintf("step %d failed: %s", i+1, st.command)))
		fmt.Fprintf(&script, "case \"$out\" in *%s*) ;; *) echo %s; echo \"$out\"; exit 1;; esac\n",
			shellQuote(st.expect), shellQuote(fmt.Sprintf("step %d did not print %q: %s", i+1, st.expect, st.command)))
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("the walkthrough failed: %w\n%s", err, out)
	}
	return nil
}

// shellQuote quotes s for bash, in single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// processes are the children started by dev.
type processes struct {
	dir    string
	procs  []*localenv.Process
	exited chan error
}

func (p *processes) start(ctx context.Context, bin, kubeconfig string, args ...string) error {
	if p.exited == nil {
		p.exited = make(chan error, 4)
	}
	name := filepath.Base(bin)
	logPath := filepath.Join(p.dir, name+".log")
	_ = os.Remove(logPath) // a fresh log per run
	proc, err := localenv.StartProcess(name, bin, kubeconfig, logPath, args...)
	if err != nil {
		return fmt.Errorf("%w (run `make build` first)", err)
	}
	p.procs = append(p.procs, proc)
	go func() {
		<-proc.Done()
		if ctx.Err() == nil {
			_, err := proc.Exited()
			p.exited <- fmt.Errorf("%s exited: %w (see %s)", name, err, logPath)
		}
	}()
	return nil
}

func (p *processes) stopAll() {
	for _, proc := range p.procs {
		_ = proc.Signal(syscall.SIGTERM)
	}
	for _, proc := range p.procs {
		_ = proc.Stop(10 * time.Second)
	}
}

func authorize(ctx context.Context, base, query, tok string) (int, error) {
	if err := waitReady(ctx, base, "validator"); err != nil {
		return 0, err
	}
	status, _, err := get(ctx, base+query, tok)
	return status, err
}

// exchange asks the exchange at base for a token of tok lasting seconds. The exchange
// may learn of the sample token or of the issuer's key a moment after the validator
// did, so a 401 or a 503 is asked again, once a second (each attempt spends from the
// token's exchange budget, 60 a minute) for 30s; the last refusal is reported, with
// the exchange's message.
func exchange(ctx context.Context, base, tok string, seconds int) (*exchangeapi.TokenResponse, error) {
	if err := waitReady(ctx, base, "exchange"); err != nil {
		return nil, err
	}
	url := base + exchangeapi.PathToken + "?" + exchangeapi.ParamExpiration + "=" + strconv.Itoa(seconds)
	var (
		status  int
		body    []byte
		lastErr error
	)
	_ = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		st, b, err := get(ctx, url, tok)
		if err != nil {
			if ctx.Err() == nil { // not the poll's own deadline cutting the request short
				lastErr = err
			}
			return false, nil
		}
		status, body, lastErr = st, b, nil
		return st != http.StatusUnauthorized && st != http.StatusServiceUnavailable, nil
	})
	if lastErr != nil {
		return nil, lastErr
	}
	if status == 0 {
		return nil, errors.New("the exchange did not answer within 30s")
	}
	if status != http.StatusOK {
		var e exchangeapi.Error
		_ = json.Unmarshal(body, &e)
		return nil, fmt.Errorf("the exchange refused the sample token with %d %s: %s", status, e.Error, e.Message)
	}
	var out exchangeapi.TokenResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("the exchange's answer: %w", err)
	}
	if out.Token == "" || out.ExpiresIn != int64(seconds) {
		return nil, fmt.Errorf("the exchange answered a token of %ds (empty: %t), want %ds", out.ExpiresIn, out.Token == "", seconds)
	}
	return &out, nil
}

// waitReady waits until the component at base answers /readyz: its caches synced.
func waitReady(ctx context.Context, base, component string) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		r, err := http.Get(base + "/readyz")
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
		return r.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("the %s never became ready: %w", component, err)
	}
	return nil
}

// get sends a GET with tok as the Bearer credential and returns the answer.
func get(ctx context.Context, url, tok string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}
