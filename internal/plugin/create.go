package plugin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

type createOptions struct {
	*Options
	tenant, subTenant, role string
	memberships             []string
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
		Use:   "create NAME (--tenant TENANT --role ROLE | --membership TENANT:ROLE...)",
		Short: "Write an APIToken manifest, for Git; apply it only with --apply",
		Long: `create prints an APIToken manifest built from the flags. The manifest holds no
secret material, so it is safe to commit for Argo CD or Flux. With --apply it is
also applied to the cluster (server-side apply), where the operator mints the token.

A token is of one tenant (--tenant, --sub-tenant, --role), or a member of several,
each with its own role: one --membership per tenant.`,
		Example: `  # A manifest for the CI pipeline of tenant acme, into Git
  kubectl apitoken create ci-pipeline -n acme --tenant acme --role editor --lifetime 720h > ci-pipeline.yaml

  # Create it in the cluster right away
  kubectl apitoken create ci-pipeline -n acme --tenant acme --role editor --apply

  # One token for two tenants: editor in acme, viewer in globex's eu sub-tenant
  kubectl apitoken create support -n platform --membership acme:editor --membership globex/eu:viewer`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd.Context(), args[0], cmd.Flags().Changed("lifetime"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.tenant, "tenant", "", "Tenant of the token (required).")
	f.StringVar(&c.subTenant, "sub-tenant", "", "Sub-tenant of the token.")
	f.StringVar(&c.role, "role", "", "Role of the token, one of the issuer's roles (required).")
	f.StringArrayVar(&c.memberships, "membership", nil, "A tenant of a multi-tenant token and its role there, TENANT:ROLE or TENANT/SUB-TENANT:ROLE; repeat for each tenant. Replaces --tenant, --sub-tenant and --role.")
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
	memberships, err := c.parseMemberships()
	if err != nil {
		return nil, err
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
			Memberships: memberships,
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

// parseMemberships reads --membership, refusing what the API would: it beside
// --tenant, --sub-tenant or --role, a tenant twice, or neither form.
func (c *createOptions) parseMemberships() ([]tokensv1.Membership, error) {
	if len(c.memberships) == 0 {
		var missing []string
		for _, f := range []struct{ name, value string }{{"tenant", c.tenant}, {"role", c.role}} {
			if f.value == "" {
				missing = append(missing, strconv.Quote(f.name))
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("required flag(s) %s not set, or give --membership for each tenant", strings.Join(missing, ", "))
		}
		return nil, nil
	}
	if c.tenant != "" || c.subTenant != "" || c.role != "" {
		return nil, fmt.Errorf("--membership replaces --tenant, --sub-tenant and --role: give either")
	}
	out := make([]tokensv1.Membership, 0, len(c.memberships))
	for _, s := range c.memberships {
		m, err := validatorapi.ParseMembership(s)
		if err != nil {
			return nil, fmt.Errorf("--membership %q: %w", s, err)
		}
		if slices.ContainsFunc(out, func(o tokensv1.Membership) bool { return o.Tenant == m.Tenant }) {
			return nil, fmt.Errorf("--membership: tenant %q is named twice", m.Tenant)
		}
		out = append(out, tokensv1.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role})
	}
	return out, nil
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
