package validatorapi

import (
	"net/http"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TestIsDNSLabel holds isDNSLabel to the rule the API server applies to tenants,
// sub-tenants and roles.
func TestIsDNSLabel(t *testing.T) {
	for _, s := range []string{
		"", "a", "z", "0", "9", "acme", "acme-corp", "a-b-c", "a--b", "0a", "a0", "123",
		"-a", "a-", "-", "--", "Acme", "ACME", "a_b", "a.b", "a b", " a", "a\n", "é", "a\x00",
		strings.Repeat("a", 62), strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("a", 62) + "-", "a" + strings.Repeat("-", 61) + "b", strings.Repeat("a", 300),
	} {
		want := len(validation.IsDNS1123Label(s)) == 0
		if got := isDNSLabel(s); got != want {
			t.Errorf("isDNSLabel(%q) = %t, Kubernetes says %t", s, got, want)
		}
	}
}

// FuzzIsDNSLabel compares isDNSLabel with Kubernetes on any input.
func FuzzIsDNSLabel(f *testing.F) {
	for _, s := range []string{"acme", "-a", "a-", "A", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDNSLabel(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("isDNSLabel(%q) = %t, Kubernetes says %t", s, got, want)
		}
	})
}

func TestRequirementValidate(t *testing.T) {
	for _, tc := range []struct {
		req  Requirement
		want string // "" means valid
	}{
		{Requirement{}, ""},
		{Requirement{Tenant: "acme", SubTenant: "payments", Role: "editor"}, ""},
		{Requirement{Tenant: "Acme_Corp"}, "required tenant is not a DNS label"},
		{Requirement{Tenant: "acme", SubTenant: "pay.ments"}, "required subTenant is not a DNS label"},
		{Requirement{Role: "-editor"}, "required role is not a DNS label"},
		{Requirement{Tenant: "x y", Role: "-editor"}, "required tenant is not a DNS label"},
	} {
		err := tc.req.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.req, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%+v: got %v, want %q", tc.req, err, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	// editor includes viewer.
	grants := func(have, want string) bool { return have == want || (have == "editor" && want == "viewer") }
	type token struct{ tenant, subTenant, role string }
	editor := token{"acme", "payments", "editor"}
	viewer := token{"acme", "", "viewer"}
	for _, tc := range []struct {
		name     string
		req      Requirement
		tok      token
		mismatch int
		status   int
		reason   string
	}{
		{"nothing required", Requirement{}, viewer, 404, 200, ReasonAllowed},
		{"everything met", Requirement{Tenant: "acme", SubTenant: "payments", Role: "editor"}, editor, 404, 200, ReasonAllowed},
		{"included role", Requirement{Role: "viewer"}, editor, 404, 200, ReasonAllowed},
		{"role too low", Requirement{Tenant: "acme", Role: "editor"}, viewer, 404, 403, ReasonInsufficientRole},
		{"other tenant", Requirement{Tenant: "globex"}, editor, 404, 404, ReasonTenantMismatch},
		{"other tenant, configured status", Requirement{Tenant: "globex"}, editor, 403, 403, ReasonTenantMismatch},
		{"other sub-tenant", Requirement{Tenant: "acme", SubTenant: "shipping"}, editor, 404, 404, ReasonSubTenantMismatch},
		{"sub-tenant of a token without one", Requirement{SubTenant: "payments"}, viewer, 403, 403, ReasonSubTenantMismatch},
		{"tenant before sub-tenant", Requirement{Tenant: "globex", SubTenant: "shipping"}, editor, 404, 404, ReasonTenantMismatch},
		{"tenant before role", Requirement{Tenant: "globex", Role: "admin"}, viewer, 404, 404, ReasonTenantMismatch},
		{"sub-tenant before role", Requirement{SubTenant: "shipping", Role: "admin"}, editor, 404, 404, ReasonSubTenantMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, reason := tc.req.Decide(tc.tok.tenant, tc.tok.subTenant, tc.tok.role, grants, tc.mismatch)
			if status != tc.status || reason != tc.reason {
				t.Errorf("got %d %s, want %d %s", status, reason, tc.status, tc.reason)
			}
			if (status == http.StatusOK) != (reason == ReasonAllowed) {
				t.Errorf("status %d with reason %s", status, reason)
			}
		})
	}
}

