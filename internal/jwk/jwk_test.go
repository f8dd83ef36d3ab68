package jwk

import (
	"reflect"
	"testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// TestRoundTrip: a key the issuer controller publishes converts back to a key set
// that verifies with the same public key, for every algorithm the API offers.
func TestRoundTrip(t *testing.T) {
	for _, alg := range []token.Algorithm{token.ES256, token.EdDSA, token.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			key, err := token.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			published := &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{FromToken(key.PublicJWK())}}
			got := ToToken(published)
			if want := (token.JWKS{Keys: []token.JWK{key.PublicJWK()}}); !reflect.DeepEqual(got, want) {
				t.Fatalf("ToToken(FromToken(k)) = %+v, want %+v", got, want)
			}
			keys, err := token.NewKeySet(got)
			if err != nil {
				t.Fatal(err)
			}
			pub, gotAlg, ok := keys.PublicKey(key.ID)
			if !ok || gotAlg != alg || !reflect.DeepEqual(pub, key.Signer.Public()) {
				t.Errorf("PublicKey(%s) = %v, %s, %v; want the key's public half, %s", key.ID, pub, gotAlg, ok, alg)
			}
		})
	}
}

// TestEveryMember: no member of the API's key is lost on the way through the token
// package and back, so a member added to one type fails here until the converter
// copies it.
func TestEveryMember(t *testing.T) {
	var k tokensv1.JSONWebKey
	v := reflect.ValueOf(&k).Elem()
	for i := range v.NumField() {
		v.Field(i).SetString("value-of-" + v.Type().Field(i).Name)
	}
	if n, m := reflect.TypeFor[tokensv1.JSONWebKey]().NumField(), reflect.TypeFor[token.JWK]().NumField(); n != m {
		t.Fatalf("the API's key has %d members, the token package's %d", n, m)
	}
	got := ToToken(&tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{k}})
	if len(got.Keys) != 1 {
		t.Fatalf("ToToken returned %d keys, want 1", len(got.Keys))
	}
	if back := FromToken(got.Keys[0]); back != k {
		t.Errorf("FromToken(ToToken(k)) = %+v, want %+v", back, k)
	}
}

func TestToTokenEmpty(t *testing.T) {
	for name, set := range map[string]*tokensv1.JSONWebKeySet{"nil": nil, "no keys": {}} {
		got := ToToken(set)
		if len(got.Keys) != 0 {
			t.Errorf("%s: ToToken = %#v, want no keys", name, got)
		}
	}
}
