// Package policy decides who may mint what: whether a namespace may mint tokens for a
// tenant, whether a role exists and is within the tenant's maxRole, whether a lifetime
// is within the issuer's maximum, and which roles a role includes. The APIToken
// controller, the admission webhook and the validator all ask it; none re-implements
// a rule.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
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

// Roles is an issuer's role graph with inclusion resolved: each role maps to the set of
// roles it grants, itself included.
type Roles struct {
	grants map[string]map[string]struct{}
}

// NewRoles resolves the inclusion graph. It refuses unknown roles in includes and
// cycles, which CEL cannot see.
func NewRoles(roles []tokensv1.Role) (*Roles, error) {
	byName := make(map[string][]string, len(roles))
	for _, r := range roles {
		byName[r.Name] = r.Includes
	}
	for _, r := range roles {
		for _, inc := range r.Includes {
			if _, ok := byName[inc]; !ok {
				return nil, &Violation{Rule: RuleRoleGraph, Message: fmt.Sprintf("role %q includes %q, which is not a role of this issuer", r.Name, inc)}
			}
		}
	}
	// Depth-first search with colours finds cycles and computes closures in one pass.
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(roles))
	grants := make(map[string]map[string]struct{}, len(roles))
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			cycle := append(path[slices.Index(path, name):], name)
			return &Violation{Rule: RuleRoleGraph, Message: "roles form an inclusion cycle: " + strings.Join(cycle, " -> ")}
		}
		state[name] = visiting
		set := map[string]struct{}{name: {}}
		for _, inc := range byName[name] {
			if err := visit(inc, append(path, name)); err != nil {
				return err
			}
			for g := range grants[inc] {
				set[g] = struct{}{}
			}
		}
		grants[name] = set
		state[name] = done
		return nil
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic error messages
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return &Roles{grants: grants}, nil
}

// Has reports whether role is one of the issuer's roles.
func (r *Roles) Has(role string) bool {
	_, ok := r.grants[role]
	return ok
}

// Grants reports whether a token with role have passes a check that requires want.
func (r *Roles) Grants(have, want string) bool {
	_, ok := r.grants[have][want]
	return ok
}

// Expand returns the roles that role grants, itself included, sorted.
func (r *Roles) Expand(role string) []string {
	out := make([]string, 0, len(r.grants[role]))
	for g := range r.grants[role] {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
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

// CheckMint decides whether req may be minted. It returns nil or a *Violation.
func (p *Issuer) CheckMint(req Request) error {
	if err := p.CheckTenant(req.Namespace, req.Tenant); err != nil {
		return err
	}
	if err := p.CheckRole(req.Tenant, req.Role); err != nil {
		return err
	}
	if req.Lifetime > p.maxLifetime {
		return &Violation{Rule: RuleMaxLifetime, Message: fmt.Sprintf("lifetime %s exceeds the issuer's maxLifetime %s", req.Lifetime, p.maxLifetime)}
	}
	return nil
}

// CheckRole decides whether tokens for tenant may carry role: it is one of the
// issuer's roles and within the tenant's maxRole.
func (p *Issuer) CheckRole(tenant, role string) error {
	if !p.Roles.Has(role) {
		return &Violation{Rule: RuleUnknownRole, Message: fmt.Sprintf("role %q is not one of the issuer's roles (%s)", role, strings.Join(p.roleNames(), ", "))}
	}
	if t, ok := p.tenants[tenant]; ok && t.MaxRole != "" && !p.Roles.Grants(t.MaxRole, role) {
		return &Violation{Rule: RuleMaxRole, Message: fmt.Sprintf("role %q is above tenant %q's maxRole %q", role, tenant, t.MaxRole)}
	}
	return nil
}

// CheckTenant decides whether namespace may mint tokens for tenant: the issuer's
// tenants list says so, or, without a list, the tenant is named like the namespace.
func (p *Issuer) CheckTenant(namespace, tenant string) error {
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

func (p *Issuer) roleNames() []string {
	names := make([]string, 0, len(p.Roles.grants))
	for n := range p.Roles.grants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// MinPickupTime is how long a pod needs to see a rotated Secret: the kubelet syncs
// mounted Secrets about once a minute, plus its cache TTL. A renewBefore or gracePeriod
// shorter than this risks a pod presenting a token that is no longer accepted, the way
// Kubernetes requires projected service-account tokens to live at least 10 minutes.
const MinPickupTime = 2 * time.Minute

// RotationWarnings lists what a spec allows but is probably wrong: rotation windows
// shorter than a pod needs to pick up a new token.
func RotationWarnings(spec *tokensv1.APITokenSpec) []string {
	var w []string
	if r := spec.Rotation; r != nil {
		if r.RenewBefore != nil && r.RenewBefore.Duration < MinPickupTime {
			w = append(w, fmt.Sprintf("spec.rotation.renewBefore %s is shorter than %s: pods may not pick up the new token before the old one expires", r.RenewBefore.Duration, MinPickupTime))
		}
		if r.GracePeriod != nil && r.GracePeriod.Duration < MinPickupTime {
			w = append(w, fmt.Sprintf("spec.rotation.gracePeriod %s is shorter than %s: pods may still present the previous token after it stopped being accepted", r.GracePeriod.Duration, MinPickupTime))
		}
	}
	return w
}
