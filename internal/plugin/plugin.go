// Package plugin is the kubectl plugin kubectl-apitoken: list APITokens with their
// expiry, describe one, rotate it now, revoke it, rotate an issuer's signing key
// (also for a compromised key), inspect a token (decode and verify it against its
// issuer's JWKS, never printing it unless asked), write APIToken manifests for
// GitOps and exchange a token for a short-lived one.
//
// Every command reads the time from an injected clock, so outputs that say "in 29d"
// or "5m ago" are stable in tests.
package plugin

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// FieldManager is the field manager of the plugin's writes.
const FieldManager = "kubectl-apitoken"

// Options are what every command shares.
type Options struct {
	// IOStreams are stdin, stdout and stderr.
	genericiooptions.IOStreams
	// ConfigFlags are kubectl's --kubeconfig, --context, --namespace and the rest.
	ConfigFlags *genericclioptions.ConfigFlags
	// Clock tells "now" for every relative time. Default: the real clock.
	Clock clock.PassiveClock
	// Scheme knows the built-in types and the operator's. Default: a new one.
	Scheme *k8sruntime.Scheme
}

// NewScheme returns a scheme with the built-in types and the operator's.
func NewScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := tokensv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewCommand returns the root command, kubectl-apitoken.
func NewCommand(o *Options) *cobra.Command {
	if o.ConfigFlags == nil {
		o.ConfigFlags = genericclioptions.NewConfigFlags(true)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Scheme == nil {
		o.Scheme = NewScheme()
	}
	cmd := &cobra.Command{
		Use:   "kubectl-apitoken",
		Short: "Manage APITokens: list, describe, rotate, revoke, inspect, create and exchange; rotate-key for issuers",
		Long: `kubectl apitoken manages the APITokens of apitoken-operator.

It lists tokens with their expiry, describes one with its conditions and events,
rotates or revokes it, rotates an issuer's signing key, inspects a token (decodes and verifies it against its
issuer's keys, and never prints it unless --show-token is given), writes
APIToken manifests for GitOps, and exchanges a token for a short-lived one
that a script can use.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl apitoken"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(o.In)
	cmd.SetOut(o.Out)
	cmd.SetErr(o.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newListCommand(o),
		newDescribeCommand(o),
		newRotateCommand(o),
		newRotateKeyCommand(o),
		newRevokeCommand(o),
		newInspectCommand(o),
		newCreateCommand(o),
		newExchangeCommand(o),
	)
	return cmd
}

// client returns a client of the cluster the flags name.
func (o *Options) client() (client.Client, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: o.Scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}

// namespace is --namespace, or else the kubeconfig context's namespace, or "default".
func (o *Options) namespace() (string, error) {
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// loadToken reads the APIToken name in the selected namespace, with the client and
// namespace it was read with, for the commands that then change it.
func (o *Options) loadToken(ctx context.Context, name string) (client.Client, string, *tokensv1.APIToken, error) {
	c, err := o.client()
	if err != nil {
		return nil, "", nil, err
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, "", nil, err
	}
	t, err := getToken(ctx, c, ns, name)
	if err != nil {
		return nil, "", nil, err
	}
	return c, ns, t, nil
}
