// Command dev runs the whole system on one machine, with no cluster: a local
// kube-apiserver and etcd (the envtest binaries built by hack/envtest-build.sh), the
// CRDs, the admission webhook, the default ClusterTokenIssuer, the manager and the
// validator as processes, and a sample APIToken. It prints how to reach everything,
// then waits; Ctrl-C stops every process it started and removes its temporary files.
// With --exit-after-ready it runs the commands it printed, checks what each answers,
// and stops: the smoke test CI runs.
//
// Run it with `make dev`, or `make dev-smoke` for the smoke test.
package main

import (
	"context"
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
		binDir        = flag.String("bin", filepath.Join(root, "bin"), "Directory holding the manager and validator binaries.")
		stateDir      = flag.String("state", filepath.Join(root, "bin", "dev"), "Directory for the kubeconfig and the processes' logs.")
		validatorPort = flag.Int("validator-port", 8480, "Port of the validator on 127.0.0.1.")
		exitAfter     = flag.Bool("exit-after-ready", false, "Once the sample token validated, run every command printed and stop everything (a smoke test).")
	)
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make dev`, which builds the control plane first")
	}
	validatorAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*validatorPort))
	// Another process on the port would answer in the validator's place.
	if l, err := net.Listen("tcp", validatorAddr); err != nil {
		return fmt.Errorf("the validator's address %s is taken (%w): stop what listens there, or choose another port (make dev DEV_FLAGS=--validator-port=8481)", validatorAddr, err)
	} else if err := l.Close(); err != nil {
		return err
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

	step("Installing the default ClusterTokenIssuer")
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
	status, err := authorize(ctx, "http://"+validatorAddr, "/authorize?tenant=acme&role=viewer", string(secret.Data[tokensv1.SecretKeyToken]))
	if err != nil {
		return err
	}
	fmt.Printf("    GET /authorize?tenant=acme&role=viewer -> %d\n", status)
	if status != http.StatusOK {
		return fmt.Errorf("the validator refused the sample token with %d (see %s)", status, filepath.Join(*stateDir, "validator.log"))
	}

	setup := []string{
		"export KUBECONFIG=" + kubeconfig,
		// kubectl, built with the control plane, and the kubectl apitoken plugin.
		"export PATH=" + os.Getenv("KUBEBUILDER_ASSETS") + ":" + *binDir + ":$PATH",
	}
	steps := walkthrough("http://" + validatorAddr)
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
func walkthrough(validator string) []tryStep {
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
		{"the kubectl plugin: expiry and last use", "kubectl apitoken list -A", "ci-pipeline"},
		{"rotate now (the previous token stays valid until it expires), then revoke",
			`kubectl annotate apitoken -n acme ci-pipeline apitoken.dev/rotate="$(date +%s)" --overwrite`, "annotated"},
		{"", `kubectl patch apitoken -n acme ci-pipeline --type=merge -p '{"spec":{"revoked":true}}'`, "patched"},
		{"", "kubectl wait -n acme apitoken/ci-pipeline --for=condition=Revoked --timeout=1m", "condition met"},
		{"the revoked token: 401", authorize("tenant=acme&role=viewer"), "401 Unauthorized"},
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
	// The validator answers once its caches synced.
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
		return 0, fmt.Errorf("the validator never became ready: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+query, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
