package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

var defaultRoles = []tokensv1.Role{
	{Name: "viewer"},
	{Name: "editor", Includes: []string{"viewer"}},
	{Name: "admin", Includes: []string{"editor"}},
	{Name: "auditor", Includes: []string{"viewer"}},
}

func TestRolesGrants(t *testing.T) {
	r, err := NewRoles(defaultRoles)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"admin", "viewer", true},
		{"admin", "editor", true},
		{"admin", "admin", true},
		{"editor", "admin", false},
		{"viewer", "editor", false},
		{"auditor", "viewer", true},
		{"auditor", "editor", false},
		{"admin", "auditor", false},
		{"ghost", "viewer", false},
	} {
		if got := r.Grants(tc.have, tc.want); got != tc.ok {
			t.Errorf("Grants(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
	if got := strings.Join(r.Expand("admin"), ","); got != "admin,editor,viewer" {
		t.Errorf("Expand(admin) = %s", got)
	}
}

func TestRolesRefusesBadGraphs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		roles []tokensv1.Role
		want  string
	}{
		{"cycle", []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"c"}}, {Name: "c", Includes: []string{"a"}}}, "inclusion cycle: a -> b -> c -> a"},
		{"self", []tokensv1.Role{{Name: "a", Includes: []string{"a"}}}, "inclusion cycle: a -> a"},
		{"unknown", []tokensv1.Role{{Name: "a", Includes: []string{"nope"}}}, `role "a" includes "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRoles(tc.roles)
			var v *Violation
			if !errors.As(err, &v) || v.Rule != RuleRoleGraph {
				t.Fatalf("got %v, want a RoleGraph violation", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("message %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestCheckMint(t *testing.T) {
	withTenants := &tokensv1.ClusterTokenIssuerSpec{
		Roles:       defaultRoles,
		MaxLifetime: metav1.Duration{Duration: 24 * time.Hour},
		Tenants: []tokensv1.Tenant{
			{Name: "acme", Namespaces: []string{"acme", "ci"}, MaxRole: "editor"},
			{Name: "globex", Namespaces: []string{"globex"}},
		},
	}
	noTenants := &tokensv1.ClusterTokenIssuerSpec{Roles: defaultRoles}

	for _, tc := range []struct {
		name string
		spec *tokensv1.ClusterTokenIssuerSpec
		req  Request
		rule Rule // "" means allowed
	}{
		{"listed namespace", withTenants, Request{"ci", "acme", "editor", time.Hour}, ""},
		{"role below maxRole", withTenants, Request{"acme", "acme", "viewer", time.Hour}, ""},
		{"role above maxRole", withTenants, Request{"acme", "acme", "admin", time.Hour}, RuleMaxRole},
		{"sibling role not included by maxRole", withTenants, Request{"acme", "acme", "auditor", time.Hour}, RuleMaxRole},
		{"no maxRole allows any role", withTenants, Request{"globex", "globex", "admin", time.Hour}, ""},
		{"unlisted namespace", withTenants, Request{"globex", "acme", "viewer", time.Hour}, RuleTenantNamespace},
		{"unlisted tenant", withTenants, Request{"acme", "initech", "viewer", time.Hour}, RuleTenantNamespace},
		{"unknown role", withTenants, Request{"acme", "acme", "root", time.Hour}, RuleUnknownRole},
		{"lifetime at max", withTenants, Request{"acme", "acme", "viewer", 24 * time.Hour}, ""},
		{"lifetime over max", withTenants, Request{"acme", "acme", "viewer", 25 * time.Hour}, RuleMaxLifetime},
		{"own namespace without list", noTenants, Request{"acme", "acme", "admin", 8760 * time.Hour}, ""},
		{"other namespace without list", noTenants, Request{"acme", "globex", "viewer", time.Hour}, RuleTenantNamespace},
		{"default max lifetime", noTenants, Request{"acme", "acme", "viewer", 8761 * time.Hour}, RuleMaxLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ForIssuer(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckMint(tc.req)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var v *Violation
			if !errors.As(err, &v) || v.Rule != tc.rule {
				t.Fatalf("got %v, want rule %s", err, tc.rule)
			}
		})
	}
}

// TestCheckMinted judges tokens already minted against a policy tightened since: the
// issuer's tenants list now exists, and acme's maxRole is editor. Each verdict must be
// the one CheckMint gives the same request at mint time.
func TestCheckMinted(t *testing.T) {
	p, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{
		Roles:       defaultRoles,
		MaxLifetime: metav1.Duration{Duration: time.Hour},
		Tenants: []tokensv1.Tenant{
			{Name: "acme", Namespaces: []string{"acme", "ci"}, MaxRole: "editor"},
			{Name: "globex", Namespaces: []string{"globex"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	noTenants, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{Roles: defaultRoles})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                    string
		policy                  *Issuer
		namespace, tenant, role string
		rule                    Rule // "" means still allowed
	}{
		{"still allowed", p, "ci", "acme", "editor", ""},
		{"role included by maxRole", p, "acme", "acme", "viewer", ""},
		{"role now above maxRole", p, "acme", "acme", "admin", RuleMaxRole},
		{"sibling role not included by maxRole", p, "acme", "acme", "auditor", RuleMaxRole},
		{"role removed from the issuer", p, "globex", "globex", "root", RuleUnknownRole},
		{"namespace removed from the tenant", p, "globex", "acme", "viewer", RuleTenantNamespace},
		{"tenant removed from the list", p, "initech", "initech", "viewer", RuleTenantNamespace},
		{"tenant checked before role", p, "globex", "acme", "root", RuleTenantNamespace},
		{"own namespace without list", noTenants, "acme", "acme", "admin", ""},
		{"other namespace without list", noTenants, "acme", "globex", "viewer", RuleTenantNamespace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.CheckMinted(tc.namespace, tc.tenant, tc.role)
			if got := ruleOf(err); got != tc.rule {
				t.Fatalf("CheckMinted: got %v, want rule %q", err, tc.rule)
			}
			mint := tc.policy.CheckMint(Request{Namespace: tc.namespace, Tenant: tc.tenant, Role: tc.role, Lifetime: time.Minute})
			if got := ruleOf(mint); got != tc.rule {
				t.Errorf("CheckMint of the same request: got %v, want rule %q", mint, tc.rule)
			}
		})
	}
}

// ruleOf is the rule err breaks, "" for nil; anything but a *Violation is a bug.
func ruleOf(err error) Rule {
	if err == nil {
		return ""
	}
	var v *Violation
	if !errors.As(err, &v) {
		return "not a *Violation: " + Rule(err.Error())
	}
	return v.Rule
}

func TestForIssuerRefusesUnknownMaxRole(t *testing.T) {
	_, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{Roles: defaultRoles, Tenants: []tokensv1.Tenant{{Name: "a", Namespaces: []string{"a"}, MaxRole: "root"}}})
	if err == nil || !strings.Contains(err.Error(), `maxRole "root"`) {
		t.Fatalf("got %v", err)
	}
}
