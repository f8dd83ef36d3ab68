package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// RFC 7638 section 3.1 and RFC 8037 appendix A.3 publish these thumbprints.
const (
	rfc7638N          = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	rfc8037X          = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037Thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
)

func TestThumbprintVectors(t *testing.T) {
	for _, tc := range []struct {
		jwk  JWK
		want string
	}{
		{JWK{Kty: "RSA", N: rfc7638N, E: "AQAB", Kid: "2011-04-29"}, rfc7638Thumbprint},
		{JWK{Kty: "OKP", Crv: "Ed25519", X: rfc8037X}, rfc8037Thumbprint},
	} {
		pub, err := tc.jwk.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(pub)
		if err != nil || got != tc.want {
			t.Errorf("Thumbprint(%s) = %q, %v; want %q", tc.jwk.Kty, got, err, tc.want)
		}
	}
}

func TestKeyRoundTrip(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			key, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if key.Algorithm != alg || len(key.ID) != 43 {
				t.Fatalf("key %s with ID %q", key.Algorithm, key.ID)
			}

			// Private key through its PEM form, as stored in the Secret.
			pemBytes, err := key.MarshalPrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(pemBytes), "-----BEGIN PRIVATE KEY-----") {
				t.Fatalf("not PKCS#8 PEM: %.30s", pemBytes)
			}
			parsed, err := ParsePrivateKey(alg, pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.ID != key.ID {
				t.Fatalf("ID after round trip %q, want %q", parsed.ID, key.ID)
			}
			for _, other := range algorithms {
				if other != alg {
					if _, err := ParsePrivateKey(other, pemBytes); err == nil {
						t.Errorf("ParsePrivateKey(%s) accepted a %s key", other, alg)
					}
				}
			}

			// Public key through JWKS JSON, as published in the issuer status.
			jwk := key.PublicJWK()
			if jwk.Kid != key.ID || jwk.Alg != string(alg) || jwk.Use != "sig" {
				t.Fatalf("JWK %+v", jwk)
			}
			b, err := json.Marshal(JWKS{Keys: []JWK{jwk}})
			if err != nil {
				t.Fatal(err)
			}
			var jwks JWKS
			if err := json.Unmarshal(b, &jwks); err != nil {
				t.Fatal(err)
			}
			pub, err := jwks.Keys[0].PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if tp, _ := Thumbprint(pub); tp != key.ID {
				t.Fatalf("thumbprint of decoded JWK %q, want %q", tp, key.ID)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Signer.Public()) {
				t.Fatal("decoded public key differs")
			}

			// A token minted by the parsed key verifies with the JWKS.
			ks, err := NewKeySet(jwks)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := MintJWT(parsed, Claims{ID: NewTokenID(), ExpiresAt: time.Now().Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := (&Verifier{Keys: ks}).Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.KeyID != key.ID {
				t.Fatalf("KeyID %q, want %q", c.KeyID, key.ID)
			}
		})
	}
}

func TestPrivateKeyRefused(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	pemOf := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		name string
		alg  Algorithm
		pem  []byte
	}{
		{"P-384 as ES256", ES256, pemOf(p384)},
		{"1024-bit RSA", RS256, pemOf(small)},
		{"not PEM", EdDSA, []byte("not a key")},
		{"wrong PEM type", RS256, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})},
		{"garbage DER", ES256, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})},
		{"unknown algorithm", "HS256", pemOf(p384)},
	} {
		if _, err := ParsePrivateKey(tc.alg, tc.pem); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := GenerateKey("HS256"); err == nil {
		t.Error("GenerateKey(HS256) succeeded")
	}
	if _, err := Thumbprint(&p384.PublicKey); err == nil {
		t.Error("Thumbprint accepted a P-384 key")
	}
}

