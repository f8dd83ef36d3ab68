package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary strings, seeded with valid tokens of
// every algorithm and with every crafted refusal. Verify must never panic,
// must refuse with a typed reason that does not echo the token, and must
// accept only tokens that an independent check, using the bare crypto
// packages, finds signed by one of the test keys.
func FuzzVerify(f *testing.F) {
	v := testVerifier(f)
	for _, alg := range algorithms {
		tok, err := MintJWT(testKey(f, alg, false), testClaims())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	for _, r := range refusals(f) {
		if len(r.tok) <= MaxTokenLength {
			f.Add(r.tok)
		}
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if ReasonOf(err) == "" {
				t.Fatalf("error without reason: %v", err)
			}
			if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
				t.Fatalf("error %q contains the token", err)
			}
		} else if !signedByTestKey(t, tok) {
			t.Fatalf("accepted a token not signed by a test key: %q", tok)
		}
		// The cheap peek must not panic either.
		_, _, _ = ParseUnverified(tok)
		LooksLikeJWT(tok)
	})
}

// signedByTestKey checks tok's signature without any code of this package
// or of golang-jwt.
func signedByTestKey(t *testing.T, tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	input, sigText := tok[:i], tok[i+1:]
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || base64.RawURLEncoding.EncodeToString(sig) != sigText {
		return false // only the canonical encoding counts
	}
	digest := sha256.Sum256([]byte(input))
	for _, alg := range algorithms {
		switch pub := testKey(t, alg, false).Signer.Public().(type) {
		case *ecdsa.PublicKey:
			if len(sig) == 64 && ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return true
			}
		case ed25519.PublicKey:
			if ed25519.Verify(pub, []byte(input), sig) {
				return true
			}
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil {
				return true
			}
		}
	}
	return false
}

// fuzzOpaque is a fixed opaque token, so that fuzz inputs reproduce.
func fuzzOpaque() (tok, hash string) {
	body := "apt_01JD5Y2ZK3Q4W8N6M1R7T9V0XB_" + strings.Repeat("Ab3", SecretLength/3) + "z"
	var sum [ChecksumLength]byte
	encodeChecksum(&sum, crc32.ChecksumIEEE([]byte(body)))
	return body + string(sum[:]), hashSecret([]byte(body[len(body)-SecretLength:]))
}

// FuzzParseOpaque checks ParseOpaque and VerifyOpaque on arbitrary strings:
// no panics, only the two documented reasons, a structure and checksum
// re-checked independently on success, and acceptance only of the one
// secret whose hash is given.
func FuzzParseOpaque(f *testing.F) {
	tok, hash := fuzzOpaque()
	secret := tok[len(tok)-SecretLength-ChecksumLength : len(tok)-ChecksumLength]
	for _, s := range []string{tok, "", "_", "__", "apt__", "apt_x_", tok[:len(tok)-1], typo(tok, 40), "APT" + tok[3:], tok + "0", "a.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		prefix, id, err := ParseOpaque(s)
		if err != nil {
			if r := ReasonOf(err); r != ReasonMalformed && r != ReasonBadChecksum {
				t.Fatalf("reason %s", r)
			}
		} else {
			if !opaqueShape.MatchString(s) || !strings.HasPrefix(s, prefix+"_"+id+"_") {
				t.Fatalf("accepted %q with prefix %q, ID %q", s, prefix, id)
			}
			var n uint64
			for _, c := range []byte(s[len(s)-ChecksumLength:]) {
				n = n*62 + uint64(strings.IndexByte(base62, c))
			}
			if n != uint64(crc32.ChecksumIEEE([]byte(s[:len(s)-ChecksumLength]))) {
				t.Fatalf("accepted %q with a wrong checksum", s)
			}
		}
		got, err := VerifyOpaque(s, hash)
		if err == nil {
			if got != id || s[len(s)-SecretLength-ChecksumLength:len(s)-ChecksumLength] != secret {
				t.Fatalf("VerifyOpaque accepted %q", s)
			}
		} else if len(s) >= 16 && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains the token", err)
		}
	})
}
