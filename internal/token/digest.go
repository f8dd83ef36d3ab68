package token

import (
	"crypto/sha256"
	"encoding/hex"
	"unsafe"
)

// DigestSum is the SHA-256 of the whole token: what binds a listed JWT to its
// record, so that a token re-signed from it with any claim changed is not the
// token the record lists.
//
// The validator hashes every token it is shown (the decision cache is keyed by it),
// so the token's bytes are read in place: sha256.Sum256 only reads its input, and
// []byte(tok) would copy the token to the heap on every request (BenchmarkDigestSum).
func DigestSum(tok string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(tok), len(tok)))
}

// Digest is DigestSum in the form the APIToken status records, "sha256:<hex>". It
// reveals nothing of the token: a signed token has as many unguessable bits as
// its signature.
func Digest(tok string) string { return FormatDigest(DigestSum(tok)) }

// FormatDigest writes a DigestSum as Digest does.
func FormatDigest(sum [sha256.Size]byte) string { return hashPrefix + hex.EncodeToString(sum[:]) }
