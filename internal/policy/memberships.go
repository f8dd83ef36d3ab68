package policy

import (
	"errors"
	"fmt"
	"slices"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// A token is either of one tenant (tenant, sub-tenant and role) or, in the
// multi-tenant form, a member of several, each membership with a sub-tenant and a
// role of its own. Every rule of the mint policy applies to each membership as it
// applies to the one tenant of a single-tenant token.

// Memberships converts the API's memberships; none is nil, the mark of a
// single-tenant token.
func Memberships(ms []tokensv1.Membership) []validatorapi.Membership {
	if len(ms) == 0 {
		return nil
	}
	out := make([]validatorapi.Membership, len(ms))
	for i, m := range ms {
		out[i] = validatorapi.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role}
	}
	return out
}

// MembershipViolation is a Violation of one membership of a multi-tenant token. It
// unwraps to the Violation, so errors.As finds the rule.
type MembershipViolation struct {
	// Index is the membership's position in spec.memberships.
	Index int
	*Violation
}

func (v *MembershipViolation) Error() string {
	return fmt.Sprintf("memberships[%d]: %s", v.Index, v.Message)
}

func (v *MembershipViolation) Unwrap() error { return v.Violation }

// CheckMemberships decides CheckMinted for each membership of a multi-tenant token
// of namespace: every tenant allowed for the namespace, every role one of the
// issuer's and within its tenant's maxRole. The first refusal is a
// *MembershipViolation naming the membership.
func (p *Issuer) CheckMemberships(namespace string, ms []validatorapi.Membership) error {
	for i, m := range ms {
		if err := p.CheckMinted(namespace, m.Tenant, m.Role); err != nil {
			var v *Violation
			if errors.As(err, &v) {
				return &MembershipViolation{Index: i, Violation: v}
			}
			return err
		}
	}
	return nil
}

// CheckHeld decides whether the tokens of namespace may still grant what they grant,
// by the policy as it is now: CheckMinted of tenant and role for a single-tenant
// token, CheckMemberships for a multi-tenant one (memberships set).
func (p *Issuer) CheckHeld(namespace, tenant, role string, memberships []validatorapi.Membership) error {
	if len(memberships) > 0 {
		return p.CheckMemberships(namespace, memberships)
	}
	return p.CheckMinted(namespace, tenant, role)
}

// HeldRoles names the roles a token holds: role, or for a multi-tenant token the role
// of each membership, each once, in order. Who mints the token must be allowed to mint
// each of them.
func HeldRoles(role string, memberships []validatorapi.Membership) []string {
	if len(memberships) == 0 {
		return []string{role}
	}
	var out []string
	for _, m := range memberships {
		if !slices.Contains(out, m.Role) {
			out = append(out, m.Role)
		}
	}
	return out
}

// membershipOf is the membership of ms for tenant, or nil.
func membershipOf(ms []validatorapi.Membership, tenant string) *validatorapi.Membership {
	for i := range ms {
		if ms[i].Tenant == tenant {
			return &ms[i]
		}
	}
	return nil
}
