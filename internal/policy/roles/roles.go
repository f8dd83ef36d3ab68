// Package roles resolves an issuer's role graph: which roles a role includes,
// directly or through other roles. It holds no Kubernetes type, so that the validator,
// the admission webhook and the workload library (pkg/middleware, offline mode) decide
// role inclusion with the same code.
package roles

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Role is one role and the roles it includes directly.
type Role struct {
	Name     string
	Includes []string
}

// Roles is a role graph with inclusion resolved: each role maps to the set of roles
// it grants, itself included.
//
// A nil *Roles is the absence of a graph (none configured, or one that could not be
// resolved). Whether or not there is a graph, a role the graph does not know grants
// only itself.
type Roles struct {
	grants map[string]map[string]struct{}
}

// New resolves the inclusion graph. It refuses includes that name no role and cycles,
// which CEL cannot see; the error says which roles are involved.
func New(roles []Role) (*Roles, error) {
	byName := make(map[string][]string, len(roles))
	for _, r := range roles {
		byName[r.Name] = r.Includes
	}
	for _, r := range roles {
		for _, inc := range r.Includes {
			if _, ok := byName[inc]; !ok {
				return nil, fmt.Errorf("role %q includes %q, which is not a role of this issuer", r.Name, inc)
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
			return fmt.Errorf("roles form an inclusion cycle: %s", strings.Join(cycle, " -> "))
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

// FromIncludes resolves a graph written as a map from each role to the roles it
// includes (e.g. {"admin": {"editor"}, "editor": {"viewer"}}); a role named only as
// included is a role that includes nothing.
func FromIncludes(includes map[string][]string) (*Roles, error) {
	names := make([]string, 0, len(includes))
	for name := range includes {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic error messages
	list := make([]Role, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		list = append(list, Role{Name: name, Includes: includes[name]})
		seen[name] = true
	}
	for _, name := range names {
		for _, inc := range includes[name] {
			if !seen[inc] {
				list = append(list, Role{Name: inc})
				seen[inc] = true
			}
		}
	}
	return New(list)
}

// Has reports whether role is one of the graph's roles.
func (r *Roles) Has(role string) bool {
	if r == nil {
		return false
	}
	_, ok := r.grants[role]
	return ok
}

// Grants reports whether a token with role have passes a check that requires want.
func (r *Roles) Grants(have, want string) bool {
	if !r.Has(have) {
		return have == want
	}
	_, ok := r.grants[have][want]
	return ok
}

// Expand returns the roles that role grants, itself included, sorted.
func (r *Roles) Expand(role string) []string {
	if !r.Has(role) {
		return []string{role}
	}
	out := make([]string, 0, len(r.grants[role]))
	for g := range r.grants[role] {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Names returns the graph's roles, sorted.
func (r *Roles) Names() []string {
	if r == nil {
		return nil
	}
	names := make([]string, 0, len(r.grants))
	for n := range r.grants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
