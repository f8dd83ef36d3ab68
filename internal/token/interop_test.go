package token

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Workloads verify our JWTs offline with libraries of their own; golang-jwt's
// standard parser stands in for them here.
func TestGolangJWTParserAcceptsOurTokens(t *testing.T) {
	opts := []jwt.ParserOption{
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithIssuer(testIssuer),
		jwt.WithAudience(testAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	for _, alg := range algorithms {
		key := testKey(t, alg, false)
		tok, err := MintJWT(key, testClaims())
		if err != nil {
			t.Fatal(err)
		}
		p := jwt.NewParser(append(opts, jwt.WithValidMethods([]string{string(alg)}))...)
		parsed, err := p.Parse(tok, func(tk *jwt.Token) (any, error) {
			if tk.Header["kid"] != key.ID {
				t.Errorf("kid %v", tk.Header["kid"])
			}
			return key.Signer.Public(), nil
		})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if c := parsed.Claims.(jwt.MapClaims); c["jti"] != testClaims().ID || c["tenant"] != "acme" {
			t.Errorf("%s: claims %v", alg, c)
		}
	}

	// The jwt.Claims methods of wireClaims show golang-jwt the same claims.
	c := testClaims()
	w := &wireClaims{Issuer: c.Issuer, Subject: c.Subject, Audience: audience(c.Audience),
		ExpiresAt: dateOf(c.ExpiresAt), IssuedAt: dateOf(c.IssuedAt), NotBefore: dateOf(c.NotBefore)}
	if err := jwt.NewValidator(append(opts, jwt.WithSubject(c.Subject))...).Validate(w); err != nil {
		t.Fatal(err)
	}
	if err := jwt.NewValidator(jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired()).Validate(&wireClaims{}); err == nil {
		t.Fatal("golang-jwt accepted wireClaims without exp")
	}
}