func TestDecideMembership(t *testing.T) {
	// editor includes viewer.
	grants := func(have, want string) bool { return have == want || (have == "editor" && want == "viewer") }
	two := []Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
	for _, tc := range []struct {
		name     string
		req      Requirement
		mismatch int
		status   int
		reason   string
		selected int
	}{
		{"nothing required", Requirement{}, 404, 200, ReasonAllowed, -1},
		{"first tenant, its role", Requirement{Tenant: "acme", Role: "editor"}, 404, 200, ReasonAllowed, 0},
		{"second tenant, its role", Requirement{Tenant: "globex", Role: "viewer"}, 404, 200, ReasonAllowed, 1},
		{"second tenant, the first tenant's role", Requirement{Tenant: "globex", Role: "editor"}, 404, 403, ReasonInsufficientRole, 1},
		{"included role", Requirement{Tenant: "acme", Role: "viewer"}, 404, 200, ReasonAllowed, 0},
		{"the membership's sub-tenant", Requirement{Tenant: "globex", SubTenant: "eu"}, 404, 200, ReasonAllowed, 1},
		{"another sub-tenant", Requirement{Tenant: "globex", SubTenant: "us"}, 404, 404, ReasonSubTenantMismatch, 1},
		{"a sub-tenant of a membership without one", Requirement{Tenant: "acme", SubTenant: "eu"}, 404, 404, ReasonSubTenantMismatch, 0},
		{"not a member", Requirement{Tenant: "initech"}, 404, 404, ReasonTenantMismatch, -1},
		{"not a member, configured status", Requirement{Tenant: "initech", Role: "viewer"}, 403, 403, ReasonTenantMismatch, -1},
		{"a role without a tenant", Requirement{Role: "viewer"}, 404, 403, ReasonTenantRequired, -1},
		{"a sub-tenant without a tenant", Requirement{SubTenant: "eu"}, 404, 403, ReasonTenantRequired, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, reason, selected := tc.req.DecideMembership(two, grants, tc.mismatch)
			if status != tc.status || reason != tc.reason || selected != tc.selected {
				t.Errorf("got %d %s %d, want %d %s %d", status, reason, selected, tc.status, tc.reason, tc.selected)
			}
		})
	}
}

func TestMembershipString(t *testing.T) {
	for m, want := range map[Membership]string{
		{Tenant: "acme", Role: "editor"}:                  "acme:editor",
		{Tenant: "acme", SubTenant: "eu", Role: "viewer"}: "acme/eu:viewer",
	} {
		if got := m.String(); got != want {
			t.Errorf("%+v: %q, want %q", m, got, want)
		}
	}
	if got := GroupTenantRole("acme", "editor"); got != "apitoken:tenant:acme:role:editor" {
		t.Errorf("GroupTenantRole: %q", got)
	}
}

func TestParseMembership(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Membership
		err  string
	}{
		{"acme:editor", Membership{Tenant: "acme", Role: "editor"}, ""},
		{"acme/eu:viewer", Membership{Tenant: "acme", SubTenant: "eu", Role: "viewer"}, ""},
		{"acme", Membership{}, `a membership is "tenant:role"`},
		{"acme:", Membership{}, "role is not a DNS label"},
		{":editor", Membership{}, "tenant is not a DNS label"},
		{"acme/:editor", Membership{}, "sub-tenant is not a DNS label"},
		{"Acme:editor", Membership{}, "tenant is not a DNS label"},
		{"acme:editor:x", Membership{}, "role is not a DNS label"},
	} {
		got, err := ParseMembership(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %+v, %v", tc.in, got, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.err)
		}
		if tc.err == "" && got.String() != tc.in {
			t.Errorf("%q does not write back as itself: %q", tc.in, got.String())
		}
	}
}
