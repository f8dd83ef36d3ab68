// Command validator is the in-cluster token validation service. It watches APITokens
// and ClusterTokenIssuers (never Secrets) and answers, from its own informer cache,
// whether a token is valid for a tenant and role: forward auth for proxies
// (/authorize), a TokenReview webhook for the kube-apiserver, JSON for services
// (/v1/validate), and the issuers' public keys for offline verifiers. It holds no
// lock and no leader: run as many replicas as the traffic needs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "validator:", err)
		os.Exit(1)
	}
}

// list is a flag holding a comma-separated list, also accepted repeated.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// parsePrefixes parses the CIDRs of flag; a single address stands for itself.
func parsePrefixes(flag string, values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("%s: %q is neither a CIDR nor an address", flag, v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// run serves until ctx is done.
func run(ctx context.Context, args []string) error {
	var (
		listenAddr, metricsAddr  string
		certFile, keyFile        string
		insecureHTTP             bool
		tokenHeaders, audiences  list
		trustedProxies           list
		failedExempt             list
		liveRate                 float64
		idHeader, secretHeader   string
		clientIPHeader           string
		tenantMismatchStatus     int
		tokenRPS, failedRPS      float64
		tokenBurst, failedBurst  int
		cacheSize                int
		defaultIssuer, publicURL string
		usageInterval            time.Duration
		kubeAPIQPS               float64
		kubeAPIBurst             int
	)
	fs := flag.NewFlagSet("validator", flag.ContinueOnError)
	fs.StringVar(&listenAddr, "listen-address", ":8443", "Address the validator serves on.")
	fs.StringVar(&metricsAddr, "metrics-bind-address", "", "Extra plain-HTTP address serving only /metrics, /healthz and /readyz (they are always served on --listen-address too); empty: none.")
	fs.StringVar(&certFile, "tls-cert-file", "", "TLS certificate (PEM), reloaded when the file changes.")
	fs.StringVar(&keyFile, "tls-key-file", "", "TLS private key (PEM), reloaded when the file changes.")
	fs.BoolVar(&insecureHTTP, "insecure-http", false, "Serve plain HTTP instead of TLS (tests and sidecars on localhost only).")
	fs.Var(&tokenHeaders, "token-header", "Header whose value is a token, after Authorization: Bearer (e.g. x-api-key); repeatable or comma-separated.")
	fs.StringVar(&idHeader, "token-id-header", "", "Header carrying an opaque token's ID, with --token-secret-header carrying its secret.")
	fs.StringVar(&secretHeader, "token-secret-header", "", "Header carrying an opaque token's secret, with --token-id-header carrying its ID.")
	fs.IntVar(&tenantMismatchStatus, "tenant-mismatch-status", http.StatusNotFound, "Status for a token of another tenant or sub-tenant: 404, or 403 behind nginx auth_request.")
	fs.Float64Var(&tokenRPS, "token-rate-limit", 0, "Requests per second allowed per token; 0 disables.")
	fs.IntVar(&tokenBurst, "token-rate-burst", 20, "Burst of the per-token rate limit.")
	fs.Float64Var(&failedRPS, "failed-attempt-rate-limit", 1, "Failed attempts per second allowed per client address before it is refused with 429; 0 disables.")
	fs.IntVar(&failedBurst, "failed-attempt-burst", 20, "Burst of the per-client failed-attempt limit.")
	fs.StringVar(&clientIPHeader, "client-ip-header", "", "Header holding the client address (X-Real-IP, X-Forwarded-For), believed only from --trusted-proxies.")
	fs.Var(&trustedProxies, "trusted-proxies", "CIDRs of proxies whose --client-ip-header is believed; repeatable or comma-separated.")
	fs.Var(&failedExempt, "failed-attempt-exempt", "CIDRs of clients the failed-attempt limit never applies to, such as kube-apiserver's addresses when it sends TokenReviews; repeatable or comma-separated.")
	fs.Var(&audiences, "audiences", "Audiences a token must carry one of; empty: any. Repeatable or comma-separated.")
	fs.IntVar(&cacheSize, "cache-size", 10000, "Verified JWTs remembered, so a repeated token costs no signature check; 0 disables.")
	fs.StringVar(&defaultIssuer, "default-issuer", tokensv1.DefaultIssuerName, "ClusterTokenIssuer described by /.well-known/openid-configuration without ?issuer=.")
	fs.StringVar(&publicURL, "public-url", "", "External base URL of the validator, for jwks_uri; default: the request's scheme and host.")
	fs.Float64Var(&liveRate, "live-lookup-rate", 20, "Reads per second, at most, of an APIToken past the informer, for validly signed JWTs the index does not know yet (after an API server outage, or just minted); 0 refuses them as unknown.")
	fs.DurationVar(&usageInterval, "usage-report-interval", validator.DefaultUsageInterval, "How often APIToken status.lastUsedTime is written, at most, per APIToken.")
	fs.Float64Var(&kubeAPIQPS, "kube-api-qps", 20, "QPS of the validator's writes to the API server (lastUsedTime).")
	fs.IntVar(&kubeAPIBurst, "kube-api-burst", 40, "Burst of the validator's writes to the API server.")
	// controller-runtime registers --kubeconfig on the default flag set.
	if kc := flag.CommandLine.Lookup("kubeconfig"); kc != nil {
		fs.Var(kc.Value, kc.Name, kc.Usage)
	}
	logOpts := logging.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, capped := logOpts.Logger()
	ctrl.SetLogger(logger)
	if capped {
		logger.Info("log verbosity capped: above this level client-go logs API request bodies, which carry tokens and keys", "maxVerbosity", logging.MaxVerbosity)
	}
	log := ctrl.Log.WithName("validator")

	if tenantMismatchStatus != http.StatusNotFound && tenantMismatchStatus != http.StatusForbidden {
		return fmt.Errorf("--tenant-mismatch-status must be 404 or 403, not %d", tenantMismatchStatus)
	}
	if (idHeader == "") != (secretHeader == "") {
		return errors.New("--token-id-header and --token-secret-header go together")
	}
	proxies, err := parsePrefixes("--trusted-proxies", trustedProxies)
	if err != nil {
		return err
	}
	exempt, err := parsePrefixes("--failed-attempt-exempt", failedExempt)
	if err != nil {
		return err
	}
	if cacheSize == 0 {
		cacheSize = -1 // Options treats 0 as "default"
	}

	scheme := k8sruntime.NewScheme()
	if err := tokensv1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(kubeAPIQPS), kubeAPIBurst

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	clk := clock.RealClock{}
	idx := index.New(index.Config{Audiences: audiences, Clock: clk})
	c, err := cache.New(cfg, validator.CacheOptions(scheme))
	if err != nil {
		return fmt.Errorf("creating the cache: %w", err)
	}
	synced, err := validator.Watch(ctx, c, idx, log)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	usage := validator.NewUsageReporter(cl, clk, usageInterval, log.WithName("usage"))
	var live *validator.LiveLookup
	if liveRate > 0 {
		live = validator.NewLiveLookup(cl, clk, liveRate, 2*time.Second)
	}

	srv := validator.New(idx, validator.Options{
		TokenHeaders:         tokenHeaders,
		IDHeader:             idHeader,
		SecretHeader:         secretHeader,
		TenantMismatchStatus: tenantMismatchStatus,
		Audiences:            audiences,
		CacheSize:            cacheSize,
		Limits: validator.RateLimits{
			TokenRate: tokenRPS, TokenBurst: tokenBurst,
			FailureRate: failedRPS, FailureBurst: failedBurst, FailureExempt: exempt,
		},
		ClientIPHeader: clientIPHeader,
		TrustedProxies: proxies,
		DefaultIssuer:  defaultIssuer,
		PublicURL:      publicURL,
		Ready:          synced,
		Usage:          usage,
		Live:           live,
		Clock:          clk,
		Log:            log.WithName("audit"),
	})

	errc := make(chan error, 3)
	go func() {
		if err := c.Start(ctx); err != nil {
			errc <- fmt.Errorf("cache: %w", err)
		}
	}()
	go func() { _ = usage.Start(ctx) }()
	if metricsAddr != "" {
		mln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return err
		}
		go func() {
			errc <- validator.Serve(ctx, mln, srv.ProbeHandler(), validator.ServeOptions{Insecure: true, Log: log})
		}()
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return err
	}
	go func() {
		errc <- validator.Serve(ctx, ln, srv.Handler(), validator.ServeOptions{
			CertFile: certFile, KeyFile: keyFile, Insecure: insecureHTTP, Log: log,
		})
	}()
	go func() {
		if c.WaitForCacheSync(ctx) {
			log.Info("Caches synced; ready", "tokens", idx.Len())
		}
	}()
	log.Info("Serving", "address", listenAddr, "tls", !insecureHTTP)

	select {
	case err := <-errc:
		if ctx.Err() == nil {
			cancel()
			return err
		}
	case <-ctx.Done():
	}
	// Write the last usage marks, within the time a pod has to terminate.
	flushCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	usage.Flush(flushCtx)
	return nil
}
