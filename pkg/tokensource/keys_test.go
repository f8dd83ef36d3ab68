package tokensource

import (
	"testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TestKeysAreTheAPIs: the files a Source reads are the keys the operator writes.
func TestKeysAreTheAPIs(t *testing.T) {
	for _, k := range []struct{ ours, api string }{
		{KeyToken, tokensv1.SecretKeyToken},
		{KeyTokenID, tokensv1.SecretKeyTokenID},
		{KeyExpiresAt, tokensv1.SecretKeyExpiresAt},
		{KeyTenant, tokensv1.SecretKeyTenant},
		{KeyRole, tokensv1.SecretKeyRole},
	} {
		if k.ours != k.api {
			t.Errorf("tokensource key %q, the API's %q", k.ours, k.api)
		}
	}
}
