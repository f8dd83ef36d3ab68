// Command dev runs the whole system on one machine, with no cluster: a local
// kube-apiserver and etcd (the envtest binaries built by hack/envtest-build.sh), the
// CRDs, the admission webhook, the default ClusterTokenIssuer, the manager, the
// validator and the token exchange as processes, and a sample APIToken, which it
// validates, exchanges, and validates again in its exchanged form. It prints how to
// reach everything, then waits; Ctrl-C stops every process it started and removes its
// temporary files.
//
// Run it with `make dev`.
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
	"os/signal"
	"path/filepath"
	"strconv"
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
		exitAfter     = flag.Bool("exit-after-ready", false, "Stop everything once the sample token validated, was exchanged, and its exchanged token validated (a smoke test).")
	)
	flag.Parse()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make dev`, which builds the control plane first")
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
	validatorAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*validatorPort))
	step("Starting the validator on http://" + validatorAddr + " (log: " + filepath.Join(*stateDir, "validator.log") + ")")
	if err := procs.start(ctx, filepath.Join(*binDir, "validator"), kubeconfig,
		"--insecure-http",
		"--listen-address="+validatorAddr,
	); err != nil {
		return err
	}
	exchangeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*exchangePort))
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

	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	fmt.Printf(`
The system is up. In another terminal:

  export KUBECONFIG=%[1]s
  alias kubectl=%[2]s
  kubectl get clustertokenissuers
  kubectl get apitokens -A
  kubectl explain apitoken.spec.rotation

  # the minted token, as a pod mounting the Secret would read it
  TOKEN=$(kubectl get secret -n acme ci-pipeline -o jsonpath='{.data.token}' | base64 -d)

  # validate it through the validator: 200 with the token's identity
  curl -i -H "Authorization: Bearer $TOKEN" 'http://%[3]s/authorize?tenant=acme&role=viewer'
  # another tenant: 404; a role the token does not have: 403; no token: 401
  curl -i -H "Authorization: Bearer $TOKEN" 'http://%[3]s/authorize?tenant=globex'
  curl -i -H "Authorization: Bearer $TOKEN" 'http://%[3]s/authorize?tenant=acme&role=admin'

  # exchange it for a token that lives 10 minutes (GET /v1/token), and validate that;
  # it is accepted only while its parent is: revoke the parent and both are refused
  CHILD=$(curl -s -H "Authorization: Bearer $TOKEN" 'http://%[5]s/v1/token?expiration=600' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -i -H "Authorization: Bearer $CHILD" 'http://%[3]s/authorize?tenant=acme&role=viewer'
  # the same exchange in OAuth 2.0 Token Exchange form (RFC 8693)
  curl -s http://%[5]s/oauth2/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
    -d subject_token_type=urn:ietf:params:oauth:token-type:access_token -d subject_token="$TOKEN" -d expires_in=600

  # rotate now, or revoke
  kubectl annotate apitoken -n acme ci-pipeline apitoken.dev/rotate="$(date +%%s)" --overwrite
  kubectl patch apitoken -n acme ci-pipeline --type=merge -p '{"spec":{"revoked":true}}'

Logs: %[4]s
Press Ctrl-C to stop everything.
`, kubeconfig, kubectl, validatorAddr, *stateDir, exchangeAddr)

	if *exitAfter {
		return nil
	}
	select {
	case <-ctx.Done():
	case err := <-procs.exited:
		return err
	}
	fmt.Println()
	return nil
}

func step(msg string) { fmt.Println("==> " + msg) }

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
