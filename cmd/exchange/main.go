// Command exchange is the token exchange service (RFC 8693): a client presents a
// token of an APIToken and gets back a shorter-lived JWT that only narrows it, signed
// with the issuer's current key and accepted by the validator only while its parent
// is. It authenticates tokens with the validator's code, over the same informers
// (APITokens and ClusterTokenIssuers), and reads one kind of Secret: an issuer's key
// Secret, by name, when its current key changes. It stores nothing per exchange and
// holds no lock: run as many replicas as the traffic needs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apitoken-operator/apitoken-operator/internal/exchange"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "exchange:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string) error {
	var (
		front                         validator.FrontFlags
		namespace                     string
		tenantHeader, subTenantHeader string
	)
	fs := flag.NewFlagSet("exchange", flag.ContinueOnError)
	front.Bind(fs, ":8081")
	fs.StringVar(&namespace, "namespace", "apitoken-system", "Namespace of the issuers' key Secrets: the operator's.")
	fs.StringVar(&tenantHeader, "tenant-header", exchangeapi.DefaultTenantHeader, "Header carrying the tenant of a GET "+exchangeapi.PathToken+" request, besides ?tenant=.")
	fs.StringVar(&subTenantHeader, "sub-tenant-header", exchangeapi.DefaultSubTenantHeader, "Header carrying the sub-tenant of a GET "+exchangeapi.PathToken+" request, besides ?sub_tenant=.")
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
	log := ctrl.Log.WithName("exchange")

	opts, err := front.Options()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	clk := clock.RealClock{}
	fr, err := validator.NewFront(ctx, cfg, &front, nil, clk, log)
	if err != nil {
		return err
	}
	opts.Ready, opts.Live, opts.Clock = fr.Synced, fr.Live, clk
	// The Front's client knows only the operator's types; key Secrets are read with
	// one of their own.
	keyCfg := rest.CopyConfig(cfg)
	keyCfg.QPS, keyCfg.Burst = float32(front.KubeAPIQPS), front.KubeAPIBurst
	keyReader, err := client.New(keyCfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return err
	}
	authn := validator.New(fr.Index, opts)
	srv := exchange.New(authn, fr.Index, exchange.NewKeys(keyReader, namespace), exchange.Options{
		TenantHeader:         tenantHeader,
		SubTenantHeader:      subTenantHeader,
		TenantMismatchStatus: front.TenantMismatchStatus,
		Clock:                clk,
		Ready:                fr.Synced,
		Log:                  log.WithName("audit"),
	})
	return fr.Run(ctx, &front, srv.Handler(), srv.ProbeHandler(), log)
}
