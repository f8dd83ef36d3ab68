package token

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"
)

var algorithms = []Algorithm{ES256, EdDSA, RS256}

// now is the fixed clock of the tests; fixture tokens are valid at it.
var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuer   = "https://tokens.acme.internal"
	testAudience = "acme-apis"
)

// fixtureKeys are read once: RSA parsing and key validation are slow enough
// to matter in fuzzing.
var fixtureKeys = sync.OnceValues(func() (map[string]*SigningKey, error) {
	keys := map[string]*SigningKey{}
	for _, alg := range algorithms {
		for _, suffix := range []string{"", "-other"} {
			name := map[Algorithm]string{ES256: "es256", EdDSA: "eddsa", RS256: "rs256"}[alg] + suffix
			b, err := os.ReadFile("testdata/keys/" + name + ".pem")
			if err != nil {
				return nil, err
			}
			if keys[name], err = ParsePrivateKey(alg, b); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
})

// testKey returns the fixture key for alg; other selects a second key of
// the same algorithm that is not in the test key set.
func testKey(tb testing.TB, alg Algorithm, other bool) *SigningKey {
	tb.Helper()
	keys, err := fixtureKeys()
	if err != nil {
		tb.Fatal(err)
	}
	name := map[Algorithm]string{ES256: "es256", EdDSA: "eddsa", RS256: "rs256"}[alg]
	if other {
		name += "-other"
	}
	return keys[name]
}

// testVerifier trusts the three main fixture keys (not the "-other" ones).
func testVerifier(tb testing.TB) *Verifier {
	tb.Helper()
	var jwks JWKS
	for _, alg := range algorithms {
		jwks.Keys = append(jwks.Keys, testKey(tb, alg, false).PublicJWK())
	}
	ks, err := NewKeySet(jwks)
	if err != nil {
		tb.Fatal(err)
	}
	return &Verifier{
		Keys:      ks,
		Issuer:    testIssuer,
		Audiences: []string{testAudience},
		Now:       func() time.Time { return now },
	}
}

func testClaims() Claims {
	return Claims{
		Issuer:    testIssuer,
		Subject:   "apitoken:acme:ci-pipeline",
		Audience:  []string{testAudience, "billing-api"},
		IssuedAt:  now.Add(-time.Hour),
		NotBefore: now.Add(-time.Hour),
		ExpiresAt: now.Add(720 * time.Hour),
		ID:        "01JD0000000000000000000000",
		Tenant:    "acme",
		SubTenant: "payments",
		Role:      "editor",
		Scopes:    []string{"reports:read", "reports:write"},
	}
}

// claimsMap is testClaims as raw JSON claims, for crafting tokens that
// MintJWT would refuse to produce.
func claimsMap() map[string]any {
	c := testClaims()
	return map[string]any{
		"iss": c.Issuer, "sub": c.Subject, "aud": c.Audience,
		"iat": c.IssuedAt.Unix(), "nbf": c.NotBefore.Unix(), "exp": c.ExpiresAt.Unix(),
		"jti": c.ID, "tenant": c.Tenant, "sub_tenant": c.SubTenant, "role": c.Role,
		"scope": "reports:read reports:write",
	}
}

func seg(tb testing.TB, v any) string {
	tb.Helper()
	if s, ok := v.(string); ok { // raw JSON text
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// craft builds a compact JWS from any header and claims and signs it with
// key's algorithm; key nil leaves the signature empty.
func craft(tb testing.TB, hdr, claims any, key *SigningKey) string {
	tb.Helper()
	input := seg(tb, hdr) + "." + seg(tb, claims)
	if key == nil {
		return input + "."
	}
	sig, err := key.Algorithm.method().Sign(input, key.Signer)
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// hdrFor is the header MintJWT writes for key.
func hdrFor(key *SigningKey) map[string]any {
	return map[string]any{"alg": string(key.Algorithm), "typ": "JWT", "kid": key.ID}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}
