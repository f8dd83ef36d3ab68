// Package policy decides who may mint what: whether a namespace may mint tokens for a
// tenant, whether a role exists and is within the tenant's maxRole, whether a lifetime
// is within the issuer's maximum, and which roles a role includes. The APIToken
// controller, the admission webhook and the validator all ask it; none re-implements
// a rule.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy/roles"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Rule names a policy rule, so a refusal says which one was broken.
type Rule string

const (
	RuleTenantNamespace Rule = "TenantNamespace"
	RuleUnknownRole     Rule = "UnknownRole"
	RuleMaxRole         Rule = "MaxRole"
	RuleMaxLifetime     Rule = "MaxLifetime"
	RuleRoleGraph       Rule = "RoleGraph"
)

// Violation is a refused request. Its message names the rule and the values involved,
// never token material.
type Violation struct {
	Rule    Rule
	Message string
}

func (v *Violation) Error() string { return v.Message }

// Roles is an issuer's role graph with inclusion resolved; see package roles.
type Roles = roles.Roles

// NewRoles resolves the inclusion graph of an issuer's spec.roles. It refuses
// unknown roles in includes and cycles, which CEL cannot see, as a RoleGraph
// violation.
func NewRoles(spec []tokensv1.Role) (*Roles, error) {
	list := make([]roles.Role, len(spec))
	for i, r := range spec {
		list[i] = roles.Role{Name: r.Name, Includes: r.Includes}
	}
	r, err := roles.New(list)
	if err != nil {
		return nil, &Violation{Rule: RuleRoleGraph, Message: err.Error()}
	}
	return r, nil
}

// Request is what an APIToken asks to mint.
type Request struct {
	Namespace string
	Tenant    string
	Role      string
	Lifetime  time.Duration
}

// Issuer is an issuer's policy, resolved once and asked many times.
type Issuer struct {
	Roles       *Roles
	tenants     map[string]tokensv1.Tenant
	hasTenants  bool
	maxLifetime time.Duration
	exchange    Exchange
}

// DefaultMaxLifetime applies when an issuer's spec holds none (the API defaults it).
const DefaultMaxLifetime = 8760 * time.Hour

// ForIssuer resolves an issuer's spec. An error means the spec cannot be served and
// the issuer is Stalled.
func ForIssuer(spec *tokensv1.ClusterTokenIssuerSpec) (*Issuer, error) {
	roles, err := NewRoles(spec.Roles)
	if err != nil {
		return nil, err
	}
	p := &Issuer{Roles: roles, tenants: make(map[string]tokensv1.Tenant, len(spec.Tenants)), hasTenants: len(spec.Tenants) > 0, maxLifetime: spec.MaxLifetime.Duration}
	if p.maxLifetime <= 0 {
		p.maxLifetime = DefaultMaxLifetime
	}
	p.exchange = ExchangeOf(spec)
	for _, t := range spec.Tenants {
		if t.MaxRole != "" && !roles.Has(t.MaxRole) {
			return nil, &Violation{Rule: RuleRoleGraph, Message: fmt.Sprintf("tenant %q has maxRole %q, which is not a role of this issuer", t.Name, t.MaxRole)}
		}
		p.tenants[t.Name] = t
	}
	return p, nil
}

// MaxLifetime is the longest lifetime the issuer allows.
func (p *Issuer) MaxLifetime() time.Duration { return p.maxLifetime }

// CheckMint decides whether req may be minted: the rules of CheckMinted, and the
// lifetime within maxLifetime. It returns nil or a *Violation.
func (p *Issuer) CheckMint(req Request) error {
	return p.CheckMintOf(req, nil)
}

// CheckMintOf is CheckMint for a token of either form: memberships, when set, are
// those of a multi-tenant token (req's Tenant and Role are then unset), each checked
// as CheckHeld does. A refused membership is a *MembershipViolation.
func (p *Issuer) CheckMintOf(req Request, memberships []validatorapi.Membership) error {
	if err := p.CheckHeld(req.Namespace, req.Tenant, req.Role, memberships); err != nil {
		return err
	}
	if req.Lifetime > p.maxLifetime {
		return &Violation{Rule: RuleMaxLifetime, Message: fmt.Sprintf("lifetime %s exceeds the issuer's maxLifetime %s", req.Lifetime, p.maxLifetime)}
	}
	return nil
}

