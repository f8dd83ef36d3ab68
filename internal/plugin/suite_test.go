package plugin

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// update rewrites the golden files: go test ./internal/plugin -update.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	// env is the control plane of every test of the package.
	env *testenv.Env
	// kubeconfig is a kubeconfig file for env, which the commands get through
	// --kubeconfig like a user's.
	kubeconfig string
	// now is the fake time of the commands of the golden tests.
	now = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	testenv.Main(m, &env, func(e *testenv.Env) error {
		dir, err := os.MkdirTemp("", "kubectl-apitoken-test")
		if err != nil {
			return err
		}
		e.Cleanup(func() { _ = os.RemoveAll(dir) })
		kubeconfig = filepath.Join(dir, "kubeconfig")
		return writeKubeconfig(kubeconfig)
	})
}

// writeKubeconfig writes env's connection as a kubeconfig with a default namespace.
func writeKubeconfig(path string) error {
	c := env.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "acme"}
	cfg.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*cfg, path)
}

// result is what one command printed.
type result struct {
	out, errOut string
	err         error
}

// run runs kubectl-apitoken with args and stdin at the fake time now.
func run(stdin string, args ...string) result {
	return runAt(clocktesting.NewFakePassiveClock(now), stdin, args...)
}

// runAt runs kubectl-apitoken with the clock clk.
func runAt(clk clock.PassiveClock, stdin string, args ...string) result {
	var out, errOut bytes.Buffer
	cmd := NewCommand(&Options{
		IOStreams:   genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut},
		ConfigFlags: genericclioptions.NewConfigFlags(false),
		Clock:       clk,
	})
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// mustRun runs a command that must succeed and returns its output.
func mustRun(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := run(stdin, args...)
	if r.err != nil {
		t.Fatalf("kubectl apitoken %s: %v\nstderr: %s", strings.Join(args, " "), r.err, r.errOut)
	}
	return r.out
}

// volatile matches what the API server sets differently on every run.
var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`("?uid"?: )"?[0-9a-f-]{36}"?`), `$1"<uid>"`},
	{regexp.MustCompile(`("?resourceVersion"?: )"[0-9]+"`), `$1"<rv>"`},
	{regexp.MustCompile(`("?creationTimestamp"?: )"[^"]+"`), `$1"<created>"`},
}

// normalize replaces what differs between runs (generated keys, UIDs, resource
// versions) with placeholders.
func normalize(s string, replace ...string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return strings.NewReplacer(replace...).Replace(s)
}

// golden compares got with testdata/<name>.golden, or rewrites it with -update.
func golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run with -update to create it): %v", path, err)
	}
	NewWithT(t).Expect(got).To(Equal(string(want)), "output differs from %s; run with -update if the change is intended", path)
}
