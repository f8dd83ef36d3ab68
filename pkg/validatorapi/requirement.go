package validatorapi

import (
	"errors"
	"net/http"
	"strings"
)

// Requirement is what a request must be allowed: a tenant, a sub-tenant and a role,
// each optional. An empty field requires nothing.
type Requirement struct {
	Tenant    string `json:"tenant,omitempty"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role,omitempty"`
}

// Validate checks that each field is empty or a DNS label, as the API requires of
// tenants, sub-tenants and roles: anything else can match no token and is a mistake
// in the caller's configuration, not a reason to refuse the token. The error names
// the field, not its value, so it is safe to send back.
func (r Requirement) Validate() error {
	for _, f := range []struct{ name, value string }{{"tenant", r.Tenant}, {"subTenant", r.SubTenant}, {"role", r.Role}} {
		if f.value != "" && !isDNSLabel(f.value) {
			return errors.New("required " + f.name + " is not a DNS label")
		}
	}
	return nil
}

// isDNSLabel reports whether s is an RFC 1123 label as Kubernetes validates one: 1 to
// 63 characters of lower-case letters, digits and '-', starting and ending with a
// letter or digit.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}

// Decide is the requirement's answer for an authenticated token minted for tenant,
// subTenant and role: an HTTP status and its reason. grants reports whether a token
// with role have passes a check that requires role want (the issuer's role graph).
// mismatchStatus answers a token of another tenant or sub-tenant: 404, which does not
// tell whether the resource exists, or 403 behind proxies that understand no 404.
//
// The tenant is checked first, so that another tenant's token learns nothing about
// the roles a resource requires.
func (r Requirement) Decide(tenant, subTenant, role string, grants func(have, want string) bool, mismatchStatus int) (status int, reason string) {
	switch {
	case r.Tenant != "" && r.Tenant != tenant:
		return mismatchStatus, ReasonTenantMismatch
	case r.SubTenant != "" && r.SubTenant != subTenant:
		return mismatchStatus, ReasonSubTenantMismatch
	case r.Role != "" && !grants(role, r.Role):
		return http.StatusForbidden, ReasonInsufficientRole
	}
	return http.StatusOK, ReasonAllowed
}

// Membership is one tenant a multi-tenant token is a member of, with the sub-tenant
// and the role it holds there.
type Membership struct {
	Tenant    string `json:"tenant"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role"`
}

// String writes the membership as "tenant:role", or "tenant/subTenant:role": the form
// of HeaderTokenMemberships and ExtraMemberships. Tenants, sub-tenants and roles are
// DNS labels, so neither separator can occur in them.
func (m Membership) String() string {
	if m.SubTenant != "" {
		return m.Tenant + "/" + m.SubTenant + ":" + m.Role
	}
	return m.Tenant + ":" + m.Role
}

// ParseMembership reads a membership written as String writes it, "tenant:role" or
// "tenant/subTenant:role", each part a DNS label. The error names the part, not the
// value.
func ParseMembership(s string) (Membership, error) {
	who, role, ok := strings.Cut(s, ":")
	if !ok {
		return Membership{}, errors.New(`a membership is "tenant:role" or "tenant/subTenant:role"`)
	}
	tenant, subTenant, hasSub := strings.Cut(who, "/")
	m := Membership{Tenant: tenant, SubTenant: subTenant, Role: role}
	for _, f := range []struct{ name, value string }{{"tenant", m.Tenant}, {"role", m.Role}} {
		if !isDNSLabel(f.value) {
			return Membership{}, errors.New("the membership's " + f.name + " is not a DNS label")
		}
	}
	if hasSub && !isDNSLabel(m.SubTenant) {
		return Membership{}, errors.New("the membership's sub-tenant is not a DNS label")
	}
	return m, nil
}

// DecideMembership is Decide for a token that is a member of several tenants: the
// required tenant selects the token's membership of that tenant, which Decide then
// judges. selected is that membership's index in memberships, or -1 when none was
// selected.
//
// A tenant the token is not a member of gets mismatchStatus, as another tenant's token
// does. A requirement that names no tenant cannot select a membership: it is refused
// with 403 and ReasonTenantRequired, unless it requires nothing at all, since the token
// is then only authenticated.
func (r Requirement) DecideMembership(memberships []Membership, grants func(have, want string) bool, mismatchStatus int) (status int, reason string, selected int) {
	if r.Tenant == "" {
		if r == (Requirement{}) {
			return http.StatusOK, ReasonAllowed, -1
		}
		return http.StatusForbidden, ReasonTenantRequired, -1
	}
	for i := range memberships {
		if m := &memberships[i]; m.Tenant == r.Tenant {
			status, reason = r.Decide(m.Tenant, m.SubTenant, m.Role, grants, mismatchStatus)
			return status, reason, i
		}
	}
	return mismatchStatus, ReasonTenantMismatch, -1
}
