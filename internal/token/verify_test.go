package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// refusal is one crafted token and the reason it must be refused with.
type refusal struct {
	name   string
	tok    string
	want   Reason
	check  func(tok string) error // nil: the test verifier's Verify
	secret string                 // material that must not leak into the error
	detail string                 // when set, the Detail must contain it
}

// refusals builds one crafted token for every refusal rule of the package.
// Every JWT here that is not meant to fail on its signature is validly
// signed, so each case fails on its own rule and on nothing earlier.
func refusals(t testing.TB) []refusal {
	es := testKey(t, ES256, false)
	ed := testKey(t, EdDSA, false)
	rs := testKey(t, RS256, false)
	good := claimsMap()
	valid := craft(t, hdrFor(es), good, es)
	parts := strings.Split(valid, ".")

	big := testClaims()
	big.Subject = strings.Repeat("s", MaxTokenLength)
	tooLarge, err := MintJWT(es, big)
	if err != nil {
		t.Fatal(err)
	}

	// Key confusion: HS256 keyed with the public key's encodings, the
	// classic attack on verifiers that let the token choose the algorithm.
	hs256 := func(key *SigningKey, secret []byte) string {
		input := seg(t, with(hdrFor(key), "alg", "HS256")) + "." + seg(t, good)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	rsaDER, err := x509.MarshalPKIXPublicKey(rs.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	edRaw := []byte(ed.PublicJWK().X)

	flipLast := func(tok string) string {
		b := []byte(tok)
		// Change a character in the middle of the signature, so the
		// decoded bytes differ (the last character may carry padding bits).
		i := strings.LastIndexByte(tok, '.') + 5
		b[i] = map[bool]byte{true: 'B', false: 'A'}[b[i] == 'A']
		return string(b)
	}

	op, err := MintOpaque("apt", NewTokenID())
	if err != nil {
		t.Fatal(err)
	}
	opSecret := op.Token[len(op.Token)-SecretLength-ChecksumLength : len(op.Token)-ChecksumLength]
	other, err := MintOpaque("apt", op.ID)
	if err != nil {
		t.Fatal(err)
	}
	badChecksum := []byte(op.Token)
	last := len(badChecksum) - 1
	badChecksum[last] = map[bool]byte{true: '1', false: '0'}[badChecksum[last] == '0']
	opaque := func(hashes ...string) func(string) error {
		return func(tok string) error { _, err := VerifyOpaque(tok, hashes...); return err }
	}
	parse := func(tok string) error { _, _, err := ParseOpaque(tok); return err }

	return []refusal{
		{name: "oversized, validly signed", tok: tooLarge, want: ReasonTooLarge},
		{name: "oversized garbage", tok: strings.Repeat(".", MaxTokenLength+1), want: ReasonTooLarge},
		{name: "empty", tok: "", want: ReasonMalformed},
		{name: "one segment", tok: "abc", want: ReasonMalformed},
		{name: "two segments", tok: parts[0] + "." + parts[1], want: ReasonMalformed},
		{name: "four segments", tok: valid + ".x", want: ReasonMalformed},
		{name: "JWE shape", tok: "a.b.c.d.e", want: ReasonMalformed},
		{name: "header not base64", tok: "!!." + parts[1] + "." + parts[2], want: ReasonMalformed},
		{name: "header padded base64", tok: parts[0] + "==." + parts[1] + "." + parts[2], want: ReasonMalformed},
		{name: "header not JSON", tok: seg(t, "not json") + "." + parts[1] + "." + parts[2], want: ReasonMalformed},
		{name: "header JSON array", tok: seg(t, `["ES256"]`) + "." + parts[1] + "." + parts[2], want: ReasonMalformed},
		{name: "header without alg", tok: craft(t, with(hdrFor(es), "alg", nil), good, es), want: ReasonMalformed, detail: "no alg"},
		{name: "alg not a string", tok: craft(t, with(hdrFor(es), "alg", 256), good, es), want: ReasonMalformed},
		{name: "line break in signature", tok: parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], want: ReasonMalformed},
		{name: "signature not base64", tok: parts[0] + "." + parts[1] + ".***", want: ReasonMalformed},
		{name: "claims not JSON, validly signed", tok: craft(t, hdrFor(es), "not json", es), want: ReasonMalformed, detail: "claims are not"},
		{name: "claim of the wrong type, validly signed", tok: craft(t, hdrFor(es), with(good, "tenant", 42), es), want: ReasonMalformed, detail: "claims are not"},
		{name: "exp not a number, validly signed", tok: craft(t, hdrFor(es), with(good, "exp", "tomorrow"), es), want: ReasonMalformed, detail: "claims are not"},

		{name: "alg none", tok: craft(t, with(hdrFor(es), "alg", "none"), good, nil), want: ReasonAlgNone},
		{name: "alg None", tok: craft(t, with(hdrFor(es), "alg", "None"), good, nil), want: ReasonAlgNone},
		{name: "alg NONE with a signature", tok: craft(t, with(hdrFor(es), "alg", "NONE"), good, nil) + parts[2], want: ReasonAlgNone},

		{name: "HS256 keyed with RSA public key PEM", tok: hs256(rs, rsaPEM), want: ReasonAlgMismatch},
		{name: "HS256 keyed with RSA public key DER", tok: hs256(rs, rsaDER), want: ReasonAlgMismatch},
		{name: "HS256 keyed with Ed25519 JWK x", tok: hs256(ed, edRaw), want: ReasonAlgMismatch},
		{name: "ES384 on an ES256 key", tok: craft(t, with(hdrFor(es), "alg", "ES384"), good, es), want: ReasonAlgMismatch},
		{name: "RS256 header on an EdDSA kid, RSA-signed", tok: craft(t, with(hdrFor(rs), "kid", ed.ID), good, rs), want: ReasonAlgMismatch},
		{name: "PS256 on an RS256 key", tok: craft(t, with(hdrFor(rs), "alg", "PS256"), good, rs), want: ReasonAlgMismatch},

		{name: "unknown kid", tok: craft(t, hdrFor(testKey(t, ES256, true)), good, testKey(t, ES256, true)), want: ReasonUnknownKey},
		{name: "no kid", tok: craft(t, with(hdrFor(es), "kid", nil), good, es), want: ReasonUnknownKey},

		{name: "jku header", tok: craft(t, with(hdrFor(es), "jku", "https://evil.example/jwks"), good, es), want: ReasonForbiddenHeader},
		{name: "x5u header", tok: craft(t, with(hdrFor(es), "x5u", "https://evil.example/cert"), good, es), want: ReasonForbiddenHeader},
		{name: "embedded jwk header", tok: craft(t, with(hdrFor(es), "jwk", es.PublicJWK()), good, es), want: ReasonForbiddenHeader},
		{name: "x5c header", tok: craft(t, with(hdrFor(es), "x5c", []string{"MIIB"}), good, es), want: ReasonForbiddenHeader},
		{name: "crit header", tok: craft(t, with(hdrFor(es), "crit", []string{"exp"}), good, es), want: ReasonForbiddenHeader},
		{name: "crit header null", tok: craft(t, with(hdrFor(es), "crit", json.RawMessage("null")), good, es), want: ReasonForbiddenHeader},

		{name: "flipped signature byte", tok: flipLast(valid), want: ReasonBadSignature},
		{name: "empty signature", tok: parts[0] + "." + parts[1] + ".", want: ReasonBadSignature},
		{name: "claims changed after signing", tok: parts[0] + "." + seg(t, with(good, "role", "admin")) + "." + parts[2], want: ReasonBadSignature},
		{name: "signed by another key under our kid", tok: craft(t, hdrFor(es), good, testKey(t, ES256, true)), want: ReasonBadSignature},
		{name: "EdDSA signed by another key", tok: craft(t, hdrFor(ed), good, testKey(t, EdDSA, true)), want: ReasonBadSignature},
		{name: "RS256 signed by another key", tok: craft(t, hdrFor(rs), good, testKey(t, RS256, true)), want: ReasonBadSignature},

		{name: "no exp", tok: craft(t, hdrFor(es), with(good, "exp", nil), es), want: ReasonMissingExpiry},
		{name: "exp null", tok: craft(t, hdrFor(ed), with(good, "exp", json.RawMessage("null")), ed), want: ReasonMissingExpiry},
		{name: "expired beyond leeway", tok: craft(t, hdrFor(es), with(good, "exp", now.Add(-DefaultLeeway).Unix()), es), want: ReasonExpired},
		{name: "exp 0", tok: craft(t, hdrFor(rs), with(good, "exp", 0), rs), want: ReasonExpired},
		{name: "nbf in the future beyond leeway", tok: craft(t, hdrFor(es), with(good, "nbf", now.Add(DefaultLeeway+time.Second).Unix()), es), want: ReasonNotYetValid},
		{name: "wrong iss", tok: craft(t, hdrFor(es), with(good, "iss", "https://evil.example"), es), want: ReasonWrongIssuer},
		{name: "no iss", tok: craft(t, hdrFor(es), with(good, "iss", nil), es), want: ReasonWrongIssuer},
		{name: "wrong aud", tok: craft(t, hdrFor(es), with(good, "aud", []string{"other-api"}), es), want: ReasonWrongAudience},
		{name: "wrong aud as string", tok: craft(t, hdrFor(es), with(good, "aud", "other-api"), es), want: ReasonWrongAudience},
		{name: "no aud", tok: craft(t, hdrFor(es), with(good, "aud", nil), es), want: ReasonWrongAudience},

		{name: "opaque bad checksum", tok: string(badChecksum), want: ReasonBadChecksum, check: opaque(op.Hash), secret: opSecret},
		{name: "opaque bad checksum, parse", tok: string(badChecksum), want: ReasonBadChecksum, check: parse, secret: opSecret},
		{name: "opaque typo in secret", tok: typo(op.Token, len(op.Token)-SecretLength-ChecksumLength), want: ReasonBadChecksum, check: opaque(op.Hash), secret: opSecret},
		{name: "opaque wrong secret", tok: other.Token, want: ReasonUnknownToken, check: opaque(op.Hash), secret: opSecret},
		{name: "opaque unknown ID", tok: op.Token, want: ReasonUnknownToken, check: opaque(), secret: opSecret},
		{name: "opaque stored hash malformed", tok: op.Token, want: ReasonUnknownToken, check: opaque("sha256:zz"), secret: opSecret},
		{name: "opaque without secret", tok: "apt_" + op.ID + "_", want: ReasonMalformed, check: opaque(op.Hash)},
		{name: "opaque upper-case prefix", tok: "APT" + op.Token[3:], want: ReasonMalformed, check: parse, secret: opSecret},
		{name: "opaque oversized", tok: op.Token + strings.Repeat("a", MaxTokenLength), want: ReasonMalformed, check: parse, secret: opSecret},
		{name: "opaque secret too short", tok: op.Token[:len(op.Token)-7] + op.Token[len(op.Token)-6:], want: ReasonMalformed, check: opaque(op.Hash)},
		{name: "JWT given to VerifyOpaque", tok: valid, want: ReasonMalformed, check: opaque(op.Hash)},
	}
}

// typo flips the case of the first letter of tok at or after from, the
// kind of mistake a checksum is for.
func typo(tok string, from int) string {
	b := []byte(tok)
	for i := from; i < len(b); i++ {
		if c := b[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b[i] ^= 0x20
			return string(b)
		}
	}
	panic("no letter to flip")
}

func TestRefusals(t *testing.T) {
	v := testVerifier(t)
	seen := map[Reason]bool{}
	for _, tc := range refusals(t) {
		t.Run(tc.name, func(t *testing.T) {
			check := tc.check
			if check == nil {
				check = func(tok string) error { _, err := v.Verify(tok); return err }
			}
			err := check(tc.tok)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if !strings.Contains(e.Detail, tc.detail) {
				t.Fatalf("detail %q does not contain %q", e.Detail, tc.detail)
			}
			seen[tc.want] = true
		})
	}
	all := []Reason{ReasonMalformed, ReasonTooLarge, ReasonAlgNone, ReasonAlgMismatch, ReasonUnknownKey,
		ReasonForbiddenHeader, ReasonMissingExpiry, ReasonExpired, ReasonNotYetValid, ReasonWrongIssuer,
		ReasonWrongAudience, ReasonBadSignature, ReasonBadChecksum, ReasonUnknownToken}
	for _, r := range all {
		if !seen[r] {
			t.Errorf("no refusal case produced %s", r)
		}
	}
}

// TestErrorsNeverContainTokenMaterial checks every refusal's message for the
// token, any of its segments and the opaque secret.
func TestErrorsNeverContainTokenMaterial(t *testing.T) {
	v := testVerifier(t)
	for _, tc := range refusals(t) {
		check := tc.check
		if check == nil {
			check = func(tok string) error { _, err := v.Verify(tok); return err }
		}
		err := check(tc.tok)
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		msg := err.Error()
		material := []string{tc.tok, tc.secret}
		material = append(material, strings.FieldsFunc(tc.tok, func(r rune) bool { return r == '.' || r == '_' })...)
		for _, m := range material {
			// Short pieces (a prefix, a one-letter segment) can occur
			// in any sentence; secrets and signatures are long.
			if len(m) >= 16 && strings.Contains(msg, m) {
				t.Errorf("%s: error %q contains token material", tc.name, msg)
			}
		}
	}
}

func TestVerifyAcceptsWithinLeeway(t *testing.T) {
	es := testKey(t, ES256, false)
	v := testVerifier(t)
	good := claimsMap()
	for _, tc := range []struct {
		name   string
		claims map[string]any
		leeway time.Duration
		ok     bool
	}{
		{"exp just inside default leeway", with(good, "exp", now.Add(-DefaultLeeway+time.Second).Unix()), 0, true},
		{"exp now, no leeway", with(good, "exp", now.Unix()), -1, false},
		{"exp in a second, no leeway", with(good, "exp", now.Add(time.Second).Unix()), -1, true},
		{"nbf inside default leeway", with(good, "nbf", now.Add(DefaultLeeway).Unix()), 0, true},
		{"nbf in a second, no leeway", with(good, "nbf", now.Add(time.Second).Unix()), -1, false},
		{"exp inside custom leeway", with(good, "exp", now.Add(-time.Minute).Unix()), 2 * time.Minute, true},
		{"fractional exp", with(good, "exp", json.RawMessage(fmt.Sprintf("%d.5", now.Add(time.Hour).Unix()))), 0, true},
		{"exponent exp", with(good, "exp", json.RawMessage("2.1e9")), 0, true},
		{"aud as a single string", with(good, "aud", testAudience), 0, true},
		{"no nbf, no iat", with(good, "nbf", nil, "iat", nil), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vv := *v
			vv.Leeway = tc.leeway
			_, err := vv.Verify(craft(t, hdrFor(es), tc.claims, es))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestVerifyWithoutExpectations(t *testing.T) {
	es := testKey(t, ES256, false)
	v := testVerifier(t)
	v.Issuer, v.Audiences = "", nil
	tok := craft(t, hdrFor(es), with(claimsMap(), "iss", "anyone", "aud", nil), es)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify without issuer and audiences: %v", err)
	}
	if _, err := (&Verifier{}).Verify(tok); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("Verifier without keys: %v, want UnknownKey", err)
	}
}

func TestJWTRoundTrip(t *testing.T) {
	v := testVerifier(t)
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			key := testKey(t, alg, false)
			c := testClaims()
			c.KeyID = "ignored"
			tok, err := MintJWT(key, c)
			if err != nil {
				t.Fatal(err)
			}
			if !LooksLikeJWT(tok) {
				t.Fatal("minted token does not look like a JWT")
			}
			got, err := v.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			want := testClaims()
			want.KeyID = key.ID
			if !claimsEqual(got, &want) {
				t.Fatalf("claims\n got %+v\nwant %+v", got, want)
			}

			// The header is exactly what the design promises.
			var hdr map[string]any
			b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			if err := json.Unmarshal(b, &hdr); err != nil {
				t.Fatal(err)
			}
			wantHdr := map[string]any{"alg": string(alg), "typ": "JWT", "kid": key.ID}
			if fmt.Sprint(hdr) != fmt.Sprint(wantHdr) {
				t.Fatalf("header %v, want %v", hdr, wantHdr)
			}
			var claims map[string]any
			b, _ = base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
			if err := json.Unmarshal(b, &claims); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant", "sub_tenant", "role", "scope"} {
				if _, ok := claims[k]; !ok {
					t.Errorf("claim %s missing from %v", k, claims)
				}
			}
			if claims["scope"] != "reports:read reports:write" {
				t.Errorf("scope = %v", claims["scope"])
			}

			kid, iss, err := ParseUnverified(tok)
			if err != nil || kid != key.ID || iss != testIssuer {
				t.Fatalf("ParseUnverified = %q, %q, %v", kid, iss, err)
			}
		})
	}
}

