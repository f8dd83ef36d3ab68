package roles

import (
	"slices"
	"strings"
	"testing"
)

var graph = []Role{
	{Name: "viewer"},
	{Name: "editor", Includes: []string{"viewer"}},
	{Name: "admin", Includes: []string{"editor"}},
	{Name: "auditor", Includes: []string{"viewer"}},
}

func TestGrants(t *testing.T) {
	r, err := New(graph)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		roles      *Roles
		have, want string
		ok         bool
	}{
		{"direct inclusion", r, "editor", "viewer", true},
		{"transitive inclusion", r, "admin", "viewer", true},
		{"itself", r, "admin", "admin", true},
		{"not upwards", r, "editor", "admin", false},
		{"not sideways", r, "auditor", "editor", false},
		{"not a sibling", r, "admin", "auditor", false},
		{"unknown role grants only itself", r, "ghost", "ghost", true},
		{"unknown role grants no known role", r, "ghost", "viewer", false},
		{"a known role grants no unknown one", r, "admin", "ghost", false},
		{"no graph: itself", nil, "admin", "admin", true},
		{"no graph: nothing else", nil, "admin", "viewer", false},
	} {
		if got := tc.roles.Grants(tc.have, tc.want); got != tc.ok {
			t.Errorf("%s: Grants(%q, %q) = %v, want %v", tc.name, tc.have, tc.want, got, tc.ok)
		}
	}
}

// TestExpandAgreesWithGrants: the roles a token is told it has are exactly those it
// passes checks for.
func TestExpandAgreesWithGrants(t *testing.T) {
	r, err := New(graph)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		roles *Roles
		role  string
		want  []string
	}{
		{r, "admin", []string{"admin", "editor", "viewer"}},
		{r, "auditor", []string{"auditor", "viewer"}},
		{r, "viewer", []string{"viewer"}},
		{r, "ghost", []string{"ghost"}},
		{nil, "admin", []string{"admin"}},
	} {
		got := tc.roles.Expand(tc.role)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Expand(%q) = %v, want %v", tc.role, got, tc.want)
		}
		for _, want := range append(r.Names(), "ghost") {
			if tc.roles.Grants(tc.role, want) != slices.Contains(got, want) {
				t.Errorf("Grants(%q, %q) disagrees with Expand %v", tc.role, want, got)
			}
		}
	}
}

func TestHasAndNames(t *testing.T) {
	r, err := New(graph)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Has("auditor") || r.Has("ghost") {
		t.Error("Has")
	}
	var none *Roles
	if none.Has("admin") || none.Names() != nil {
		t.Error("a nil graph has roles")
	}
	if got := strings.Join(r.Names(), ","); got != "admin,auditor,editor,viewer" {
		t.Errorf("Names = %s", got)
	}
}

func TestNewRefusesBadGraphs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		roles []Role
		want  string
	}{
		{"cycle", []Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"c"}}, {Name: "c", Includes: []string{"a"}}}, "roles form an inclusion cycle: a -> b -> c -> a"},
		{"self", []Role{{Name: "a", Includes: []string{"a"}}}, "roles form an inclusion cycle: a -> a"},
		{"unknown", []Role{{Name: "a", Includes: []string{"nope"}}}, `role "a" includes "nope", which is not a role of this issuer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.roles)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFromIncludes(t *testing.T) {
	r, err := FromIncludes(map[string][]string{"admin": {"editor"}, "editor": {"viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "admin,editor,viewer" {
		t.Errorf("a role named only as included is a role: %s", got)
	}
	if !slices.Equal(r.Expand("admin"), []string{"admin", "editor", "viewer"}) {
		t.Errorf("Expand(admin) = %v", r.Expand("admin"))
	}
	// The same cycle is reported the same way whatever the map's order.
	for i := 0; i < 20; i++ {
		_, err := FromIncludes(map[string][]string{"b": {"a"}, "a": {"b"}, "c": {"c"}})
		if err == nil || err.Error() != "roles form an inclusion cycle: a -> b -> a" {
			t.Fatalf("got %v", err)
		}
	}
}
