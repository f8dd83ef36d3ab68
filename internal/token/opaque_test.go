package token

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

// opaqueShape is the pattern a secret scanner would use for our tokens.
var opaqueShape = regexp.MustCompile(`^[a-z0-9]{1,16}_[0-9A-Za-z]{1,64}_[0-9A-Za-z]{49}$`)

func TestOpaqueRoundTrip(t *testing.T) {
	for _, tc := range []struct{ prefix, id string }{
		{"apt", NewTokenID()},
		{"a", "x"},
		{"0123456789abcdef", strings.Repeat("Z", MaxIDLength)},
	} {
		op, err := MintOpaque(tc.prefix, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if !opaqueShape.MatchString(op.Token) {
			t.Fatalf("token %q does not have the documented shape", op.Token)
		}
		if op.ID != tc.id || LooksLikeJWT(op.Token) {
			t.Fatalf("ID %q, LooksLikeJWT %v", op.ID, LooksLikeJWT(op.Token))
		}
		secret := op.Token[len(tc.prefix)+1+len(tc.id)+1 : len(op.Token)-ChecksumLength]
		sum := sha256.Sum256([]byte(secret))
		if op.Hash != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("Hash %q is not sha256 of the secret", op.Hash)
		}
		if strings.Contains(op.Hash, secret) {
			t.Fatal("hash contains the secret")
		}

		prefix, id, err := ParseOpaque(op.Token)
		if err != nil || prefix != tc.prefix || id != tc.id {
			t.Fatalf("ParseOpaque = %q, %q, %v", prefix, id, err)
		}
		other, _ := MintOpaque(tc.prefix, tc.id)
		upper := "sha256:" + strings.ToUpper(op.Hash[len("sha256:"):])
		for _, hashes := range [][]string{{op.Hash}, {other.Hash, op.Hash}, {op.Hash, other.Hash}, {upper}} {
			id, err = VerifyOpaque(op.Token, hashes...)
			if err != nil || id != tc.id {
				t.Fatalf("VerifyOpaque with %d hashes = %q, %v", len(hashes), id, err)
			}
		}
		h, err := OpaqueHash(op.Token)
		if err != nil || h != op.Hash {
			t.Fatalf("OpaqueHash = %q, %v; want %q", h, err, op.Hash)
		}
	}
}

func TestMintOpaqueRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ prefix, id string }{
		{"", "id"},
		{"APT", "id"},
		{"a_b", "id"},
		{strings.Repeat("a", MaxPrefixLength+1), "id"},
		{"apt", ""},
		{"apt", "a_b"},
		{"apt", "a-b"},
		{"apt", strings.Repeat("a", MaxIDLength+1)},
	} {
		if _, err := MintOpaque(tc.prefix, tc.id); err == nil {
			t.Errorf("MintOpaque(%q, %q) accepted", tc.prefix, tc.id)
		}
	}
}

func TestOpaqueChecksum(t *testing.T) {
	for _, s := range []string{"", "a", "apt_01JD_" + strings.Repeat("x", SecretLength), strings.Repeat("\xff", 200)} {
		if got, want := crc32String(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("crc32String(%q) = %08x, want %08x", s, got, want)
		}
	}
	var b [ChecksumLength]byte
	encodeChecksum(&b, 0)
	if string(b[:]) != "000000" {
		t.Errorf("checksum of 0 = %q", b)
	}
	encodeChecksum(&b, 0xffffffff)
	if string(b[:]) != "4gfFC3" { // 4294967295 in base62
		t.Errorf("checksum of 2^32-1 = %q", b)
	}
}

// Every single-character substitution is caught by the checksum: CRC32
// detects all burst errors up to 32 bits.
func TestOpaqueChecksumCatchesEveryTypo(t *testing.T) {
	op, err := MintOpaque("apt", NewTokenID())
	if err != nil {
		t.Fatal(err)
	}
	for i := len("apt_"); i < len(op.Token); i++ {
		if op.Token[i] == '_' {
			continue
		}
		for _, c := range []byte(base62) {
			if c == op.Token[i] {
				continue
			}
			tok := op.Token[:i] + string(c) + op.Token[i+1:]
			if _, _, err := ParseOpaque(tok); ReasonOf(err) != ReasonBadChecksum {
				t.Fatalf("substitution at %d: %v", i, err)
			}
		}
	}
}

func TestSecretIsUniform(t *testing.T) {
	// Loose check that rejection sampling uses the whole alphabet and
	// favours none of it: 2000 secrets give about 1387 of each character.
	counts := map[byte]int{}
	var s [SecretLength]byte
	for range 2000 {
		randomBase62(s[:])
		for _, c := range s {
			counts[c]++
		}
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 1100 || n > 1700 {
			t.Errorf("character %q appeared %d times", c, n)
		}
	}
}
