package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
)

// maxRSABits bounds the RSA keys accepted from a JWK so that a bad JWKS cannot
// make every verification arbitrarily slow.
const maxRSABits = 8192

// JWK is a public key in JSON Web Key form (RFC 7517, RFC 8037 for Ed25519).
// Only the members this package uses are kept; private members such as "d"
// are dropped when decoding, so a JWK never carries private key material.
type JWK struct {
	Kty string `json:"kty,omitempty"` // "EC", "OKP" or "RSA"
	Crv string `json:"crv,omitempty"` // "P-256" or "Ed25519"
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"` // "sig" for every key this package writes
}

// JWKS is a JSON Web Key Set, as published in the issuer status and at
// /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicKey decodes and validates the key: the EC point must be on P-256, an
// Ed25519 key must be 32 bytes and an RSA modulus must have at least 2048
// bits. It returns *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey.
func (j JWK) PublicKey() (crypto.PublicKey, error) {
	switch j.Kty {
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("jwk: unsupported EC curve %s", quoteShort(j.Crv))
		}
		x, errX := decodeFixed(j.X, 32)
		y, errY := decodeFixed(j.Y, 32)
		if errX != nil || errY != nil {
			return nil, errors.New("jwk: EC coordinates must be 32-byte base64url")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return nil, fmt.Errorf("jwk: %w", err) // not on the curve, or infinity
		}
		return pub, nil
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("jwk: unsupported OKP curve %s", quoteShort(j.Crv))
		}
		x, err := decodeFixed(j.X, ed25519.PublicKeySize)
		if err != nil {
			return nil, errors.New("jwk: Ed25519 x must be 32-byte base64url")
		}
		return ed25519.PublicKey(x), nil
	case "RSA":
		n, errN := base64.RawURLEncoding.Strict().DecodeString(j.N)
		e, errE := base64.RawURLEncoding.Strict().DecodeString(j.E)
		if errN != nil || errE != nil {
			return nil, errors.New("jwk: RSA n and e must be base64url")
		}
		mod := new(big.Int).SetBytes(n)
		if mod.BitLen() < rsaBits || mod.BitLen() > maxRSABits || mod.Bit(0) == 0 {
			return nil, fmt.Errorf("jwk: RSA modulus must be odd and have %d to %d bits", rsaBits, maxRSABits)
		}
		// e is small in practice (65537); bounding it keeps it in an int.
		if len(e) == 0 || len(e) > 4 {
			return nil, errors.New("jwk: RSA exponent out of range")
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
			return nil, errors.New("jwk: RSA exponent out of range")
		}
		return &rsa.PublicKey{N: mod, E: exp}, nil
	}
	return nil, fmt.Errorf("jwk: unsupported key type %s", quoteShort(j.Kty))
}

// decodeFixed decodes base64url without padding and requires exactly n bytes.
// RFC 7518 requires full-width EC coordinates, which also keeps thumbprints
// canonical.
func decodeFixed(s string, n int) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("want %d bytes, got %d", n, len(b))
	}
	return b, nil
}

// KeySet finds the public key a token names in its kid header. The validator
// implements it over the issuers it watches; StaticKeySet is the plain one.
type KeySet interface {
	// PublicKey returns the key with ID kid and the only algorithm it may be
	// used with, or ok=false if there is no such key.
	PublicKey(kid string) (pub crypto.PublicKey, alg Algorithm, ok bool)
}

// StaticKeySet is an immutable KeySet built from a JWKS by NewKeySet. It is
// safe for concurrent use; to change keys, build a new one and swap it.
type StaticKeySet struct {
	keys map[string]verificationKey
}

type verificationKey struct {
	pub crypto.PublicKey
	alg Algorithm
}

// NewKeySet validates every key of jwks and returns them as a *StaticKeySet.
// A key without kid gets its thumbprint; a key without alg gets the only
// supported algorithm for its type. Duplicate kids, keys whose alg does not
// fit their type and keys not meant for signatures are errors: a key set that
// is partly wrong is refused whole rather than silently trimmed.
func NewKeySet(jwks JWKS) (KeySet, error) {
	s := &StaticKeySet{keys: make(map[string]verificationKey, len(jwks.Keys))}
	for i, j := range jwks.Keys {
		pub, err := j.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if j.Use != "" && j.Use != "sig" {
			return nil, fmt.Errorf("key %d: use is %s, want \"sig\"", i, quoteShort(j.Use))
		}
		alg := Algorithm(j.Alg)
		if alg == "" {
			alg = map[string]Algorithm{"EC": ES256, "OKP": EdDSA, "RSA": RS256}[j.Kty]
		}
		if err := checkKeyType(alg, pub); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		kid := j.Kid
		if kid == "" {
			if kid, err = Thumbprint(pub); err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
		}
		if _, dup := s.keys[kid]; dup {
			return nil, fmt.Errorf("key %d: duplicate kid %s", i, quoteShort(kid))
		}
		s.keys[kid] = verificationKey{pub: pub, alg: alg}
	}
	return s, nil
}

// PublicKey implements KeySet.
func (s *StaticKeySet) PublicKey(kid string) (crypto.PublicKey, Algorithm, bool) {
	if s == nil {
		return nil, "", false
	}
	k, ok := s.keys[kid]
	return k.pub, k.alg, ok
}
