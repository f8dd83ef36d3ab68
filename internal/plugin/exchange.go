package plugin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/apitoken-operator/apitoken-operator/pkg/tokensource"
)

// DefaultExchangeURL is the exchange service as a pod of the cluster reaches it.
const DefaultExchangeURL = "https://apitoken-exchange.apitoken-system.svc"

// exchangeTimeout bounds one exchange, connection included.
const exchangeTimeout = 30 * time.Second

type exchangeOptions struct {
	*Options
	url        string
	caFile     string
	expiration time.Duration
	tenant     string
	subTenant  string
	role       string
	scopes     []string
	audiences  []string
	output     string
}

func newExchangeCommand(o *Options) *cobra.Command {
	x := &exchangeOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "exchange NAME",
		Short: "Print a short-lived token exchanged from an APIToken's token",
		Long: `exchange reads the token of the APIToken NAME from its Secret, exchanges it at the
token exchange service for a short-lived JWT, and prints that JWT alone, for scripts:
TOKEN=$(kubectl apitoken exchange ci). The new token can only be narrower than the
APIToken's: the same tenant, a role it includes, a subset of its scopes and audiences,
a lifetime within the issuer's exchange maximum and the token's remaining life. It
is accepted only while the APIToken's token is: revoking the APIToken refuses it too.

-o json prints the exchange's whole answer: the token, its ID, when it expires.`,
		Example: `  # A 10-minute token for a script
  TOKEN=$(kubectl apitoken exchange ci -n acme)

  # Read-only and shorter, from outside the cluster
  kubectl apitoken exchange ci --role viewer --expiration 5m \
    --exchange-url https://exchange.acme.example --exchange-ca-file ca.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return x.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&x.url, "exchange-url", DefaultExchangeURL, "Base URL of the token exchange service.")
	f.StringVar(&x.caFile, "exchange-ca-file", "", "PEM file of the CA that signed the exchange service's certificate; default: the system's CAs.")
	f.DurationVar(&x.expiration, "expiration", 0, "Lifetime of the new token, in whole seconds (10m, 90s); default: the issuer's, 600s unless it says otherwise.")
	f.StringVar(&x.tenant, "tenant", "", "Tenant of the new token; default: the APIToken's.")
	f.StringVar(&x.subTenant, "sub-tenant", "", "Sub-tenant of the new token; default: the APIToken's.")
	f.StringVar(&x.role, "role", "", "Role of the new token, one the APIToken's role includes; default: the APIToken's.")
	f.StringSliceVar(&x.scopes, "scope", nil, "Scopes of the new token, a subset of the APIToken's; repeatable or comma-separated. Default: the APIToken's.")
	f.StringSliceVar(&x.audiences, "audience", nil, "Audiences of the new token; repeatable or comma-separated. Default: the APIToken's.")
	f.StringVarP(&x.output, "output", "o", "", "Output format: json. Default: the token alone.")
	return cmd
}

func (x *exchangeOptions) run(ctx context.Context, name string) error {
	if err := checkOutput(x.output, outputTable, outputJSON); err != nil {
		return err
	}
	if x.expiration < 0 || x.expiration%time.Second != 0 {
		return fmt.Errorf("--expiration %s is not a positive whole number of seconds", x.expiration)
	}
	hc, err := x.httpClient()
	if err != nil {
		return err
	}
	c, ns, t, err := x.loadToken(ctx, name)
	if err != nil {
		return err
	}
	if t.Spec.Revoked {
		return fmt.Errorf("APIToken %s/%s is revoked: it has no token to exchange", ns, name)
	}
	if t.Status.Current == nil {
		return fmt.Errorf("APIToken %s/%s has no token yet: the operator has not minted one (kubectl apitoken describe %s)", ns, name, name)
	}
	_, parent, err := secretToken(ctx, c, ns, secretName(t))
	if err != nil {
		return err
	}
	resp, err := tokensource.Exchange(ctx, strings.TrimSpace(string(parent)), tokensource.ExchangeOptions{
		URL: x.url, Client: hc, Lifetime: x.expiration,
		Tenant: x.tenant, SubTenant: x.subTenant, Role: x.role, Scopes: x.scopes, Audiences: x.audiences,
	})
	if err != nil {
		return x.explain(ns, name, err)
	}
	if x.output == outputJSON {
		b, err := json.MarshalIndent(resp, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(x.Out, string(b))
		return err
	}
	_, err = fmt.Fprintln(x.Out, resp.Token)
	return err
}

// httpClient is the client of the exchange: the system's CAs, or --exchange-ca-file's.
func (x *exchangeOptions) httpClient() (*http.Client, error) {
	hc := &http.Client{Timeout: exchangeTimeout}
	if x.caFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(x.caFile)
	if err != nil {
		return nil, fmt.Errorf("--exchange-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--exchange-ca-file %s holds no PEM certificate", x.caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc.Transport = tr
	return hc, nil
}

// explain says which APIToken's exchange failed and, where the fix is a flag, which.
func (x *exchangeOptions) explain(ns, name string, err error) error {
	var xe *tokensource.ExchangeError
	if errors.As(err, &xe) {
		what := fmt.Sprintf("%d", xe.StatusCode)
		if xe.Code != "" {
			what += " " + xe.Code
		}
		return fmt.Errorf("the exchange refused the token of APIToken %s/%s (%s): %s", ns, name, what, xe.Message)
	}
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return fmt.Errorf("exchanging the token of APIToken %s/%s: %w (--exchange-ca-file names the CA of the exchange's certificate)", ns, name, err)
	}
	return fmt.Errorf("exchanging the token of APIToken %s/%s: %w", ns, name, err)
}
