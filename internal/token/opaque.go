package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
)

// Layout of opaque tokens: <prefix>_<id>_<secret><checksum>.
const (
	// DefaultOpaquePrefix is the prefix of an issuer that names none. The API's
	// default (v1alpha1.DefaultOpaquePrefix) must be the same, so that code that cannot
	// import the API (pkg/, internal/bearer) reassembles the tokens the manager mints.
	DefaultOpaquePrefix = "apt"
	// MaxPrefixLength bounds the prefix; prefixes are 1 to 16 characters a-z, 0-9.
	MaxPrefixLength = 16
	// MaxIDLength bounds the ID; IDs are 1 to 64 characters 0-9, A-Z, a-z
	// (NewTokenID gives 26).
	MaxIDLength = 64
	// SecretLength is the number of base62 characters of the secret:
	// 43 × log2(62) ≈ 256.03 bits, the smallest width that holds 256 bits.
	SecretLength = 43
	// ChecksumLength is the width of the base62 CRC32 (62^6 > 2^32).
	ChecksumLength = 6

	maxOpaqueLength = MaxPrefixLength + 1 + MaxIDLength + 1 + SecretLength + ChecksumLength
	hashPrefix      = "sha256:"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// OpaqueToken is a freshly minted opaque token. Token goes into the Secret
// and nowhere else; ID and Hash go into the APIToken status.
type OpaqueToken struct {
	// Token is the whole bearer token, including the secret.
	Token string
	// ID is the public token ID embedded in Token.
	ID string
	// Hash is "sha256:<hex>" of the secret part: what VerifyOpaque checks
	// against, safe to store and to show.
	Hash string
}

// MintOpaque returns a new token <prefix>_<id>_<secret><checksum>: 256 bits of
// secret from crypto/rand in base62, then a base62 CRC32 over everything
// before it so that secret scanners and the validator can reject typos
// without a lookup. prefix must be 1-16 characters a-z, 0-9; id 1-64
// characters 0-9, A-Z, a-z (a ULID from NewTokenID fits).
func MintOpaque(prefix, id string) (OpaqueToken, error) {
	if !validPrefix(prefix) {
		return OpaqueToken{}, fmt.Errorf("opaque token prefix %s must be 1-%d characters a-z, 0-9", quoteShort(prefix), MaxPrefixLength)
	}
	if !validID(id) {
		return OpaqueToken{}, fmt.Errorf("opaque token ID %s must be 1-%d characters 0-9, A-Z, a-z", quoteShort(id), MaxIDLength)
	}
	var secret [SecretLength]byte
	randomBase62(secret[:])
	body := prefix + "_" + id + "_" + string(secret[:])
	var sum [ChecksumLength]byte
	encodeChecksum(&sum, crc32String(body))
	return OpaqueToken{
		Token: body + string(sum[:]),
		ID:    id,
		Hash:  hashSecret(secret[:]),
	}, nil
}

// ParseOpaque checks the structure and checksum of tok and returns its prefix
// and ID. It does not check the secret; see VerifyOpaque. The error's reason
// is ReasonMalformed or ReasonBadChecksum (also for over-long input, since no
// opaque token is longer than 131 bytes).
func ParseOpaque(tok string) (prefix, id string, err error) {
	prefix, id, _, e := splitOpaque(tok)
	if e != nil {
		return "", "", e
	}
	return prefix, id, nil
}

// VerifyOpaque checks the structure and checksum of tok, then compares the
// hash of its secret in constant time with each of hashes (the current and
// still-accepted previous hashes of the token's ID) and returns the token ID
// if one matches. Without a match the reason is ReasonUnknownToken.
func VerifyOpaque(tok string, hashes ...string) (id string, err error) {
	_, id, secret, e := splitOpaque(tok)
	if e != nil {
		return "", e
	}
	sum := sha256Secret(secret)
	match := 0
	// Every stored hash is compared, matched or not, so timing does not
	// tell which one (current or previous) matched.
	for _, h := range hashes {
		var want [sha256.Size]byte
		if decodeHash(&want, h) {
			match |= subtle.ConstantTimeCompare(sum[:], want[:])
		}
	}
	if match != 1 {
		return "", refuse(ReasonUnknownToken, "secret matches no stored hash")
	}
	return id, nil
}

// OpaqueHash checks the structure and checksum of tok and returns the
// "sha256:<hex>" hash of its secret, the key under which a validator may
// index tokens by hash.
func OpaqueHash(tok string) (string, error) {
	_, _, secret, e := splitOpaque(tok)
	if e != nil {
		return "", e
	}
	sum := sha256Secret(secret)
	return hashPrefix + hex.EncodeToString(sum[:]), nil
}

// splitOpaque validates every character class before computing the checksum,
// so that the checksum step only ever sees well-formed input.
func splitOpaque(tok string) (prefix, id, secret string, err *Error) {
	if len(tok) > maxOpaqueLength {
		return "", "", "", refuse(ReasonMalformed, "longer than any opaque token")
	}
	prefix, rest, ok := strings.Cut(tok, "_")
	if !ok || !validPrefix(prefix) {
		return "", "", "", refuse(ReasonMalformed, "opaque token prefix is missing or invalid")
	}
	id, tail, ok := strings.Cut(rest, "_")
	if !ok || !validID(id) {
		return "", "", "", refuse(ReasonMalformed, "opaque token ID is missing or invalid")
	}
	if len(tail) != SecretLength+ChecksumLength || !isBase62(tail) {
		return "", "", "", refuse(ReasonMalformed, "opaque token secret has the wrong length or characters")
	}
	var want [ChecksumLength]byte
	encodeChecksum(&want, crc32String(tok[:len(tok)-ChecksumLength]))
	if string(want[:]) != tail[SecretLength:] {
		return "", "", "", refuse(ReasonBadChecksum, "opaque token checksum does not match")
	}
	return prefix, id, tail[:SecretLength], nil
}

func validPrefix(s string) bool {
	if len(s) == 0 || len(s) > MaxPrefixLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func validID(s string) bool {
	return len(s) > 0 && len(s) <= MaxIDLength && isBase62(s)
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// randomBase62 fills dst with uniform base62 characters from crypto/rand.
// Bytes of 248 and above are rejected because 248 = 4 × 62: keeping them
// would bias the first characters of the alphabet.
func randomBase62(dst []byte) {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		rand.Read(buf[:]) // never fails since Go 1.24
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			dst[n] = base62[b%62]
			if n++; n == len(dst) {
				return
			}
		}
	}
}

// crc32String is the IEEE CRC32 of s. It walks the table itself because
// crc32.ChecksumIEEE would need s copied to the heap as a []byte, which costs
// more than the checksum on a 130-byte token.
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

// encodeChecksum writes c as fixed-width base62, most significant digit first.
func encodeChecksum(dst *[ChecksumLength]byte, c uint32) {
	for i := ChecksumLength - 1; i >= 0; i-- {
		dst[i] = base62[c%62]
		c /= 62
	}
}

func sha256Secret(secret string) [sha256.Size]byte {
	// Copying into a fixed array keeps the secret off the heap.
	var buf [SecretLength]byte
	copy(buf[:], secret)
	return sha256.Sum256(buf[:])
}

func hashSecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hashPrefix + hex.EncodeToString(sum[:])
}

// decodeHash parses "sha256:<64 lowercase or uppercase hex>" into dst.
// It decodes by hand to avoid converting the string to a []byte per call.
// Stored hashes are not secret (they are in the APIToken status), so their
// decoding need not be constant-time; the comparison of digests is.
func decodeHash(dst *[sha256.Size]byte, h string) bool {
	if len(h) != len(hashPrefix)+2*sha256.Size || h[:len(hashPrefix)] != hashPrefix {
		return false
	}
	h = h[len(hashPrefix):]
	for i := range dst {
		hi, ok1 := fromHex(h[2*i])
		lo, ok2 := fromHex(h[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