func TestJWKValidation(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	es := testKey(t, ES256, false).PublicJWK()
	ed := testKey(t, EdDSA, false).PublicJWK()
	rs := testKey(t, RS256, false).PublicJWK()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	offCurve := es
	offCurve.Y = b64(make([]byte, 32)) // (x, 0) is not on P-256 for this x
	for _, tc := range []struct {
		name string
		jwk  JWK
	}{
		{"point not on curve", offCurve},
		{"short x", JWK{Kty: "EC", Crv: "P-256", X: es.X[:20], Y: es.Y}},
		{"P-384", JWK{Kty: "EC", Crv: "P-384", X: es.X, Y: es.Y}},
		{"Ed25519 31 bytes", JWK{Kty: "OKP", Crv: "Ed25519", X: b64(make([]byte, 31))}},
		{"Ed448", JWK{Kty: "OKP", Crv: "Ed448", X: ed.X}},
		{"1024-bit RSA", JWK{Kty: "RSA", N: b64(small.N.Bytes()), E: "AQAB"}},
		{"RSA e = 1", JWK{Kty: "RSA", N: rs.N, E: "AQ"}},
		{"RSA e even", JWK{Kty: "RSA", N: rs.N, E: "AQAA"}},
		{"RSA e too long", JWK{Kty: "RSA", N: rs.N, E: b64([]byte{1, 0, 0, 0, 1})}},
		{"padded base64", JWK{Kty: "OKP", Crv: "Ed25519", X: ed.X + "="}},
		{"oct", JWK{Kty: "oct", X: ed.X}},
	} {
		if _, err := tc.jwk.PublicKey(); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestNewKeySet(t *testing.T) {
	es := testKey(t, ES256, false).PublicJWK()
	ed := testKey(t, EdDSA, false).PublicJWK()

	bare := ed
	bare.Kid, bare.Alg, bare.Use = "", "", ""
	ks, err := NewKeySet(JWKS{Keys: []JWK{es, bare}})
	if err != nil {
		t.Fatal(err)
	}
	if _, alg, ok := ks.PublicKey(ed.Kid); !ok || alg != EdDSA {
		t.Errorf("key without kid/alg: found=%v alg=%s, want thumbprint kid and EdDSA", ok, alg)
	}
	if _, _, ok := ks.PublicKey("nope"); ok {
		t.Error("unknown kid found")
	}
	var nilSet *StaticKeySet
	if _, _, ok := nilSet.PublicKey(es.Kid); ok {
		t.Error("nil set found a key")
	}

	wrongAlg := es
	wrongAlg.Alg = "EdDSA"
	enc := es
	enc.Use = "enc"
	hs := es
	hs.Alg = "HS256"
	for name, jwks := range map[string]JWKS{
		"duplicate kid":  {Keys: []JWK{es, es}},
		"alg of another": {Keys: []JWK{wrongAlg}},
		"use enc":        {Keys: []JWK{enc}},
		"symmetric alg":  {Keys: []JWK{hs}},
		"invalid key":    {Keys: []JWK{{Kty: "EC", Crv: "P-256"}}},
	} {
		if ks, err := NewKeySet(jwks); err == nil || ks != nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestJWKHasNoPrivateMembers(t *testing.T) {
	for _, alg := range algorithms {
		b, err := json.Marshal(testKey(t, alg, false).PublicJWK())
		if err != nil {
			t.Fatal(err)
		}
		for _, private := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`} {
			if strings.Contains(string(b), private+":") {
				t.Errorf("%s JWK %s has private member %s", alg, b, private)
			}
		}
	}
	// Decoding a private JWK drops the private part.
	var j JWK
	if err := json.Unmarshal([]byte(`{"kty":"OKP","crv":"Ed25519","x":"`+rfc8037X+`","d":"secret"}`), &j); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(j); strings.Contains(string(b), "secret") {
		t.Errorf("private member survived: %s", b)
	}
}

func TestAlgorithmValid(t *testing.T) {
	for alg, want := range map[Algorithm]bool{ES256: true, EdDSA: true, RS256: true, "HS256": false, "none": false, "": false, "es256": false} {
		if alg.Valid() != want {
			t.Errorf("%q.Valid() = %v", alg, !want)
		}
	}
}
