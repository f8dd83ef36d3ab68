package token_test

import (
	"testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// TestDefaultOpaquePrefixIsTheAPIs: the API server defaults spec.opaquePrefix to the
// API's constant, and readers that cannot import the API use this package's.
func TestDefaultOpaquePrefixIsTheAPIs(t *testing.T) {
	if token.DefaultOpaquePrefix != tokensv1.DefaultOpaquePrefix {
		t.Fatalf("token.DefaultOpaquePrefix %q, the API's %q", token.DefaultOpaquePrefix, tokensv1.DefaultOpaquePrefix)
	}
}
