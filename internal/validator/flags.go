package validator

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apitoken-operator/apitoken-operator/internal/logging"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// FrontFlags are the command-line flags of a process that authenticates tokens the
// validator's way: the validator, and the token exchange, which must read
// credentials, client addresses and failed attempts exactly as the validator does.
type FrontFlags struct {
	ListenAddr, MetricsAddr string
	CertFile, KeyFile       string
	InsecureHTTP            bool
	TokenHeaders            List
	IDHeader, SecretHeader  string
	TenantMismatchStatus    int
	FailedRPS               float64
	FailedBurst             int
	ClientIPHeader          string
	TrustedProxies          List
	TenantHeader            string
	SubTenantHeader         string
	RoleHeader              string
	FailedExempt            List
	CacheSize               int
	LiveRate                float64
	KubeAPIQPS              float64
	KubeAPIBurst            int
}

// Bind registers the flags on fs; metricsAddr is the default of
// --metrics-bind-address.
func (f *FrontFlags) Bind(fs *flag.FlagSet, metricsAddr string) {
	fs.StringVar(&f.ListenAddr, "listen-address", ":8443", "Address to serve on.")
	fs.StringVar(&f.MetricsAddr, "metrics-bind-address", metricsAddr, "Plain-HTTP address serving /metrics, /healthz and /readyz; empty: none.")
	fs.StringVar(&f.CertFile, "tls-cert-file", "", "TLS certificate (PEM), reloaded when the file changes.")
	fs.StringVar(&f.KeyFile, "tls-key-file", "", "TLS private key (PEM), reloaded when the file changes.")
	fs.BoolVar(&f.InsecureHTTP, "insecure-http", false, "Serve plain HTTP instead of TLS (tests and sidecars on localhost only).")
	fs.Var(&f.TokenHeaders, "token-header", "Header whose value is a token, after Authorization: Bearer (e.g. x-api-key); repeatable or comma-separated.")
	fs.StringVar(&f.IDHeader, "token-id-header", "", "Header carrying an opaque token's ID, with --token-secret-header carrying its secret.")
	fs.StringVar(&f.SecretHeader, "token-secret-header", "", "Header carrying an opaque token's secret, with --token-id-header carrying its ID.")
	fs.IntVar(&f.TenantMismatchStatus, "tenant-mismatch-status", http.StatusNotFound, "Status for a token of another tenant or sub-tenant: 404, or 403 behind nginx auth_request.")
	fs.Float64Var(&f.FailedRPS, "failed-attempt-rate-limit", 1, "Failed attempts per second allowed per client address before it is refused with 429; 0 disables.")
	fs.IntVar(&f.FailedBurst, "failed-attempt-burst", 20, "Burst of the per-client failed-attempt limit.")
	fs.StringVar(&f.ClientIPHeader, "client-ip-header", validatorapi.HeaderForwardedFor, "Header holding the client address (X-Forwarded-For, X-Real-IP), believed only from --trusted-proxies: the right-most address of all its lines that is not a trusted proxy is the client.")
	fs.Var(&f.TrustedProxies, "trusted-proxies", "CIDRs of the proxies and services (pkg/middleware) whose --client-ip-header is believed; repeatable or comma-separated.")
	fs.StringVar(&f.TenantHeader, "tenant-header", validatorapi.DefaultTenantHeader, "Header carrying a tenant besides the query (and, at the validator, X-Required-Tenant), as partner APIs send it; empty: none.")
	fs.StringVar(&f.SubTenantHeader, "sub-tenant-header", validatorapi.DefaultSubTenantHeader, "Header carrying a sub-tenant besides the query (and, at the validator, X-Required-Sub-Tenant); empty: none.")
	fs.StringVar(&f.RoleHeader, "role-header", "", "Header carrying a role besides the query (and, at the validator, X-Required-Role); empty: none.")
	fs.Var(&f.FailedExempt, "failed-attempt-exempt", "CIDRs of clients the failed-attempt limit never applies to, such as kube-apiserver's addresses when it sends TokenReviews; repeatable or comma-separated.")
	fs.IntVar(&f.CacheSize, "cache-size", 10000, "Verified JWTs remembered, so a repeated token costs no signature check; 0 disables.")
	fs.Float64Var(&f.LiveRate, "live-lookup-rate", 20, "Reads per second, at most, of an APIToken past the informer, for validly signed JWTs the index does not know yet (after an API server outage, or just minted); 0 refuses them as unknown.")
	fs.Float64Var(&f.KubeAPIQPS, "kube-api-qps", 20, "QPS of the process's requests to the API server past its informers.")
	fs.IntVar(&f.KubeAPIBurst, "kube-api-burst", 40, "Burst of the process's requests to the API server.")
}

// Parse adds --kubeconfig (controller-runtime's) and the logging flags to fs,
// parses args, and installs the logger they ask for, returning it named name.
func (f *FrontFlags) Parse(fs *flag.FlagSet, args []string, name string) (logr.Logger, error) {
	if kc := flag.CommandLine.Lookup("kubeconfig"); kc != nil {
		fs.Var(kc.Value, kc.Name, kc.Usage)
	}
	logOpts := logging.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return logr.Discard(), err
	}
	logger, capped := logOpts.Logger()
	ctrl.SetLogger(logger)
	if capped {
		logger.Info("log verbosity capped: above this level client-go logs API request bodies, which carry tokens and keys", "maxVerbosity", logging.MaxVerbosity)
	}
	return ctrl.Log.WithName(name), nil
}

// Options checks the flags and returns the Options they set; the caller adds the
// index-dependent ones (Ready, Live, Usage, Clock, Log).
func (f *FrontFlags) Options() (Options, error) {
	if f.TenantMismatchStatus != http.StatusNotFound && f.TenantMismatchStatus != http.StatusForbidden {
		return Options{}, fmt.Errorf("--tenant-mismatch-status must be 404 or 403, not %d", f.TenantMismatchStatus)
	}
	if (f.IDHeader == "") != (f.SecretHeader == "") {
		return Options{}, errors.New("--token-id-header and --token-secret-header go together")
	}
	proxies, err := parsePrefixes("--trusted-proxies", f.TrustedProxies)
	if err != nil {
		return Options{}, err
	}
	exempt, err := parsePrefixes("--failed-attempt-exempt", f.FailedExempt)
	if err != nil {
		return Options{}, err
	}
	cacheSize := f.CacheSize
	if cacheSize == 0 {
		cacheSize = -1 // Options treats 0 as "default"
	}
	return Options{
		TokenHeaders:         f.TokenHeaders,
		IDHeader:             f.IDHeader,
		SecretHeader:         f.SecretHeader,
		TenantMismatchStatus: f.TenantMismatchStatus,
		CacheSize:            cacheSize,
		Limits:               RateLimits{FailureRate: f.FailedRPS, FailureBurst: f.FailedBurst, FailureExempt: exempt},
		ClientIPHeader:       f.ClientIPHeader,
		TrustedProxies:       proxies,
		TenantHeader:         f.TenantHeader,
		SubTenantHeader:      f.SubTenantHeader,
		RoleHeader:           f.RoleHeader,
	}, nil
}

// List is a flag holding a comma-separated list, also accepted repeated.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *List) Set(v string) error {
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
