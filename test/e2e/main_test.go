package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// operatorNamespace holds the signing keys.
const operatorNamespace = "apitoken-system"

// The suite's shared state, set by TestMain. The tests run one after the other: each
// starts its own manager and validator processes and works in its own namespace.
var (
	cp *localenv.ControlPlane
	// managerBin, validatorBin and exchangeBin are the binaries under test, built by
	// TestMain.
	managerBin, validatorBin, exchangeBin string
	// webhooks stands in for the webhook's Service: the API server calls it, and it
	// forwards to the webhook server of a live manager.
	webhooks *webhookService
	// workDir holds the binaries, the kubeconfig and every process's log.
	workDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests' own watches log through controller-runtime; what matters is in the
	// processes' logs.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "apitoken-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	code := setUpAndRun(m)
	if code != 0 || os.Getenv("E2E_KEEP_LOGS") != "" {
		fmt.Fprintf(os.Stderr, "e2e: logs of the processes are kept in %s\n", workDir)
	} else {
		_ = os.RemoveAll(workDir)
	}
	return code
}

func setUpAndRun(m *testing.M) int {
	p := loadParams()
	fmt.Fprintf(os.Stderr, "e2e: seed %d (set E2E_SEED to replay); race detector in the processes: %v\n", p.seed, raceEnabled)
	start := time.Now()
	var err error
	bins, err := localenv.Binaries(filepath.Join(workDir, "bin"), raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries:", err)
		return 1
	}
	managerBin, validatorBin, exchangeBin = bins.Manager, bins.Validator, bins.Exchange
	fmt.Fprintf(os.Stderr, "e2e: built the manager, the validator and the exchange in %s\n", time.Since(start).Round(time.Second))

	cp, err = localenv.Start(workDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the control plane:", err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.Client.Create(ctx, testenv.Namespace(operatorNamespace)); err != nil && !apierrors.IsAlreadyExists(err) {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// The issuer becomes Ready once the first test's manager gave it a key.
	if err := localenv.ApplyFile(ctx, cp.Client, filepath.Join(testenv.RepoRoot(), "config", "default-issuer", "clustertokenissuer.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	webhooks, err = startWebhookService(cp.WebhookAddress())
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the webhook service:", err)
		return 1
	}
	defer webhooks.Close()
	return m.Run()
}

// defaultIssuer is the ClusterTokenIssuer every APIToken of the tests uses.
func defaultIssuer() *tokensv1.ClusterTokenIssuer {
	return &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: tokensv1.DefaultIssuerName}}
}
