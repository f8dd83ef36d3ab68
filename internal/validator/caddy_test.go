package validator

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// caddyfile puts the validator in front of an upstream the way docs/caddy-forward-auth.md
// tells users to: forward_auth to /authorize with the requirement in the query (acme)
// or in a header (globex), the client's own identity and requirement headers removed,
// and the identity headers that /authorize always sends copied to the upstream (Caddy
// 2.6 would copy one the answer lacks as its placeholder's text).
const caddyfile = `{
	admin off
	auto_https off
}

http://127.0.0.1:%[1]d {
	handle /ready {
		respond 204
	}

	route /acme/* {
		request_header -X-Token-Id
		request_header -X-Token-Tenant
		request_header -X-Token-Sub-Tenant
		request_header -X-Token-Role
		request_header -X-Token-Subject
		request_header -X-Token-Scopes
		request_header -X-Token-Parent-Id
		forward_auth %[3]s {
			uri /authorize?tenant=acme&role=editor
			header_up -X-Required-Tenant
			header_up -X-Required-Sub-Tenant
			header_up -X-Required-Role
			copy_headers X-Token-Id X-Token-Tenant X-Token-Role X-Token-Subject
		}
		reverse_proxy %[2]s
	}

	route /globex/* {
		forward_auth %[3]s {
			uri /authorize
			header_up X-Required-Tenant globex
			header_up -X-Required-Sub-Tenant
			header_up -X-Required-Role
		}
		reverse_proxy %[2]s
	}
}
`

// findCaddy looks in PATH and where Debian puts caddy.
func findCaddy() (string, error) {
	if p, err := exec.LookPath("caddy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/caddy"); err == nil {
		return "/usr/bin/caddy", nil
	}
	return "", fmt.Errorf("caddy not found in PATH or /usr/bin: install it to run this test (apt-get install -y caddy); CI installs it")
}

// startCaddy runs caddy in the foreground with caddyfile until the test ends.
func startCaddy(t *testing.T, upstream, validator string) string {
	bin, err := findCaddy()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, fmt.Appendf(nil, caddyfile, port, upstream, validator), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	// Caddy keeps its state under HOME and the XDG directories: the test's own.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	runProxy(t, "caddy", cmd, syscall.SIGTERM, logPath, base)
	return base
}