// CheckMinted decides whether a token an APIToken in namespace holds for tenant with
// role is still allowed by the policy as it is now, which may have been tightened
// since the token was minted: the tenant is allowed for the namespace, and the role
// is one of the issuer's and within the tenant's maxRole. These are the rules of
// CheckMint but the lifetime, which was fixed when the token was minted. It returns
// nil or a *Violation.
func (p *Issuer) CheckMinted(namespace, tenant, role string) error {
	if err := p.checkTenant(namespace, tenant); err != nil {
		return err
	}
	return p.checkRole(tenant, role)
}

// checkRole decides whether tokens for tenant may carry role: it is one of the
// issuer's roles and within the tenant's maxRole.
func (p *Issuer) checkRole(tenant, role string) error {
	if !p.Roles.Has(role) {
		return &Violation{Rule: RuleUnknownRole, Message: fmt.Sprintf("role %q is not one of the issuer's roles (%s)", role, strings.Join(p.roleNames(), ", "))}
	}
	if t, ok := p.tenants[tenant]; ok && t.MaxRole != "" && !p.Roles.Grants(t.MaxRole, role) {
		return &Violation{Rule: RuleMaxRole, Message: fmt.Sprintf("role %q is above tenant %q's maxRole %q", role, tenant, t.MaxRole)}
	}
	return nil
}

// checkTenant decides whether namespace may mint tokens for tenant: the issuer's
// tenants list says so, or, without a list, the tenant is named like the namespace.
func (p *Issuer) checkTenant(namespace, tenant string) error {
	if !p.hasTenants {
		if tenant != namespace {
			return &Violation{Rule: RuleTenantNamespace, Message: fmt.Sprintf("namespace %q may mint tokens only for tenant %q (the issuer has no tenants list), not %q", namespace, namespace, tenant)}
		}
		return nil
	}
	t, ok := p.tenants[tenant]
	if !ok {
		return &Violation{Rule: RuleTenantNamespace, Message: fmt.Sprintf("tenant %q is not in the issuer's tenants list", tenant)}
	}
	if !slices.Contains(t.Namespaces, namespace) {
		return &Violation{Rule: RuleTenantNamespace, Message: fmt.Sprintf("namespace %q may not mint tokens for tenant %q", namespace, tenant)}
	}
	return nil
}

func (p *Issuer) roleNames() []string { return p.Roles.Names() }

// MinPickupTime is how long a pod needs to see a rotated Secret: the kubelet syncs
// mounted Secrets about once a minute, plus its cache TTL. A renewBefore or gracePeriod
// shorter than this risks a pod presenting a token that is no longer accepted, the way
// Kubernetes requires projected service-account tokens to live at least 10 minutes.
const MinPickupTime = 2 * time.Minute

// RotationWarnings lists what a spec allows but is probably wrong: rotation windows
// shorter than a pod needs to pick up a new token, in a stable order. renewBefore and
// gracePeriod are spec.rotation's, zero when unset: an unset window takes its default
// from the lifetime and is not warned about. path is where the caller's reader finds
// the rotation spec: spec.rotation for the admission webhook's warnings, rotation for
// the APIToken controller's Ready condition, whose message speaks of the spec.
func RotationWarnings(path *field.Path, renewBefore, gracePeriod time.Duration) []string {
	var w []string
	if renewBefore > 0 && renewBefore < MinPickupTime {
		w = append(w, fmt.Sprintf("%s %s is shorter than %s: pods may not pick up the new token before the old one expires", path.Child("renewBefore"), renewBefore, MinPickupTime))
	}
	if gracePeriod > 0 && gracePeriod < MinPickupTime {
		w = append(w, fmt.Sprintf("%s %s is shorter than %s: pods may still present the previous token after it stopped being accepted", path.Child("gracePeriod"), gracePeriod, MinPickupTime))
	}
	return w
}
