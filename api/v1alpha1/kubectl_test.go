package v1alpha1_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// kubectl runs the kubectl that hack/envtest-build.sh builds next to kube-apiserver,
// as an admin of the test API server, with a discovery cache of its own.
type kubectl struct {
	bin        string
	kubeconfig string
	cacheDir   string
}

func newKubectl(t *testing.T) *kubectl {
	t.Helper()
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no kubectl in $KUBEBUILDER_ASSETS (hack/envtest-build.sh builds it with kube-apiserver): %v", err)
	}
	raw, err := env.KubeConfig("kubectl-user")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubectl{bin: bin, kubeconfig: kubeconfig, cacheDir: filepath.Join(dir, "cache")}
}

// run runs kubectl with args and returns its output, failing the test if it fails.
func (k *kubectl) run(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

var tableColumn = regexp.MustCompile(`\S+( \S+)*`)

// table reads kubectl's table output into its header and rows. kubectl aligns the
// columns, so each cell starts where its column name does; a column name may hold a
// single space ("TOKEN ID"), and an empty cell is "".
func table(out string) (header []string, rows [][]string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var starts []int
	for _, loc := range tableColumn.FindAllStringIndex(lines[0], -1) {
		header = append(header, lines[0][loc[0]:loc[1]])
		starts = append(starts, loc[0])
	}
	for _, line := range lines[1:] {
		row := make([]string, len(starts))
		for i, start := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			if start < end {
				row[i] = strings.TrimSpace(line[start:end])
			}
		}
		rows = append(rows, row)
	}
	return header, rows
}

var age = MatchRegexp(`^[0-9]+[smhd]`)