// TestCaddyForwardAuth puts a real Caddy with forward_auth between real HTTP clients
// and a test upstream: the validator's answers reach the client as they are (a 404 and
// a 429 included, which nginx cannot pass), refused requests never reach the
// upstream, accepted ones arrive with the token's identity and without the headers a
// client forged, and the audit line of each names the APIToken, the client Caddy saw
// and the original method and URI Caddy passed.
func TestCaddyForwardAuth(t *testing.T) {
	h := start(t, Options{TokenHeaders: []string{"X-Api-Key"}, ClientIPHeader: validatorapi.HeaderForwardedFor, TrustedProxies: loopbackProxy,
		Limits: RateLimits{FailureRate: 0.1, FailureBurst: 2}})
	iss := h.issuer(token.ES256, true)
	editor := h.apiToken(iss, tokenSpec{})
	viewer := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	h.waitIndexed(editor)
	h.waitIndexed(viewer)

	type seen struct{ Path, ID, Role, SubTenant, ForwardedFor string }
	var (
		mu      sync.Mutex
		reached []seen
	)
	reset := func() {
		mu.Lock()
		defer mu.Unlock()
		reached = nil
	}
	got := func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return reached
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, seen{r.URL.Path, r.Header.Get("X-Token-Id"), r.Header.Get("X-Token-Role"), r.Header.Get("X-Token-Sub-Tenant"), r.Header.Get("X-Forwarded-For")})
		mu.Unlock()
		fmt.Fprintf(w, "hello %s as %s", r.Header.Get("X-Token-Id"), r.Header.Get("X-Token-Role"))
	}))
	defer upstream.Close()
	validatorURL, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	base := startCaddy(t, upstream.Listener.Addr().String(), validatorURL.Host)

	// Clients of their own addresses, so that Caddy's X-Forwarded-For says which.
	client := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	}
	good, attacker := client("127.0.0.7"), client("127.0.0.8")
	do := func(hc *http.Client, method, path string, headers map[string]string) (*http.Response, string) {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	for _, tc := range []struct {
		name      string
		method    string
		path      string
		headers   map[string]string
		status    int
		body      string
		challenge string
	}{
		{"editor token", http.MethodPost, "/acme/reports", bearer(editor.token), 200, "hello " + editor.issued.TokenID + " as editor", ""},
		{"token in X-Api-Key", http.MethodGet, "/acme/reports", map[string]string{"X-Api-Key": editor.token}, 200, "hello " + editor.issued.TokenID + " as editor", ""},
		{"forged identity headers", http.MethodGet, "/acme/reports", map[string]string{"Authorization": "Bearer " + editor.token,
			"X-Token-Role": "admin", "X-Token-Sub-Tenant": "forged", "X-Forwarded-For": "6.6.6.6"}, 200, "hello " + editor.issued.TokenID + " as editor", ""},
		{"no token", http.MethodGet, "/acme/reports", nil, 401, "no token in the request", `Bearer realm="apitoken"`},
		{"no token, JSON", http.MethodGet, "/acme/reports", map[string]string{"Accept": "application/json"}, 401,
			`{"error":"Missing","message":"no token in the request"}`, `Bearer realm="apitoken"`},
		{"bad token", http.MethodGet, "/acme/reports", bearer(editor.token + "x"), 401, "the token is malformed", `error="invalid_token"`},
		{"role too low", http.MethodGet, "/acme/reports", bearer(viewer.token), 403, "the token's role does not grant the required role", `error="insufficient_scope"`},
		{"client's own requirement header", http.MethodGet, "/acme/reports", map[string]string{"Authorization": "Bearer " + viewer.token, "X-Required-Role": "viewer"}, 403, "the token's role does not grant the required role", ""},
		{"other tenant: 404 reaches the client", http.MethodGet, "/globex/reports", bearer(editor.token), 404, "not found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			reset()
			resp, body := do(good, tc.method, tc.path, tc.headers)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			g.Expect(body).To(Equal(tc.body + map[bool]string{true: "", false: "\n"}[tc.status == 200]))
			if tc.status == 200 {
				g.Expect(got()).To(HaveLen(1))
				g.Expect(got()[0]).To(And(HaveField("Path", tc.path), HaveField("ID", editor.issued.TokenID), HaveField("Role", "editor"),
					HaveField("SubTenant", ""), HaveField("ForwardedFor", Not(ContainSubstring("6.6.6.6")))))
			} else {
				g.Expect(got()).To(BeEmpty(), "a refused request never reaches the upstream")
			}
			if tc.challenge != "" {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(tc.challenge))
			}
		})
	}

	t.Run("audit", func(t *testing.T) {
		g := NewWithT(t)
		lines := h.auditLines(And(HaveField("Method", "POST"), HaveField("URI", "/acme/reports")))
		g.Expect(lines).To(ContainElement(And(
			HaveField("Decision", validatorapi.AuditAllowed), HaveField("TokenID", editor.issued.TokenID),
			HaveField("APIToken", editor.obj.Namespace+"/"+editor.obj.Name), HaveField("Role", "editor"),
			HaveField("Client", "127.0.0.7"), HaveField("Method", "POST"), HaveField("URI", "/acme/reports"),
			HaveField("Required", validatorapi.Requirement{Tenant: "acme", Role: "editor"}))))
		for _, l := range lines {
			g.Expect(l.Client).NotTo(Equal("6.6.6.6"), "Caddy does not pass on the client's X-Forwarded-For")
		}
	})

	t.Run("an attacker at another address is slowed, through Caddy", func(t *testing.T) {
		g := NewWithT(t)
		var statuses []int
		var last *http.Response
		for range 3 {
			last, _ = do(attacker, http.MethodGet, "/acme/reports", bearer("apt_guess_guess"))
			statuses = append(statuses, last.StatusCode)
		}
		g.Expect(statuses).To(Equal([]int{401, 401, 429}))
		g.Expect(last.Header.Get("Retry-After")).To(Equal("10"))
		resp, _ := do(attacker, http.MethodGet, "/acme/reports", bearer(editor.token))
		g.Expect(resp.StatusCode).To(Equal(200), "its good token still passes")
		resp, _ = do(good, http.MethodGet, "/acme/reports", bearer("apt_other_guess"))
		g.Expect(resp.StatusCode).To(Equal(401), "the good client's budget is its own")
	})
}
