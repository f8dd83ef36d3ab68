package v1alpha1_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var configDir = filepath.Join(testenv.RepoRoot(), "config")

// The Argo CD health checks of config/health, one file per kind.
var argoChecks = map[string]string{
	"APIToken":           "argocd-apitoken.lua",
	"ClusterTokenIssuer": "argocd-clustertokenissuer.lua",
}

func argoCheckPath(kind string) string {
	return filepath.Join(configDir, "health", argoChecks[kind])
}

// argoHealth runs an Argo CD health check under the real Lua interpreter, with obj as
// the global `obj` the way Argo CD sets it, and returns the status and message.
func argoHealth(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	lua, err := exec.LookPath("lua5.4")
	if err != nil {
		t.Fatalf("lua5.4 is not installed: the Argo CD health checks run under it (Debian: apt-get install lua5.4; .ci/run installs it): %v", err)
	}
	prog := "obj = " + luaLiteral(obj) + "\n" + `
local hs = assert(loadfile(arg[1]))()
io.write(tostring(hs.status), "\0", tostring(hs.message))
`
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(lua, "-", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(prog), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lua5.4 %s: %v\n%s", filepath.Base(script), err, stderr.String())
	}
	st, msg, _ := strings.Cut(stdout.String(), "\x00")
	return st, msg
}

// luaLiteral writes a JSON value as a Lua constructor: objects become tables keyed by
// field name, arrays tables indexed from 1, as Argo CD converts them.
func luaLiteral(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case bool:
		return strconv.FormatBool(v)
	case string:
		return luaString(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		b.WriteString("{")
		for _, k := range keys {
			fmt.Fprintf(&b, "[%s] = %s, ", luaString(k), luaLiteral(v[k]))
		}
		b.WriteString("}")
		return b.String()
	case []any:
		var b strings.Builder
		b.WriteString("{")
		for _, e := range v {
			b.WriteString(luaLiteral(e) + ", ")
		}
		b.WriteString("}")
		return b.String()
	}
	panic(fmt.Sprintf("no Lua form for %T", v))
}

// luaString quotes s, escaping every byte outside printable ASCII in decimal, which
// every Lua version reads the same way.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03d", c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestLuaLiteral(t *testing.T) {
	g := NewWithT(t)
	script := filepath.Join(t.TempDir(), "echo.lua")
	g.Expect(os.WriteFile(script, []byte(`return {status = obj.s .. "|" .. #obj.list .. "|" .. obj.list[2].n .. "|" .. tostring(obj.flag) .. "|" .. tostring(obj.none), message = obj.m}`), 0o600)).To(Succeed())
	st, msg := argoHealth(t, script, map[string]any{
		"s":    `quote " backslash \ newline` + "\n" + "é",
		"list": []any{"a", map[string]any{"n": int64(7)}},
		"flag": true,
		"none": nil,
		"m":    "tab\tend",
	})
	g.Expect(st).To(Equal(`quote " backslash \ newline` + "\n" + "é|2|7|true|nil"))
	g.Expect(msg).To(Equal("tab\tend"))
}

// TestArgoCDHealthAPIToken runs the Argo CD health check of docs/health-checks.md
// against an APIToken in every state, as the controller writes it.
func TestArgoCDHealthAPIToken(t *testing.T) {
	want := map[string]argoWant{
		"created, no status yet":               {"Progressing", "Waiting for the operator"},
		"minting, retried after an error":      {"Progressing", "writing Secret ci-pipeline: Internal error occurred: etcdserver: request timed out"},
		"Ready":                                {"Healthy", "Secret ci-pipeline holds token 01JQ3Z8W5X7K2M4N6P8R0T2V4Y, valid until 2026-07-31T11:00:00Z"},
		"Ready, written by an earlier version": {"Healthy", "Secret ci-pipeline holds token 01JQ3Z8W5X7K2M4N6P8R0T2V4Y, valid until 2026-07-31T11:00:00Z"},
		"edited, not yet served":               {"Progressing", "Waiting for the operator"},
		"Stalled when created":                 {"Degraded", "ClusterTokenIssuer default does not exist"},
		"Stalled after an edit":                {"Degraded", "Secret ci-pipeline already exists and is not managed by this APIToken; it is left alone"},
		"Expired":                              {"Degraded", "Token 01JQ3Z8W5X7K2M4N6P8R0T2V4Y expired at 2026-07-01T11:00:00Z and rotation is disabled"},
		"Revoked":                              {"Suspended", "All tokens of this APIToken are revoked"},
	}
	forEachState(t, tokenStates(), want, expectArgoHealth("APIToken"))
}