func claimsEqual(a, b *Claims) bool {
	return a.Issuer == b.Issuer && a.Subject == b.Subject && slices.Equal(a.Audience, b.Audience) &&
		a.IssuedAt.Equal(b.IssuedAt.Truncate(time.Second)) && a.NotBefore.Equal(b.NotBefore.Truncate(time.Second)) &&
		a.ExpiresAt.Equal(b.ExpiresAt.Truncate(time.Second)) && a.ID == b.ID && a.Tenant == b.Tenant &&
		a.SubTenant == b.SubTenant && a.Role == b.Role && slices.Equal(a.Scopes, b.Scopes) && a.KeyID == b.KeyID
}

func TestMintJWTRefusesBadInput(t *testing.T) {
	es := testKey(t, ES256, false)
	mismatched := *es
	mismatched.Algorithm = RS256
	for _, tc := range []struct {
		name string
		key  *SigningKey
		edit func(*Claims)
	}{
		{"nil key", nil, func(*Claims) {}},
		{"key of another algorithm", &mismatched, func(*Claims) {}},
		{"no exp", es, func(c *Claims) { c.ExpiresAt = time.Time{} }},
		{"no ID", es, func(c *Claims) { c.ID = "" }},
		{"scope with space", es, func(c *Claims) { c.Scopes = []string{"a b"} }},
		{"empty scope", es, func(c *Claims) { c.Scopes = []string{""} }},
		{"empty audience", es, func(c *Claims) { c.Audience = []string{""} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClaims()
			tc.edit(&c)
			if _, err := MintJWT(tc.key, c); err == nil {
				t.Fatal("MintJWT accepted bad input")
			}
		})
	}
}

