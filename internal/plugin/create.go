package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

type createOptions struct {
	*Options
	tenant, subTenant, role string
	scopes, audiences       []string
	lifetime                time.Duration
	renewBefore, grace      time.Duration
	noRotation              bool
	format                  string
	issuer                  string
	secretName              string
	description             string
	output                  string
	apply                   bool
}

func newCreateCommand(o *Options) *cobra.Command {
	c := &createOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "create NAME --tenant TENANT --role ROLE",
		Short: "Write an APIToken manifest, for Git; apply it only with --apply",
		Long: `create prints an APIToken manifest built from the flags. The manifest holds no
secret material, so it is safe to commit for Argo CD or Flux. With --apply it is
also applied to the cluster (server-side apply), where the operator mints the token.`,
		Example: `  # A manifest for the CI pipeline of tenant acme, into Git
  kubectl apitoken create ci-pipeline -n acme --tenant acme --role editor --lifetime 720h > ci-pipeline.yaml

  # Create it in the cluster right away
  kubectl apitoken create ci-pipeline -n acme --tenant acme --role editor --apply`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd.Context(), args[0], cmd.Flags().Changed("lifetime"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.tenant, "tenant", "", "Tenant of the token (required).")
	f.StringVar(&c.subTenant, "sub-tenant", "", "Sub-tenant of the token.")
	f.StringVar(&c.role, "role", "", "Role of the token, one of the issuer's roles (required).")
	f.StringSliceVar(&c.scopes, "scopes", nil, "Scopes carried in the token, comma-separated.")
	f.StringSliceVar(&c.audiences, "audiences", nil, "Audiences of the token, comma-separated (default: the issuer's).")
	f.DurationVar(&c.lifetime, "lifetime", 720*time.Hour, "Lifetime of each minted token.")
	f.DurationVar(&c.renewBefore, "renew-before", 0, "How long before expiry a new token is minted (default: a third of the lifetime).")
	f.DurationVar(&c.grace, "grace-period", 0, "How long the previous token stays valid after a rotation (default: until it expires).")
	f.BoolVar(&c.noRotation, "no-rotation", false, "Let the token expire instead of rotating it.")
	f.StringVar(&c.format, "format", "", "Token format: JWT or Opaque (default: the issuer's).")
	f.StringVar(&c.issuer, "issuer", "", "ClusterTokenIssuer that signs the token (default: default).")
	f.StringVar(&c.secretName, "secret-name", "", "Secret the token is written to (default: NAME).")
	f.StringVar(&c.description, "description", "", "What the token is for, for humans.")
	f.StringVarP(&c.output, "output", "o", outputYAML, "Output format: yaml or json.")
	f.BoolVar(&c.apply, "apply", false, "Apply the manifest to the cluster instead of only printing it.")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func (c *createOptions) run(ctx context.Context, name string, lifetimeSet bool) error {
	if err := checkOutput(c.output, outputJSON, outputYAML); err != nil {
		return err
	}
	ns, err := c.namespace()
	if err != nil {
		return err
	}
	t, err := c.build(ns, name, lifetimeSet)
	if err != nil {
		return err
	}
	if !c.apply {
		return c.print(t)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	u, err := manifest(t)
	if err != nil {
		return err
	}
	if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "apitoken/%s applied in namespace %s\n", name, ns)
	return nil
}

// build turns the flags into an APIToken, refusing what the API would refuse
// anyway, with flag names in the messages.
func (c *createOptions) build(ns, name string, lifetimeSet bool) (*tokensv1.APIToken, error) {
	for _, f := range []struct{ flag, value string }{{"NAME", name}, {"--secret-name", c.secretName}, {"--issuer", c.issuer}} {
		if f.value != "" && len(validation.IsDNS1123Subdomain(f.value)) > 0 {
			return nil, fmt.Errorf("%s %q is not a valid name", f.flag, f.value)
		}
	}
	for _, f := range []struct{ flag, value string }{{"--tenant", c.tenant}, {"--sub-tenant", c.subTenant}, {"--role", c.role}} {
		if f.value != "" && len(validation.IsDNS1123Label(f.value)) > 0 {
			return nil, fmt.Errorf("%s %q is not a DNS label", f.flag, f.value)
		}
	}
	switch tokensv1.TokenFormat(c.format) {
	case "", tokensv1.FormatJWT, tokensv1.FormatOpaque:
	default:
		return nil, fmt.Errorf("--format %q: use JWT or Opaque", c.format)
	}
	if c.lifetime < time.Minute {
		return nil, fmt.Errorf("--lifetime %s: the minimum is 1m", c.lifetime)
	}
	if c.renewBefore < 0 || (c.renewBefore > 0 && c.renewBefore >= c.lifetime) {
		return nil, fmt.Errorf("--renew-before %s must be shorter than --lifetime %s", c.renewBefore, c.lifetime)
	}
	if c.grace < 0 || c.grace > c.lifetime {
		return nil, fmt.Errorf("--grace-period %s may not be longer than --lifetime %s", c.grace, c.lifetime)
	}
	if c.noRotation && (c.renewBefore > 0 || c.grace > 0) {
		return nil, fmt.Errorf("--no-rotation does not go with --renew-before or --grace-period")
	}

	t := &tokensv1.APIToken{
		TypeMeta:   metav1.TypeMeta{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tokensv1.APITokenSpec{
			IssuerRef:   tokensv1.IssuerReference{Name: c.issuer},
			Tenant:      c.tenant,
			SubTenant:   c.subTenant,
			Role:        c.role,
			Scopes:      c.scopes,
			Audiences:   c.audiences,
			Format:      tokensv1.TokenFormat(c.format),
			Description: c.description,
		},
	}
	// An unchanged default stays out of the manifest, so that the API's default
	// applies, and changes with it.
	if lifetimeSet {
		t.Spec.Lifetime = metav1.Duration{Duration: c.lifetime}
	}
	switch {
	case c.noRotation:
		t.Spec.Rotation = &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled}
	case c.renewBefore > 0 || c.grace > 0:
		t.Spec.Rotation = &tokensv1.RotationSpec{}
		if c.renewBefore > 0 {
			t.Spec.Rotation.RenewBefore = &metav1.Duration{Duration: c.renewBefore}
		}
		if c.grace > 0 {
			t.Spec.Rotation.GracePeriod = &metav1.Duration{Duration: c.grace}
		}
	}
	if c.secretName != "" {
		t.Spec.Secret = &tokensv1.SecretSpec{Name: c.secretName}
	}
	return t, nil
}

// manifest is t as it belongs in Git: no status, no empty metadata.
func manifest(t *tokensv1.APIToken) (*unstructured.Unstructured, error) {
	m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(t)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if ref, ok := spec["issuerRef"].(map[string]any); ok && ref["name"] == "" {
			delete(spec, "issuerRef")
		}
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func (c *createOptions) print(t *tokensv1.APIToken) error {
	u, err := manifest(t)
	if err != nil {
		return err
	}
	return printObject(c.Out, c.output, u, t.GroupVersionKind())
}