// TestKubectl runs the real kubectl against the CRDs as a user would type it: the
// singular name with an object name, the plural across namespaces (the printer
// columns), the short names, and the category that lists both kinds.
func TestKubectl(t *testing.T) {
	ctx := context.Background()
	k := newKubectl(t)

	// One served token, one stalled, in two namespaces, and an issuer; shaped as the
	// controllers write them, without the finalizer no controller here would remove.
	issuer := issuerReady(newIssuer())
	issuer.Name = "kubectl-issuer"
	ready := tokenStateNamed(t, "Ready")
	ready.Namespace = "kubectl-acme"
	stalledTok := tokenStateNamed(t, "Stalled when created")
	stalledTok.Namespace, stalledTok.Name = "kubectl-globex", "reports"
	stalledTok.Spec.Tenant, stalledTok.Spec.Role = "globex", "viewer"
	for _, ns := range []string{ready.Namespace, stalledTok.Namespace} {
		ensureNamespace(t, ns)
	}
	createWithStatus(ctx, t, issuer)
	for _, tok := range []*tokensv1.APIToken{ready, stalledTok} {
		tok.Finalizers = nil
		createWithStatus(ctx, t, tok)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, issuer) })

	t.Run("get apitoken NAME", func(t *testing.T) {
		g := NewWithT(t)
		header, rows := table(k.run(t, "get", "apitoken", "ci-pipeline", "-n", "kubectl-acme"))
		g.Expect(header).To(Equal([]string{"NAME", "READY", "TENANT", "ROLE", "FORMAT", "EXPIRES", "AGE"}))
		g.Expect(rows).To(HaveLen(1))
		g.Expect(rows[0][:6]).To(Equal([]string{"ci-pipeline", "True", "acme", "editor", "JWT", "2026-07-31T11:00:00Z"}))
		g.Expect(rows[0][6]).To(age)
	})

	t.Run("get apitoken in a namespace lists APITokens only", func(t *testing.T) {
		g := NewWithT(t)
		out := k.run(t, "get", "apitoken", "-n", "kubectl-acme", "-o", "name")
		g.Expect(strings.Fields(out)).To(Equal([]string{"apitoken.tokens.apitoken.dev/ci-pipeline"}))
	})

	t.Run("get apitokens -A", func(t *testing.T) {
		g := NewWithT(t)
		header, rows := table(k.run(t, "get", "apitokens", "-A"))
		g.Expect(header).To(Equal([]string{"NAMESPACE", "NAME", "READY", "TENANT", "ROLE", "FORMAT", "EXPIRES", "AGE"}))
		mine := ours(rows)
		g.Expect(mine).To(HaveLen(2))
		g.Expect(mine[0][:7]).To(Equal([]string{"kubectl-acme", "ci-pipeline", "True", "acme", "editor", "JWT", "2026-07-31T11:00:00Z"}))
		g.Expect(mine[1][:7]).To(Equal([]string{"kubectl-globex", "reports", "False", "globex", "viewer", "", ""}))
		g.Expect(mine[0][7]).To(age)
	})

	t.Run("get apitokens -A -o wide", func(t *testing.T) {
		g := NewWithT(t)
		header, rows := table(k.run(t, "get", "apitokens", "-A", "-o", "wide"))
		g.Expect(header).To(Equal([]string{"NAMESPACE", "NAME", "READY", "TENANT", "ROLE", "FORMAT", "EXPIRES", "AGE", "MEMBERSHIPS", "TOKEN ID", "REASON"}))
		mine := ours(rows)
		g.Expect(mine).To(HaveLen(2))
		// Single-tenant tokens: no memberships.
		g.Expect(mine[0][8:]).To(Equal([]string{"", "01JQ3Z8W5X7K2M4N6P8R0T2V4Y", tokensv1.ReasonMinted}))
		g.Expect(mine[1][8:]).To(Equal([]string{"", "", tokensv1.ReasonIssuerNotFound}))
	})

	t.Run("short names", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(strings.Fields(k.run(t, "get", "apitok", "-n", "kubectl-acme", "-o", "name"))).To(Equal([]string{"apitoken.tokens.apitoken.dev/ci-pipeline"}))
		header, rows := table(k.run(t, "get", "cti", "kubectl-issuer"))
		g.Expect(header).To(Equal([]string{"NAME", "READY", "ISSUER", "ALGORITHM", "AGE"}))
		g.Expect(rows).To(HaveLen(1))
		g.Expect(rows[0][:4]).To(Equal([]string{"kubectl-issuer", "True", "https://apitoken-validator.apitoken-system.svc", "ES256"}))
	})

	t.Run("get apitoken-operator lists both kinds", func(t *testing.T) {
		g := NewWithT(t)
		out := k.run(t, "get", "apitoken-operator", "-A", "-o", "name")
		g.Expect(strings.Fields(out)).To(ContainElements(
			"apitoken.tokens.apitoken.dev/ci-pipeline",
			"apitoken.tokens.apitoken.dev/reports",
			"clustertokenissuer.tokens.apitoken.dev/kubectl-issuer",
		))
	})

	t.Run("describe apitoken NAME", func(t *testing.T) {
		g := NewWithT(t)
		out := k.run(t, "describe", "apitoken", "ci-pipeline", "-n", "kubectl-acme")
		g.Expect(out).To(MatchRegexp(`(?m)^Name:\s+ci-pipeline$`))
		g.Expect(out).To(MatchRegexp(`(?m)^Namespace:\s+kubectl-acme$`))
		g.Expect(out).To(MatchRegexp(`(?m)^Kind:\s+APIToken$`))
		g.Expect(out).To(MatchRegexp(`(?m)^\s+Tenant:\s+acme$`))
		g.Expect(out).To(ContainSubstring(readyMessage(ready)))
		g.Expect(out).NotTo(ContainSubstring("ClusterTokenIssuer"))
	})

	t.Run("delete apitoken NAME", func(t *testing.T) {
		g := NewWithT(t)
		out := k.run(t, "delete", "apitoken", "reports", "-n", "kubectl-globex")
		g.Expect(out).To(ContainSubstring(`apitoken.tokens.apitoken.dev "reports" deleted`))
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(stalledTok), &tokensv1.APIToken{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the APIToken is still there: %v", err)
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(issuer), &tokensv1.ClusterTokenIssuer{})).To(Succeed(), "the issuer was deleted too")
	})
}

// ours keeps the rows of this test's namespaces: other tests of the package share the
// API server.
func ours(rows [][]string) [][]string {
	var out [][]string
	for _, r := range rows {
		if strings.HasPrefix(r[0], "kubectl-") {
			out = append(out, r)
		}
	}
	return out
}

// createWithStatus creates obj and then writes its status, as the controller would
// after a pass. The fixtures' conditions are for generation 1, which a new object has.
func createWithStatus(ctx context.Context, t *testing.T, obj client.Object) {
	t.Helper()
	g := NewWithT(t)
	want := obj.DeepCopyObject().(client.Object)
	obj.SetGeneration(0)
	obj.SetCreationTimestamp(metav1.Time{})
	g.Expect(env.Client.Create(ctx, obj)).To(Succeed())
	g.Expect(obj.GetGeneration()).To(BeEquivalentTo(1))
	switch o := obj.(type) {
	case *tokensv1.APIToken:
		o.Status = want.(*tokensv1.APIToken).Status
	case *tokensv1.ClusterTokenIssuer:
		o.Status = want.(*tokensv1.ClusterTokenIssuer).Status
	}
	g.Expect(env.Client.Status().Update(ctx, obj)).To(Succeed())
}
