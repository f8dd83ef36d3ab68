package token

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is the Crockford base32 alphabet used by ULIDs: no I, L, O or U,
// so IDs survive being read aloud or retyped.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// TokenIDLength is the length of the IDs NewTokenID returns.
const TokenIDLength = 26

// NewTokenID returns a new ULID: 48 bits of Unix milliseconds then 80 bits
// from crypto/rand, as 26 Crockford base32 characters. IDs sort by creation
// time, which keeps status lists and logs readable; the random part makes
// them unguessable, although IDs are not secrets.
func NewTokenID() string {
	return newTokenID(time.Now())
}

func newTokenID(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	rand.Read(b[6:]) // never fails since Go 1.24
	return encodeULID(b)
}

// encodeULID writes the 128 bits of b as 26 base32 digits, most significant
// first; the first digit holds only the top 3 bits.
func encodeULID(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [TokenIDLength]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
