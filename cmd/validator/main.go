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
	)
	fs := flag.NewFlagSet("validator", flag.ContinueOnError)
	front.Bind(fs, "")
	fs.Float64Var(&tokenRPS, "token-rate-limit", 0, "Requests per second allowed per token; 0 disables.")
	fs.IntVar(&tokenBurst, "token-rate-burst", 20, "Burst of the per-token rate limit.")
	fs.Var(&audiences, "audiences", "Audiences a token must carry one of; empty: any. Repeatable or comma-separated.")
	fs.StringVar(&defaultIssuer, "default-issuer", tokensv1.DefaultIssuerName, "ClusterTokenIssuer described by /.well-known/openid-configuration without ?issuer=.")
	fs.StringVar(&publicURL, "public-url", "", "External base URL of the validator, for jwks_uri; default: the request's scheme and host.")
	fs.DurationVar(&usageInterval, "usage-report-interval", validator.DefaultUsageInterval, "How often APIToken status.lastUsedTime is written, at most, per APIToken.")
	log, err := front.Parse(fs, args, "validator")
	if err != nil {
		return err
	}

	opts, err := front.Options()
	if err != nil {
		return err
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
	opts.Log = log.WithName("audit")
	srv := validator.New(fr.Index, opts)

	go func() { _ = usage.Start(ctx) }()
	err = fr.Run(ctx, &front, srv.Handler(), srv.ProbeHandler(), log)
	// Write the last usage marks, within the time a pod has to terminate.
	flushCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	usage.Flush(flushCtx)
	return err
}
