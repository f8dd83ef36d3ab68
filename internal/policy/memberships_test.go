package policy

import (
	"errors"
	"slices"
	"testing"
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestCheckMemberships applies the rules of a single-tenant token to each membership
// of a multi-tenant one: the first membership the policy refuses is named, with the
// rule and the message a single-tenant token of that tenant and role would get.
func TestCheckMemberships(t *testing.T) {
	p, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{
		Roles: defaultRoles,
		Tenants: []tokensv1.Tenant{
			{Name: "acme", Namespaces: []string{"platform", "acme"}},
			{Name: "globex", Namespaces: []string{"platform"}, MaxRole: "viewer"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := func(tenant, role string) validatorapi.Membership {
		return validatorapi.Membership{Tenant: tenant, Role: role}
	}
	for _, tc := range []struct {
		name      string
		namespace string
		ms        []validatorapi.Membership
		rule      Rule
		index     int
		msg       string
	}{
		{"every membership allowed", "platform", []validatorapi.Membership{m("acme", "admin"), m("globex", "viewer")}, "", 0, ""},
		{"one above its tenant's maxRole", "platform", []validatorapi.Membership{m("acme", "admin"), m("globex", "editor")}, RuleMaxRole, 1,
			`memberships[1]: role "editor" is above tenant "globex"'s maxRole "viewer"`},
		{"one tenant not allowed in the namespace", "acme", []validatorapi.Membership{m("acme", "viewer"), m("globex", "viewer")}, RuleTenantNamespace, 1,
			`memberships[1]: namespace "acme" may not mint tokens for tenant "globex"`},
		{"the first refusal decides", "acme", []validatorapi.Membership{m("acme", "root"), m("globex", "viewer")}, RuleUnknownRole, 0,
			`memberships[0]: role "root" is not one of the issuer's roles (admin, auditor, editor, viewer)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, err := range []error{
				p.CheckMemberships(tc.namespace, tc.ms),
				p.CheckHeld(tc.namespace, "", "", tc.ms),
				p.CheckMintOf(Request{Namespace: tc.namespace, Lifetime: time.Hour}, tc.ms),
			} {
				if got := ruleOf(err); got != tc.rule {
					t.Fatalf("got %v, want rule %q", err, tc.rule)
				}
				if tc.rule == "" {
					continue
				}
				var mv *MembershipViolation
				if !errors.As(err, &mv) || mv.Index != tc.index || err.Error() != tc.msg {
					t.Errorf("got %q (%T), want membership %d: %q", err, err, tc.index, tc.msg)
				}
			}
		})
	}
	t.Run("single-tenant tokens are judged as before", func(t *testing.T) {
		err := p.CheckHeld("acme", "globex", "viewer", nil)
		if ruleOf(err) != RuleTenantNamespace || err.Error() != `namespace "acme" may not mint tokens for tenant "globex"` {
			t.Errorf("got %v", err)
		}
		if err := p.CheckMintOf(Request{Namespace: "acme", Tenant: "acme", Role: "admin", Lifetime: 9000 * time.Hour}, nil); ruleOf(err) != RuleMaxLifetime {
			t.Errorf("lifetime: got %v", err)
		}
		if err := p.CheckMintOf(Request{Namespace: "platform", Lifetime: 9000 * time.Hour}, []validatorapi.Membership{m("acme", "admin")}); ruleOf(err) != RuleMaxLifetime {
			t.Errorf("lifetime of a multi-tenant token: got %v", err)
		}
	})
}

func TestMembershipsAndHeldRoles(t *testing.T) {
	if Memberships(nil) != nil || Memberships([]tokensv1.Membership{}) != nil {
		t.Error("no memberships must be nil, the mark of a single-tenant token")
	}
	got := Memberships([]tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}})
	want := []validatorapi.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
	if !slices.Equal(got, want) {
		t.Errorf("Memberships: %+v", got)
	}
	if r := HeldRoles("admin", nil); !slices.Equal(r, []string{"admin"}) {
		t.Errorf("HeldRoles of a single-tenant token: %v", r)
	}
	ms := append(want, validatorapi.Membership{Tenant: "initech", Role: "editor"})
	if r := HeldRoles("", ms); !slices.Equal(r, []string{"editor", "viewer"}) {
		t.Errorf("HeldRoles of a multi-tenant token: %v", r)
	}
}

// A multi-tenant token exchanges into a single-tenant one: the requested tenant
// selects the membership, which is then narrowed as a single-tenant parent would be.
func TestExchangeMultiTenant(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	parent := Grant{
		Memberships: []validatorapi.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}},
		Scopes:      []string{"read"}, Audiences: []string{"api"}, NotAfter: now.Add(48 * time.Hour),
	}
	on := &tokensv1.ExchangeSpec{Enabled: true, MaxDepth: 4}
	p := exchangeIssuer(t, on)
	for _, tc := range []struct {
		name string
		req  ExchangeRequest
		want Grant // when rule is ""
		rule Rule
	}{
		{name: "first tenant keeps its role", req: ExchangeRequest{Tenant: "acme"},
			want: Grant{Tenant: "acme", Role: "editor", Scopes: []string{"read"}, Audiences: []string{"api"}, Depth: 1}},
		{name: "first tenant narrows its role", req: ExchangeRequest{Tenant: "acme", Role: "viewer"},
			want: Grant{Tenant: "acme", Role: "viewer", Scopes: []string{"read"}, Audiences: []string{"api"}, Depth: 1}},
		{name: "second tenant keeps its sub-tenant", req: ExchangeRequest{Tenant: "globex"},
			want: Grant{Tenant: "globex", SubTenant: "eu", Role: "viewer", Scopes: []string{"read"}, Audiences: []string{"api"}, Depth: 1}},
		{name: "second tenant, the first tenant's role", req: ExchangeRequest{Tenant: "globex", Role: "editor"}, rule: RuleRoleNarrowing},
		{name: "second tenant, another sub-tenant", req: ExchangeRequest{Tenant: "globex", SubTenant: "us"}, rule: RuleSubTenantNarrowing},
		{name: "no tenant named", req: ExchangeRequest{Role: "viewer"}, rule: RuleTenantRequired},
		{name: "not a member", req: ExchangeRequest{Tenant: "initech"}, rule: RuleTenantNarrowing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Exchange(parent, tc.req, now)
			if got := ruleOf(err); got != tc.rule {
				t.Fatalf("got %v, want rule %q", err, tc.rule)
			}
			if tc.rule != "" {
				return
			}
			if got.Tenant != tc.want.Tenant || got.SubTenant != tc.want.SubTenant || got.Role != tc.want.Role || got.Memberships != nil ||
				!slices.Equal(got.Scopes, tc.want.Scopes) || !slices.Equal(got.Audiences, tc.want.Audiences) || got.Depth != tc.want.Depth {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			// What the validator asks of the issued token later.
			if err := p.CheckExchanged(parent, got); err != nil {
				t.Errorf("CheckExchanged of the issued token: %v", err)
			}
		})
	}
	t.Run("the validator refuses a child wider than its membership", func(t *testing.T) {
		for _, child := range []Grant{
			{Tenant: "globex", Role: "editor", Depth: 1},
			{Tenant: "initech", Role: "viewer", Depth: 1},
			{Tenant: "acme", Role: "editor", Memberships: parent.Memberships, Depth: 1},
		} {
			if err := p.CheckExchanged(parent, child); err == nil {
				t.Errorf("%+v accepted", child)
			}
		}
	})
}
