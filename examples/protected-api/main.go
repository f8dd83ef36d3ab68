// Command protected-api shows both halves of the workload library: a server that
// protects its endpoints with pkg/middleware, and a client that calls it with the token
// the operator keeps in a mounted Secret, through pkg/tokensource.
//
//	# Server, asking the validator about every token (cached for 10s):
//	protected-api serve -addr :8080 -validator-url https://apitoken-validator.apitoken-system.svc -tenant acme
//
//	# Server, verifying JWTs itself with the issuer's published keys:
//	protected-api serve -addr :8080 -tenant acme \
//	    -jwks-url https://apitoken-validator.apitoken-system.svc/.well-known/jwks.json?issuer=default \
//	    -issuer https://tokens.acme.internal -roles admin=editor,editor=viewer
//
//	# Client, in a pod that mounts the APIToken's Secret at /var/run/secrets/apitoken:
//	protected-api call -url http://protected-api:8080/reports -token-dir /var/run/secrets/apitoken
//
// The server answers GET /reports to tokens with role viewer and POST /reports to
// editors, both for the tenant given; every other answer is the validator's: 401, 403
// or 404.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/middleware"
	"github.com/apitoken-operator/apitoken-operator/pkg/tokensource"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: protected-api serve|call [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, log, os.Args[2:])
	case "call":
		err = call(ctx, log, os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: use serve or call", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("Failed", "err", err)
		os.Exit(1)
	}
}

// serverConfig says how the server checks tokens.
type serverConfig struct {
	validatorURL, jwksURL, issuer, tenant string
	// roles is the issuer's role graph for offline mode: "admin=editor,editor=viewer".
	roles string
	// insecureJWKS accepts an http:// JWKS URL, for a local test only.
	insecureJWKS bool
}

func serve(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "Address to listen on.")
	var cfg serverConfig
	fs.StringVar(&cfg.validatorURL, "validator-url", "", "Base URL of the validator (validator mode).")
	fs.StringVar(&cfg.jwksURL, "jwks-url", "", "URL of the issuer's JWKS (offline mode).")
	fs.StringVar(&cfg.issuer, "issuer", "", "Offline mode: the iss tokens must carry (the issuer's spec.issuer). Required.")
	fs.BoolVar(&cfg.insecureJWKS, "insecure-jwks-http", false, "Offline mode: accept an http:// JWKS URL. For a local test only.")
	fs.StringVar(&cfg.roles, "roles", "admin=editor,editor=viewer", "Offline mode: role inclusions, role=included,...")
	fs.StringVar(&cfg.tenant, "tenant", "", "Tenant every request must belong to.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("Serving", "addr", *addr, "tenant", cfg.tenant)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newServer returns the API: GET /reports for viewers, POST /reports for editors.
func newServer(cfg serverConfig, log *slog.Logger) (http.Handler, error) {
	var checker middleware.Checker
	switch {
	case cfg.validatorURL != "" && cfg.jwksURL != "":
		return nil, errors.New("give -validator-url or -jwks-url, not both")
	case cfg.validatorURL != "":
		v, err := middleware.NewValidator(middleware.ValidatorOptions{URL: cfg.validatorURL})
		if err != nil {
			return nil, err
		}
		checker = v
	case cfg.jwksURL != "":
		roles := map[string][]string{}
		for _, pair := range strings.Split(cfg.roles, ",") {
			if role, inc, ok := strings.Cut(pair, "="); ok {
				roles[role] = append(roles[role], inc)
			}
		}
		o, err := middleware.NewOffline(middleware.OfflineOptions{JWKSURL: cfg.jwksURL, AllowInsecureHTTP: cfg.insecureJWKS, Issuer: cfg.issuer, RoleIncludes: roles})
		if err != nil {
			return nil, err
		}
		checker = o
	default:
		return nil, errors.New("give -validator-url or -jwks-url")
	}
	m, err := middleware.New(middleware.Options{
		Checker:     checker,
		Requirement: middleware.Requirement{Tenant: cfg.tenant},
		OnError: func(r *http.Request, err error) {
			log.Error("Cannot check a token", "path", r.URL.Path, "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /reports", m.Require(middleware.Requirement{Tenant: cfg.tenant, Role: "viewer"}, http.HandlerFunc(reports)))
	mux.Handle("POST /reports", m.Require(middleware.Requirement{Tenant: cfg.tenant, Role: "editor"}, http.HandlerFunc(reports)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	return mux, nil
}

// reports answers with who called: the identity the middleware put in the context.
func reports(w http.ResponseWriter, r *http.Request) {
	id, _ := middleware.IdentityFrom(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"method":  r.Method,
		"caller":  id.Subject,
		"tenant":  id.Tenant,
		"role":    id.Role,
		"tokenID": id.TokenID,
	})
}

// call requests -url every -interval (once with -interval 0) with the token of
// -token-dir. A rotation the kubelet delivers is used from the next request on.
func call(ctx context.Context, log *slog.Logger, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	url := fs.String("url", "http://localhost:8080/reports", "URL to call.")
	dir := fs.String("token-dir", "/var/run/secrets/apitoken", "Directory where the APIToken's Secret is mounted.")
	interval := fs.Duration("interval", 0, "Call again after this long; 0 calls once.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := tokensource.New(*dir, tokensource.Options{
		// The token ID is safe to log; the token never is.
		OnChange: func(t *tokensource.Token) { log.Info("Token loaded", "tokenID", t.ID, "expiresAt", t.ExpiresAt) },
		OnError:  func(err error) { log.Warn("Keeping the last good token", "err", err) },
	})
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := src.Wait(waitCtx); err != nil {
		return fmt.Errorf("no token in %s: %w", *dir, err)
	}
	client := &http.Client{Transport: &tokensource.Transport{Source: src}, Timeout: 10 * time.Second}
	for {
		if err := callOnce(ctx, client, *url, out); err != nil {
			log.Error("Call failed", "err", err)
		}
		if *interval <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*interval):
		}
	}
}

func callOnce(ctx context.Context, c *http.Client, url string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s %s\n", resp.Status, strings.TrimSpace(string(body)))
	return err
}
