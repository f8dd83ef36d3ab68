package policy

import (
	"fmt"
	"math"
	"slices"
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Rules of token exchange. Each refusal names the bound it hit; nothing is clamped.
const (
	RuleExchangeDisabled   Rule = "ExchangeDisabled"
	RuleExchangeDepth      Rule = "ExchangeDepth"
	RuleTenantRequired     Rule = "TenantRequired"
	RuleSubTenantRequired  Rule = "SubTenantRequired"
	RuleTenantNarrowing    Rule = "TenantNarrowing"
	RuleSubTenantNarrowing Rule = "SubTenantNarrowing"
	RuleRoleNarrowing      Rule = "RoleNarrowing"
	RuleScopeNarrowing     Rule = "ScopeNarrowing"
	RuleAudienceNarrowing  Rule = "AudienceNarrowing"
	RuleExchangeLifetime   Rule = "ExchangeLifetime"
)

// Defaults of an issuer's exchange policy, as the API defaults them.
const (
	DefaultExchangeLifetime    = 600 * time.Second
	DefaultExchangeMaxLifetime = 24 * time.Hour
	DefaultExchangeMaxDepth    = 4
)

// Grant is what a token grants, in the terms token exchange narrows: a listed token's
// record, or the claims of an exchanged token.
type Grant struct {
	Tenant    string
	SubTenant string
	Role      string
	// Memberships are a multi-tenant token's; Tenant, SubTenant and Role are then
	// empty. Only a listed token has them: an exchange selects one membership.
	Memberships []validatorapi.Membership
	Scopes      []string
	Audiences   []string
	// NotAfter is the instant from which the token is refused.
	NotAfter time.Time
	// Depth is 0 for a listed token and n for a token n exchanges away from one.
	Depth int
}

// ExchangeRequest is what a client asks an exchange for. An empty field keeps the
// parent's value; a zero Lifetime takes the issuer's default.
type ExchangeRequest struct {
	Tenant    string
	SubTenant string
	Role      string
	Scopes    []string
	Audiences []string
	Lifetime  time.Duration
}

// Exchange is an issuer's exchange policy with the API's defaults applied.
type Exchange struct {
	Enabled                 bool
	DefaultLifetime         time.Duration
	MaxLifetime             time.Duration
	RequireTenant           bool
	RequireSubTenant        bool
	AllowSubTenantSelection bool
	Audiences               []string
	// RatePerMinute bounds exchanges per parent token and minute; 0: no bound.
	RatePerMinute int
	MaxDepth      int
}

// ExchangeOf resolves spec.exchange; an issuer without one does not exchange.
func ExchangeOf(spec *tokensv1.ClusterTokenIssuerSpec) Exchange {
	e := spec.Exchange
	if e == nil {
		return Exchange{}
	}
	out := Exchange{
		Enabled:                 e.Enabled,
		DefaultLifetime:         e.DefaultLifetime.Duration,
		MaxLifetime:             e.MaxLifetime.Duration,
		RequireTenant:           e.RequireTenant,
		RequireSubTenant:        e.RequireSubTenant,
		AllowSubTenantSelection: e.AllowSubTenantSelection,
		Audiences:               e.Audiences,
		RatePerMinute:           int(e.RatePerMinute),
		MaxDepth:                int(e.MaxDepth),
	}
	if out.MaxLifetime <= 0 {
		out.MaxLifetime = DefaultExchangeMaxLifetime
	}
	if out.DefaultLifetime <= 0 {
		out.DefaultLifetime = min(DefaultExchangeLifetime, out.MaxLifetime)
	}
	if out.MaxDepth <= 0 {
		out.MaxDepth = DefaultExchangeMaxDepth
	}
	return out
}

// Exchange decides what a token exchange issues: the parent's grant narrowed by req,
// living req.Lifetime (or the default) from now. A request that asks for more than a
// bound allows is refused with a *Violation naming the bound. A default lifetime that
// would outlive the parent is shortened to the parent's remaining life, since the
// client asked for no particular one; an explicit lifetime is never shortened.
func (p *Issuer) Exchange(parent Grant, req ExchangeRequest, now time.Time) (Grant, error) {
	x := p.exchange
	if !x.Enabled {
		return Grant{}, violation(RuleExchangeDisabled, "the issuer does not allow token exchange (spec.exchange.enabled)")
	}
	if parent.Depth >= x.MaxDepth {
		return Grant{}, violation(RuleExchangeDepth, fmt.Sprintf("the token is %d exchanges from its listed parent, and the issuer allows chains of at most %d (spec.exchange.maxDepth)", parent.Depth, x.MaxDepth))
	}
	if x.RequireTenant && req.Tenant == "" {
		return Grant{}, violation(RuleTenantRequired, "Tenant ID is required")
	}
	if x.RequireSubTenant && req.SubTenant == "" {
		return Grant{}, violation(RuleSubTenantRequired, "Sub-tenant ID is required")
	}
	parent, err := parent.member(req.Tenant)
	if err != nil {
		return Grant{}, err
	}
	child := Grant{
		Tenant:    or(req.Tenant, parent.Tenant),
		SubTenant: or(req.SubTenant, parent.SubTenant),
		Role:      or(req.Role, parent.Role),
		Scopes:    parent.Scopes,
		Audiences: parent.Audiences,
		Depth:     parent.Depth + 1,
	}
	if req.Scopes != nil {
		child.Scopes = req.Scopes
	}
	if req.Audiences != nil {
		child.Audiences = req.Audiences
	}
	remaining := parent.NotAfter.Sub(now)
	switch life := req.Lifetime; {
	case life < 0:
		return Grant{}, violation(RuleExchangeLifetime, "the lifetime must be positive")
	case life > x.MaxLifetime:
		return Grant{}, violation(RuleExchangeLifetime, fmt.Sprintf("a lifetime of %s exceeds the issuer's exchange maximum of %s (spec.exchange.maxLifetime)", seconds(life), seconds(x.MaxLifetime)))
	case life > remaining:
		return Grant{}, violation(RuleExchangeLifetime, fmt.Sprintf("a lifetime of %s exceeds the %s the token itself remains valid", seconds(life), seconds(remaining)))
	case life == 0:
		life = min(x.DefaultLifetime, remaining)
		child.NotAfter = now.Add(life)
	default:
		child.NotAfter = now.Add(life)
	}
	if err := p.CheckExchanged(parent, child); err != nil {
		return Grant{}, err
	}
	return child, nil
}

// CheckExchanged decides whether child may descend from parent under the issuer's
// exchange policy as it is now: exchange still enabled, the chain within maxDepth,
// and child no wider than parent in tenant, sub-tenant, role, scopes and audiences.
// The exchange service asks it before signing and the validator on every exchanged
// token it accepts, so a policy tightened later refuses tokens issued before. Life is
// not compared: Exchange bounds it when issuing, and afterwards the child lives only
// while the parent is accepted, however a rotation shortened the parent's life.
func (p *Issuer) CheckExchanged(parent, child Grant) error {
	x := p.exchange
	switch {
	case !x.Enabled:
		return violation(RuleExchangeDisabled, "the issuer does not allow token exchange (spec.exchange.enabled)")
	case child.Depth > x.MaxDepth:
		return violation(RuleExchangeDepth, fmt.Sprintf("a chain of %d exchanges exceeds the issuer's maximum of %d (spec.exchange.maxDepth)", child.Depth, x.MaxDepth))
	case len(child.Memberships) > 0:
		return violation(RuleTenantNarrowing, "an exchanged token is of one tenant")
	}
	parent, err := parent.member(child.Tenant)
	if err != nil {
		return err
	}
	switch {
	case child.Tenant != parent.Tenant:
		return violation(RuleTenantNarrowing, fmt.Sprintf("tenant %q is not the token's tenant", child.Tenant))
	case parent.SubTenant != "" && child.SubTenant != parent.SubTenant:
		return violation(RuleSubTenantNarrowing, fmt.Sprintf("sub-tenant %q is not the token's sub-tenant", child.SubTenant))
	case parent.SubTenant == "" && child.SubTenant != "" && !x.AllowSubTenantSelection:
		return violation(RuleSubTenantNarrowing, "the token is bound to no sub-tenant, and the issuer does not allow choosing one (spec.exchange.allowSubTenantSelection)")
	case !p.Roles.Grants(parent.Role, child.Role):
		return violation(RuleRoleNarrowing, fmt.Sprintf("role %q is not granted by the token's role %q", child.Role, parent.Role))
	}
	for _, s := range child.Scopes {
		if !slices.Contains(parent.Scopes, s) {
			return violation(RuleScopeNarrowing, fmt.Sprintf("scope %q is not one of the token's scopes", s))
		}
	}
	for _, a := range child.Audiences {
		if !slices.Contains(parent.Audiences, a) && !slices.Contains(x.Audiences, a) {
			return violation(RuleAudienceNarrowing, fmt.Sprintf("audience %q is neither one of the token's nor one of the issuer's exchange audiences (spec.exchange.audiences)", a))
		}
	}
	return nil
}

// member is, for a multi-tenant grant, the single-tenant grant of its membership of
// tenant: what an exchange for that tenant narrows. A single-tenant grant is itself.
// A multi-tenant grant without a tenant to select, or that is no member of it, is
// refused.
func (g Grant) member(tenant string) (Grant, error) {
	if len(g.Memberships) == 0 {
		return g, nil
	}
	if tenant == "" {
		return Grant{}, violation(RuleTenantRequired, "Tenant ID is required: the token is a member of several tenants")
	}
	m := membershipOf(g.Memberships, tenant)
	if m == nil {
		return Grant{}, violation(RuleTenantNarrowing, fmt.Sprintf("the token is not a member of tenant %q", tenant))
	}
	g.Tenant, g.SubTenant, g.Role, g.Memberships = m.Tenant, m.SubTenant, m.Role, nil
	return g, nil
}

// ExchangePolicy is the issuer's exchange policy.
func (p *Issuer) ExchangePolicy() Exchange { return p.exchange }

func violation(r Rule, msg string) *Violation { return &Violation{Rule: r, Message: msg} }

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// seconds writes d as whole seconds, rounded down, the unit exchange requests use.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%d seconds", int64(math.Max(0, math.Floor(d.Seconds()))))
}
