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

func TestForIssuerRefusesUnknownMaxRole(t *testing.T) {
	_, err := ForIssuer(&tokensv1.ClusterTokenIssuerSpec{Roles: defaultRoles, Tenants: []tokensv1.Tenant{{Name: "a", Namespaces: []string{"a"}, MaxRole: "root"}}})
	if err == nil || !strings.Contains(err.Error(), `maxRole "root"`) {
		t.Fatalf("got %v", err)
	}
}