func TestArgoCDHealthClusterTokenIssuer(t *testing.T) {
	want := map[string]argoWant{
		"created, no status yet": {"Progressing", "Waiting for a signing key"},
		"Ready":                  {"Healthy", "Signing key kid-1 (ES256) signs new tokens; next rotation at 2026-09-28T12:00:00Z."},
		"Ready after losing keys": {"Healthy", "Signing key kid-1 (ES256) signs new tokens; next rotation at 2026-09-28T12:00:00Z. " +
			"The private keys kid-0 are missing or corrupt in Secret apitoken-system/apitoken-issuer-default-keys: they were dropped from the JWKS, so tokens they signed no longer verify and are re-minted."},
		"Stalled: invalid policy": {"Degraded", "The spec cannot be served: role admin includes itself through editor"},
	}
	forEachState(t, issuerStates(), want, expectArgoHealth("ClusterTokenIssuer"))
}

// argoWant is the health Argo CD shows.
type argoWant struct{ status, message string }

func expectArgoHealth(kind string) func(*testing.T, *unstructured.Unstructured, argoWant) {
	return func(t *testing.T, obj *unstructured.Unstructured, w argoWant) {
		st, msg := argoHealth(t, argoCheckPath(kind), obj.Object)
		NewWithT(t).Expect([]string{st, msg}).To(Equal([]string{w.status, w.message}))
	}
}

// TestArgoCDHealthChecksInTheDocs: the argocd-cm of docs/health-checks.md holds the
// scripts of config/health as they are, so what users copy is what is tested.
func TestArgoCDHealthChecksInTheDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "health-checks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for kind, file := range argoChecks {
		t.Run(kind, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(configDir, "health", file))
			if err != nil {
				t.Fatal(err)
			}
			NewWithT(t).Expect(yamlBlock(string(doc), "resource.customizations.health.tokens.apitoken.dev_"+kind+": |")).To(Equal(string(want)),
				"docs/health-checks.md and config/health/%s differ", file)
		})
	}
}

// yamlBlock returns the literal block scalar that follows the line ending in key,
// without its indentation; "" when there is none.
func yamlBlock(doc, key string) string {
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if !strings.HasSuffix(l, key) {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " ")) + 2
		var b strings.Builder
		for _, body := range lines[i+1:] {
			if strings.TrimSpace(body) != "" && !strings.HasPrefix(body, strings.Repeat(" ", indent)) {
				break
			}
			b.WriteString(strings.TrimPrefix(body, strings.Repeat(" ", indent)) + "\n")
		}
		return strings.TrimRight(b.String(), "\n") + "\n"
	}
	return ""
}

// TestFluxHealth computes what Flux sees without healthCheckExprs: kstatus, the
// library Flux's wait and healthChecks use, on every state docs/health-checks.md lists.
func TestFluxHealth(t *testing.T) {
	tokens := map[string]status.Status{
		"created, no status yet":               status.CurrentStatus,
		"minting, retried after an error":      status.InProgressStatus,
		"Ready":                                status.CurrentStatus,
		"Ready, written by an earlier version": status.CurrentStatus,
		"edited, not yet served":               status.InProgressStatus,
		"Stalled when created":                 status.FailedStatus,
		"Stalled after an edit":                status.FailedStatus,
		"Expired":                              status.InProgressStatus,
		"Revoked":                              status.InProgressStatus,
	}
	t.Run("APIToken", func(t *testing.T) { forEachState(t, tokenStates(), tokens, expectKstatus) })
	issuers := map[string]status.Status{
		"created, no status yet":  status.CurrentStatus,
		"Ready":                   status.CurrentStatus,
		"Ready after losing keys": status.CurrentStatus,
		"Stalled: invalid policy": status.FailedStatus,
	}
	t.Run("ClusterTokenIssuer", func(t *testing.T) { forEachState(t, issuerStates(), issuers, expectKstatus) })
}

func expectKstatus(t *testing.T, obj *unstructured.Unstructured, want status.Status) {
	res, err := status.Compute(obj)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	NewWithT(t).Expect(res.Status).To(Equal(want), res.Message)
}
