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
)

// nginxConf puts the validator in front of an upstream the way the docs tell users
// to: auth_request to /authorize with the requirement in the query (acme) or in a
// header (globex), identity headers passed on to the upstream, the challenge passed
// back to the client, and the client's address and the original request passed to
// the validator for its failed-attempt limit and its audit.
const nginxConf = `
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;

    server {
        listen 127.0.0.1:%[2]d;

        location = /ready { return 204; }

        location /acme/ {
            auth_request /_auth/acme-editor;
            auth_request_set $token_id $upstream_http_x_token_id;
            auth_request_set $token_role $upstream_http_x_token_role;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            add_header WWW-Authenticate $auth_challenge always;
            proxy_set_header X-Token-Id $token_id;
            proxy_set_header X-Token-Role $token_role;
            proxy_pass http://%[3]s;
        }

        location /globex/ {
            auth_request /_auth/globex;
            proxy_pass http://%[3]s;
        }

        location = /_auth/acme-editor {
            internal;
            proxy_pass http://%[4]s/authorize?tenant=acme&role=editor;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }

        location = /_auth/globex {
            internal;
            proxy_pass http://%[4]s/authorize;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Required-Tenant globex;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }
    }
}
`

// findNginx looks in PATH and where Debian and source builds put nginx.
func findNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nginx not found in PATH, /usr/sbin or /usr/local: install it to run this test (apt-get install -y nginx-light); CI installs it")
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNginx runs nginx in the foreground with conf until the test ends.
func startNginx(t *testing.T, upstream, validator string) string {
	bin, err := findNginx()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, port, upstream, validator), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	runProxy(t, "nginx", cmd, syscall.SIGQUIT, filepath.Join(dir, "error.log"), base)
	return base
}

// runProxy starts a proxy's cmd, stops it with stop when the test ends (showing its
// log then if the test failed), and waits until base/ready answers.
func runProxy(t *testing.T, name string, cmd *exec.Cmd, stop os.Signal, logPath, base string) {
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	// exited is closed once the proxy is gone, waitErr then says how: a channel that
	// is read once would leave the cleanup waiting forever after a proxy that exited early.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", name, b)
			}
		}
	})
	NewWithT(t).Eventually(func() error {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return StopTrying(fmt.Sprintf("%s exited: %v\n%s", name, waitErr, b))
		default:
		}
		resp, err := http.Get(base + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}).WithTimeout(20 * time.Second).Should(Succeed())
}

// TestNginxAuthRequest puts a real nginx with auth_request between real HTTP clients
// and a test upstream, and checks that the validator's 200, 401 and 403 reach the
// client, that refused requests never reach the upstream, and that accepted ones
// arrive with the token's identity.
func TestNginxAuthRequest(t *testing.T) {
	h := start(t, Options{TenantMismatchStatus: http.StatusForbidden, TokenHeaders: []string{"X-Api-Key"},
		ClientIPHeader: "X-Forwarded-For", TrustedProxies: loopbackProxy})
	iss := h.issuer(token.ES256, true)
	editor := h.apiToken(iss, tokenSpec{})
	viewer := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	h.waitIndexed(editor)
	h.waitIndexed(viewer)

	var (
		mu      sync.Mutex
		reached []string
	)
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return reached
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.URL.Path)
		mu.Unlock()
		fmt.Fprintf(w, "hello %s as %s", r.Header.Get("X-Token-Id"), r.Header.Get("X-Token-Role"))
	}))
	defer upstream.Close()
	validatorURL, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	base := startNginx(t, upstream.Listener.Addr().String(), validatorURL.Host)

	get := func(path string, headers map[string]string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
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
		path      string
		headers   map[string]string
		status    int
		body      string
		challenge string
	}{
		{"editor token", "/acme/reports", bearer(editor.token), 200, "hello " + editor.issued.TokenID + " as editor", ""},
		{"token in X-Api-Key", "/acme/reports", map[string]string{"X-Api-Key": editor.token}, 200, "hello " + editor.issued.TokenID + " as editor", ""},
		{"no token", "/acme/reports", nil, 401, "", `Bearer realm="apitoken"`},
		{"bad token", "/acme/reports", bearer(editor.token + "x"), 401, "", `error="invalid_token"`},
		{"role too low", "/acme/reports", bearer(viewer.token), 403, "", `error="insufficient_scope"`},
		{"other tenant", "/globex/reports", bearer(editor.token), 403, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			mu.Lock()
			reached = nil
			mu.Unlock()
			resp, body := get(tc.path, tc.headers)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			if tc.status == 200 {
				g.Expect(body).To(Equal(tc.body))
				g.Expect(seen()).To(Equal([]string{tc.path}))
			} else {
				g.Expect(seen()).To(BeEmpty(), "a refused request never reaches the upstream")
			}
			if tc.challenge != "" {
				g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(tc.challenge))
			}
		})
	}

	t.Run("audit", func(t *testing.T) {
		g := NewWithT(t)
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
		req, err := http.NewRequest(http.MethodDelete, base+"/acme/invoices/7?api_key=in-the-query", nil)
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+editor.token)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := hc.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(200))
		h.auditLines(And(HaveField("Decision", "allowed"), HaveField("TokenID", editor.issued.TokenID),
			HaveField("APIToken", editor.obj.Namespace+"/"+editor.obj.Name), HaveField("Client", "127.0.0.7"),
			HaveField("Method", "DELETE"), HaveField("URI", "/acme/invoices/7")))
	})
}
