// Package pkg_test holds what every package of the workload library must satisfy.
package pkg_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNoKubernetes: a service that only checks tokens must not compile the Kubernetes
// libraries, so no package under pkg/ may depend on one, however indirectly.
func TestNoKubernetes(t *testing.T) {
	// go test puts the go command that runs it first in PATH (runtime.GOROOT, the
	// other way to find it, is deprecated). Run from this directory, ./... is every
	// package of the library.
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "./...").Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list found only %v: not the library's dependencies", deps)
	}
	for _, want := range []string{"github.com/apitoken-operator/apitoken-operator/pkg/middleware", "github.com/apitoken-operator/apitoken-operator/pkg/tokensource"} {
		if !slices.Contains(deps, want) {
			t.Fatalf("go list did not list %s", want)
		}
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/") || strings.HasPrefix(d, "sigs.k8s.io/") {
			t.Errorf("pkg/ depends on %s", d)
		}
	}
}
