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

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apitoken-operator/apitoken-operator/internal/exchange"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
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
		front     validator.FrontFlags
		namespace string
	)
	fs := flag.NewFlagSet("exchange", flag.ContinueOnError)
	// --tenant-header, --sub-tenant-header and --role-header are among the front
	// flags: the headers of a GET /v1/token request besides its query.
	front.Bind(fs, ":8081")
	fs.StringVar(&namespace, "namespace", "apitoken-system", "Namespace of the issuers' key Secrets: the operator's.")
	log, err := front.Parse(fs, args, "exchange")
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
	fr, err := validator.NewFront(ctx, cfg, &front, nil, clk, log)
	if err != nil {
		return err
	}
	opts.Ready, opts.Live, opts.Clock = fr.Synced, fr.Live, clk
	authn := validator.New(fr.Index, opts)
	srv := exchange.New(authn, fr.Index, exchange.NewKeys(fr.Client, namespace), exchange.Options{
		TenantHeader:         front.TenantHeader,
		SubTenantHeader:      front.SubTenantHeader,
		RoleHeader:           front.RoleHeader,
		TenantMismatchStatus: front.TenantMismatchStatus,
		Clock:                clk,
		Ready:                fr.Synced,
		Log:                  log.WithName("audit"),
	})
	return fr.Run(ctx, &front, srv.Handler(), srv.ProbeHandler(), log)
}
