package token

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestDigest: the digest is the SHA-256 of every byte of the token, so any change,
// even one that still verifies, gives another digest.
func TestDigest(t *testing.T) {
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJhIn0.c2ln"
	want := sha256.Sum256([]byte(tok))
	if got := DigestSum(tok); got != want {
		t.Fatalf("DigestSum = %x, want %x", got, want)
	}
	if got := Digest(tok); got != "sha256:"+hex.EncodeToString(want[:]) {
		t.Fatalf("Digest = %s", got)
	}
	for _, other := range []string{tok + "x", tok[:len(tok)-1], "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJiIn0.c2ln"} {
		if Digest(other) == Digest(tok) {
			t.Errorf("%q has the digest of %q", other, tok)
		}
	}
}