func TestMinimalClaimsRoundTrip(t *testing.T) {
	ed := testKey(t, EdDSA, false)
	v := testVerifier(t)
	v.Issuer, v.Audiences = "", nil
	tok, err := MintJWT(ed, Claims{ID: "x", ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IssuedAt.IsZero() || !c.NotBefore.IsZero() || c.Audience != nil || c.Scopes != nil {
		t.Fatalf("absent claims came back as %+v", c)
	}
}

func TestParseUnverifiedRefuses(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want Reason
	}{
		{strings.Repeat("a", MaxTokenLength+1), ReasonTooLarge},
		{"a.b", ReasonMalformed},
		{"e30.!!.x", ReasonMalformed},
		{"!!.e30.x", ReasonMalformed},
	} {
		if _, _, err := ParseUnverified(tc.tok); ReasonOf(err) != tc.want {
			t.Errorf("ParseUnverified(%.20q): %v, want %s", tc.tok, err, tc.want)
		}
	}
}

func TestReasonOf(t *testing.T) {
	if ReasonOf(nil) != "" {
		t.Error("ReasonOf(nil) is not empty")
	}
	if ReasonOf(errors.New("boom")) != ReasonMalformed {
		t.Error("foreign errors are not Malformed")
	}
	wrapped := fmt.Errorf("validating: %w", &Error{Reason: ReasonExpired})
	if ReasonOf(wrapped) != ReasonExpired {
		t.Error("wrapped reason lost")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for tok, want := range map[string]bool{"a.b.c": true, "a.b": false, "apt_X_Y": false, "a.b.c.d": false, "..": true} {
		if LooksLikeJWT(tok) != want {
			t.Errorf("LooksLikeJWT(%q) != %v", tok, want)
		}
	}
}

// The validator shares one Verifier between all requests.
func TestVerifyConcurrent(t *testing.T) {
	v := testVerifier(t)
	var toks []string
	for _, alg := range algorithms {
		tok, err := MintJWT(testKey(t, alg, false), testClaims())
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	errs := make(chan error, 8*len(toks))
	for range 8 {
		go func() {
			for _, tok := range toks {
				_, err := v.Verify(tok)
				errs <- err
			}
		}()
	}
	for range 8 * len(toks) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// An exchanged token's parent and depth survive minting and verifying, and MintJWT
// refuses a parent without a depth, a depth without a parent, and a depth past
// MaxDepth.
func TestParentAndDepthRoundTrip(t *testing.T) {
	key := testKey(t, ES256, false)
	c := testClaims()
	c.Parent, c.Depth = "01JPARENT", 2
	tok, err := MintJWT(key, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testVerifier(t).Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Parent != c.Parent || got.Depth != c.Depth {
		t.Errorf("parent %q depth %d, want %q %d", got.Parent, got.Depth, c.Parent, c.Depth)
	}
	for _, bad := range []struct {
		parent string
		depth  int
	}{{"01JPARENT", 0}, {"", 1}, {"01JPARENT", MaxDepth + 1}, {"01JPARENT", -1}} {
		c.Parent, c.Depth = bad.parent, bad.depth
		if _, err := MintJWT(key, c); err == nil {
			t.Errorf("parent %q depth %d: minted", bad.parent, bad.depth)
		}
	}
}
