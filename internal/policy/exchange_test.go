package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

func exchangeIssuer(t *testing.T, x *tokensv1.ExchangeSpec) *Issuer {
	t.Helper()
	p, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{Issuer: "https://t", Roles: defaultRoles, Exchange: x})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExchangeOfDefaults(t *testing.T) {
	if got := ExchangeOf(&tokensv1.ClusterTokenIssuerSpec{}); got.Enabled {
		t.Errorf("no spec.exchange: enabled")
	}
	got := ExchangeOf(&tokensv1.ClusterTokenIssuerSpec{Exchange: &tokensv1.ExchangeSpec{Enabled: true}})
	if got.DefaultLifetime != DefaultExchangeLifetime || got.MaxLifetime != DefaultExchangeMaxLifetime || got.MaxDepth != DefaultExchangeMaxDepth {
		t.Errorf("defaults: %+v", got)
	}
	short := ExchangeOf(&tokensv1.ClusterTokenIssuerSpec{Exchange: &tokensv1.ExchangeSpec{Enabled: true, MaxLifetime: metav1.Duration{Duration: time.Minute}}})
	if short.DefaultLifetime != time.Minute {
		t.Errorf("default lifetime above a 1m maximum: %s", short.DefaultLifetime)
	}
}

func TestExchange(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	parent := Grant{Tenant: "acme", Role: "editor", Scopes: []string{"read", "write"}, Audiences: []string{"api"}, NotAfter: now.Add(48 * time.Hour)}
	withSub := parent
	withSub.SubTenant = "payments"
	deep := parent
	deep.Depth = 4
	dying := parent
	dying.NotAfter = now.Add(5 * time.Minute)

	on := &tokensv1.ExchangeSpec{Enabled: true, DefaultLifetime: metav1.Duration{Duration: 600 * time.Second}, MaxLifetime: metav1.Duration{Duration: 24 * time.Hour}, MaxDepth: 4, Audiences: []string{"partner"}}
	strict := on.DeepCopy()
	strict.RequireTenant, strict.RequireSubTenant, strict.AllowSubTenantSelection = true, true, true
	selecting := on.DeepCopy()
	selecting.AllowSubTenantSelection = true

	for _, tc := range []struct {
		name   string
		spec   *tokensv1.ExchangeSpec
		parent Grant
		req    ExchangeRequest
		want   Grant // when rule is ""
		rule   Rule
		msg    string // a part of the message
	}{
		{name: "defaults keep everything but life", spec: on, parent: parent,
			want: Grant{Tenant: "acme", Role: "editor", Scopes: []string{"read", "write"}, Audiences: []string{"api"}, NotAfter: now.Add(600 * time.Second), Depth: 1}},
		{name: "narrower in every way", spec: on, parent: parent,
			req:  ExchangeRequest{Tenant: "acme", Role: "viewer", Scopes: []string{"read"}, Audiences: []string{"partner"}, Lifetime: 24 * time.Hour},
			want: Grant{Tenant: "acme", Role: "viewer", Scopes: []string{"read"}, Audiences: []string{"partner"}, NotAfter: now.Add(24 * time.Hour), Depth: 1}},
		{name: "empty scope list drops every scope", spec: on, parent: parent, req: ExchangeRequest{Scopes: []string{}},
			want: Grant{Tenant: "acme", Role: "editor", Scopes: []string{}, Audiences: []string{"api"}, NotAfter: now.Add(600 * time.Second), Depth: 1}},
		{name: "default life shortened to the parent's", spec: on, parent: dying,
			want: Grant{Tenant: "acme", Role: "editor", Scopes: []string{"read", "write"}, Audiences: []string{"api"}, NotAfter: now.Add(5 * time.Minute), Depth: 1}},
		{name: "sub-tenant chosen where allowed", spec: selecting, parent: parent, req: ExchangeRequest{SubTenant: "payments"},
			want: Grant{Tenant: "acme", SubTenant: "payments", Role: "editor", Scopes: []string{"read", "write"}, Audiences: []string{"api"}, NotAfter: now.Add(600 * time.Second), Depth: 1}},
		{name: "sub-tenant kept", spec: on, parent: withSub, req: ExchangeRequest{SubTenant: "payments"},
			want: Grant{Tenant: "acme", SubTenant: "payments", Role: "editor", Scopes: []string{"read", "write"}, Audiences: []string{"api"}, NotAfter: now.Add(600 * time.Second), Depth: 1}},

		{name: "no spec.exchange", spec: nil, parent: parent, rule: RuleExchangeDisabled, msg: "spec.exchange.enabled"},
		{name: "disabled", spec: &tokensv1.ExchangeSpec{}, parent: parent, rule: RuleExchangeDisabled},
		{name: "chain too long", spec: on, parent: deep, rule: RuleExchangeDepth, msg: "at most 4"},
		{name: "tenant required", spec: strict, parent: parent, req: ExchangeRequest{SubTenant: "payments"}, rule: RuleTenantRequired, msg: "Tenant ID is required"},
		{name: "sub-tenant required", spec: strict, parent: parent, req: ExchangeRequest{Tenant: "acme"}, rule: RuleSubTenantRequired, msg: "Sub-tenant ID is required"},
		{name: "other tenant", spec: on, parent: parent, req: ExchangeRequest{Tenant: "globex"}, rule: RuleTenantNarrowing, msg: `tenant "globex"`},
		{name: "other sub-tenant", spec: selecting, parent: withSub, req: ExchangeRequest{SubTenant: "billing"}, rule: RuleSubTenantNarrowing, msg: `sub-tenant "billing"`},
		{name: "sub-tenant chosen where not allowed", spec: on, parent: parent, req: ExchangeRequest{SubTenant: "payments"}, rule: RuleSubTenantNarrowing, msg: "allowSubTenantSelection"},
		{name: "wider role", spec: on, parent: parent, req: ExchangeRequest{Role: "admin"}, rule: RuleRoleNarrowing, msg: `role "admin" is not granted by the token's role "editor"`},
		{name: "sibling role", spec: on, parent: parent, req: ExchangeRequest{Role: "auditor"}, rule: RuleRoleNarrowing},
		{name: "unknown role", spec: on, parent: parent, req: ExchangeRequest{Role: "root"}, rule: RuleRoleNarrowing},
		{name: "new scope", spec: on, parent: parent, req: ExchangeRequest{Scopes: []string{"read", "delete"}}, rule: RuleScopeNarrowing, msg: `scope "delete"`},
		{name: "foreign audience", spec: on, parent: parent, req: ExchangeRequest{Audiences: []string{"kubernetes"}}, rule: RuleAudienceNarrowing, msg: `audience "kubernetes"`},
		{name: "above the exchange maximum", spec: on, parent: parent, req: ExchangeRequest{Lifetime: 25 * time.Hour}, rule: RuleExchangeLifetime, msg: "exchange maximum of 86400 seconds"},
		{name: "above the parent's life", spec: on, parent: dying, req: ExchangeRequest{Lifetime: 10 * time.Minute}, rule: RuleExchangeLifetime, msg: "the 300 seconds the token itself remains valid"},
		{name: "negative life", spec: on, parent: parent, req: ExchangeRequest{Lifetime: -time.Second}, rule: RuleExchangeLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exchangeIssuer(t, tc.spec).Exchange(tc.parent, tc.req, now)
			if tc.rule != "" {
				var v *Violation
				if !errors.As(err, &v) || v.Rule != tc.rule || !strings.Contains(v.Message, tc.msg) {
					t.Fatalf("err = %v, want rule %s with %q", err, tc.rule, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Tenant != tc.want.Tenant || got.SubTenant != tc.want.SubTenant || got.Role != tc.want.Role ||
				!slices.Equal(got.Scopes, tc.want.Scopes) || !slices.Equal(got.Audiences, tc.want.Audiences) ||
				!got.NotAfter.Equal(tc.want.NotAfter) || got.Depth != tc.want.Depth {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The validator's check of an exchanged token: the same narrowing rules, applied
// against the listed parent as the issuer's policy is now.
func TestCheckExchanged(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	on := &tokensv1.ExchangeSpec{Enabled: true, MaxDepth: 2}
	parent := Grant{Tenant: "acme", Role: "editor", Scopes: []string{"read"}, Audiences: []string{"api"}, NotAfter: now.Add(time.Hour)}
	ok := Grant{Tenant: "acme", Role: "viewer", Audiences: []string{"api"}, NotAfter: now.Add(time.Minute), Depth: 2}
	for _, tc := range []struct {
		name  string
		spec  *tokensv1.ExchangeSpec
		child Grant
		rule  Rule
	}{
		{"narrower", on, ok, ""},
		{"exchange disabled since", &tokensv1.ExchangeSpec{}, ok, RuleExchangeDisabled},
		{"chain longer than the policy now allows", on, func() Grant { g := ok; g.Depth = 3; return g }(), RuleExchangeDepth},
		// A rotation shortens the parent's life after the child was issued; the
		// child then lives as long as the parent is accepted.
		{"outlives a parent retired since", on, func() Grant { g := ok; g.NotAfter = now.Add(2 * time.Hour); return g }(), ""},
		{"role above", on, func() Grant { g := ok; g.Role = "admin"; return g }(), RuleRoleNarrowing},
		{"tenant changed", on, func() Grant { g := ok; g.Tenant = "globex"; return g }(), RuleTenantNarrowing},
		{"scope added", on, func() Grant { g := ok; g.Scopes = []string{"write"}; return g }(), RuleScopeNarrowing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := exchangeIssuer(t, tc.spec).CheckExchanged(parent, tc.child)
			var v *Violation
			if tc.rule == "" && err != nil || tc.rule != "" && (!errors.As(err, &v) || v.Rule != tc.rule) {
				t.Fatalf("err = %v, want rule %q", err, tc.rule)
			}
		})
	}
}
