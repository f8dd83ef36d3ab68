// Command validator is the in-cluster token validation service. It watches APITokens
// and ClusterTokenIssuers (never Secrets) and answers, from its own informer cache,
// whether a token is valid for a tenant and role: forward auth for proxies
// (/authorize), a TokenReview webhook for the kube-apiserver, JSON for services
// (/v1/validate), and the issuers' public keys for offline verifiers. It holds no
// lock and no leader: run as many replicas as the traffic needs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "validator:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string) error {
	var (
		front                    validator.FrontFlags
		audiences                validator.List
		tokenRPS                 float64
		tokenBurst               int
		defaultIssuer, publicURL string
		usageInterval            time.Duration
		requireTenant            bool
		auditLog                 string
	)
	fs := flag.NewFlagSet("validator", flag.ContinueOnError)
	front.Bind(fs, "")
	fs.Float64Var(&tokenRPS, "token-rate-limit", 0, "Requests per second allowed per token; 0 disables.")
	fs.IntVar(&tokenBurst, "token-rate-burst", 20, "Burst of the per-token rate limit.")
	fs.Var(&audiences, "audiences", "Audiences a token must carry one of; empty: any. Repeatable or comma-separated.")
	fs.StringVar(&defaultIssuer, "default-issuer", tokensv1.DefaultIssuerName, "ClusterTokenIssuer described by /.well-known/openid-configuration without ?issuer=.")
	fs.StringVar(&publicURL, "public-url", "", "External base URL of the validator (https://apitoken-validator.apitoken-system.svc), for the jwks_uri of /.well-known/openid-configuration; empty: the request's scheme and Host, then never cached by shared caches.")
	fs.BoolVar(&requireTenant, "require-tenant", false, "Answer 400 to an /authorize or /v1/validate request that names no tenant.")
	fs.StringVar(&auditLog, "audit-log", "", "Where the audit stream goes, one JSON line per decision: stdout, or a file path (appended to); empty: off.")
	fs.DurationVar(&usageInterval, "usage-report-interval", validator.DefaultUsageInterval, "How often APIToken status.lastUsedTime is written, at most, per APIToken.")
	log, err := front.Parse(fs, args, "validator")
	if err != nil {
		return err
	}

	opts, err := front.Options()
	if err != nil {
		return err
	}
	var auditSink *os.File
	if auditLog != "" {
		if auditSink, err = openAuditLog(auditLog); err != nil {
			return err
		}
		if auditSink != os.Stdout {
			defer auditSink.Close()
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	clk := clock.RealClock{}
	fr, err := validator.NewFront(ctx, cfg, &front, audiences, clk, log)
	if err != nil {
		return err
	}
	usage := validator.NewUsageReporter(fr.Client, clk, usageInterval, log.WithName("usage"))
	opts.Audiences = audiences
	opts.Limits.TokenRate, opts.Limits.TokenBurst = tokenRPS, tokenBurst
	opts.DefaultIssuer, opts.PublicURL = defaultIssuer, publicURL
	opts.Ready, opts.Usage, opts.Live, opts.Clock = fr.Synced, usage, fr.Live, clk
	opts.RequireTenant = requireTenant
	opts.Log = log.WithName("decisions")
	auditCtx, stopAudit := context.WithCancel(context.Background())
	defer stopAudit()
	auditDone := make(chan struct{})
	if auditSink != nil {
		opts.Audit = validator.NewAuditStream(auditSink, validator.AuditOptions{Clock: clk, Log: log.WithName("audit")})
		go func() {
			opts.Audit.Run(auditCtx)
			close(auditDone)
		}()
	} else {
		close(auditDone)
	}
	srv := validator.New(fr.Index, opts)

	go func() { _ = usage.Start(ctx) }()
	err = fr.Run(ctx, &front, srv.Handler(), srv.ProbeHandler(), log)
	// Write the last usage marks and audit lines, within the time a pod has to
	// terminate.
	stopAudit()
	flushCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	usage.Flush(flushCtx)
	<-auditDone
	return err
}

// openAuditLog opens the audit stream's sink: stdout, which zap leaves to it (logs go
// to stderr), or a file appended to.
func openAuditLog(where string) (*os.File, error) {
	if where == "stdout" {
		return os.Stdout, nil
	}
	f, err := os.OpenFile(where, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return f, nil
}
