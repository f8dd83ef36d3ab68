package token

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
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

// BenchmarkDigestSum: the digest of a JWT of the validator's benchmark size, read in
// place, against hashing a copy of it as []byte(tok) did.
func BenchmarkDigestSum(b *testing.B) {
	tok := strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 30) // 600 bytes
	var sink [sha256.Size]byte
	b.Run("in-place", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = DigestSum(tok)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = sha256.Sum256([]byte(tok))
		}
	})
	_ = sink
}
