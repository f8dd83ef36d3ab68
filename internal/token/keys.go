package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithm is a JWS signing algorithm this package mints and verifies.
type Algorithm string

// The supported algorithms. Only asymmetric ones: the validator must be able
// to verify without being able to mint.
const (
	// ES256 is ECDSA on P-256 with SHA-256, signatures in IEEE P1363 form.
	ES256 Algorithm = "ES256"
	// EdDSA is Ed25519 (RFC 8037).
	EdDSA Algorithm = "EdDSA"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256 on a 2048-bit (or larger) key.
	RS256 Algorithm = "RS256"
)

// rsaBits is the size of generated RSA keys and the minimum size accepted.
const rsaBits = 2048

// Valid reports whether a is one of the supported algorithms.
func (a Algorithm) Valid() bool {
	return a == ES256 || a == EdDSA || a == RS256
}

// method returns golang-jwt's implementation of a, or nil.
func (a Algorithm) method() jwt.SigningMethod {
	switch a {
	case ES256:
		return jwt.SigningMethodES256
	case EdDSA:
		return jwt.SigningMethodEdDSA
	case RS256:
		return jwt.SigningMethodRS256
	}
	return nil
}

// SigningKey is a private key with the algorithm it signs with and its key ID.
type SigningKey struct {
	// ID is the RFC 7638 thumbprint of the public key; it is the kid header.
	ID string
	// Algorithm is the JWS algorithm the key signs with.
	Algorithm Algorithm
	// Signer is *ecdsa.PrivateKey (P-256), ed25519.PrivateKey or
	// *rsa.PrivateKey; golang-jwt needs these concrete types to sign.
	Signer crypto.Signer
}

// GenerateKey creates a new private key for alg from crypto/rand.
func GenerateKey(alg Algorithm) (*SigningKey, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		signer, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		return nil, fmt.Errorf("unsupported algorithm %s", quoteShort(string(alg)))
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", alg, err)
	}
	return newSigningKey(alg, signer)
}

// newSigningKey checks that signer fits alg and computes the key ID.
func newSigningKey(alg Algorithm, signer crypto.Signer) (*SigningKey, error) {
	if err := checkKeyType(alg, signer.Public()); err != nil {
		return nil, err
	}
	id, err := Thumbprint(signer.Public())
	if err != nil {
		return nil, err
	}
	return &SigningKey{ID: id, Algorithm: alg, Signer: signer}, nil
}

// MarshalPrivateKey encodes the private key as a PKCS#8 PEM block, the form
// stored in the issuer's Secret.
func (k *SigningKey) MarshalPrivateKey() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		// The x509 error names only the key type, never key material.
		return nil, fmt.Errorf("encoding %s private key: %w", k.Algorithm, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS#8 PEM private key written by
// MarshalPrivateKey. It recomputes the key ID rather than trusting stored
// metadata, and fails if the key's type does not fit alg.
func ParsePrivateKey(alg Algorithm, pemBytes []byte) (*SigningKey, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("unsupported algorithm %s", quoteShort(string(alg)))
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("private key: no PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key: unsupported type %T", key)
	}
	return newSigningKey(alg, signer)
}

// PublicJWK returns the public half of the key as a JWK for the issuer's JWKS.
func (k *SigningKey) PublicJWK() JWK {
	// The key was checked when the SigningKey was built, so this cannot fail
	// for keys from GenerateKey or ParsePrivateKey.
	j, _ := publicJWK(k.Signer.Public())
	j.Kid = k.ID
	j.Alg = string(k.Algorithm)
	j.Use = "sig"
	return j
}

// checkKeyType reports whether pub is a key alg can verify with, including
// the curve and the minimum RSA size.
func checkKeyType(alg Algorithm, pub crypto.PublicKey) error {
	switch alg {
	case ES256:
		if k, ok := pub.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return nil
		}
	case EdDSA:
		if k, ok := pub.(ed25519.PublicKey); ok && len(k) == ed25519.PublicKeySize {
			return nil
		}
	case RS256:
		if k, ok := pub.(*rsa.PublicKey); ok {
			if k.N == nil || k.N.BitLen() < rsaBits {
				return fmt.Errorf("RS256 key must have at least %d bits", rsaBits)
			}
			return nil
		}
	default:
		return fmt.Errorf("unsupported algorithm %s", quoteShort(string(alg)))
	}
	return fmt.Errorf("key of type %T does not fit algorithm %s", pub, alg)
}

// Thumbprint returns the RFC 7638 JWK thumbprint of pub: SHA-256 over the
// required members in lexicographic order, base64url without padding.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := publicJWK(pub)
	if err != nil {
		return "", err
	}
	// RFC 7638 fixes member order and forbids whitespace, so the JSON is
	// written by hand; the values are base64url or fixed names, which need
	// no escaping.
	var canon string
	switch j.Kty {
	case "EC":
		canon = `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	case "OKP":
		canon = `{"crv":"` + j.Crv + `","kty":"OKP","x":"` + j.X + `"}`
	case "RSA":
		canon = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// publicJWK encodes the key members of pub (no kid, alg or use).
func publicJWK(pub crypto.PublicKey) (JWK, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return JWK{}, errors.New("only P-256 ECDSA keys are supported")
		}
		point, err := k.Bytes() // 0x04 || X || Y, coordinates full-width
		if err != nil {
			return JWK{}, fmt.Errorf("ECDSA public key: %w", err)
		}
		return JWK{Kty: "EC", Crv: "P-256", X: b64(point[1:33]), Y: b64(point[33:])}, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return JWK{}, errors.New("public key: Ed25519 key has the wrong length")
		}
		return JWK{Kty: "OKP", Crv: "Ed25519", X: b64(k)}, nil
	case *rsa.PublicKey:
		if k.N == nil || k.E < 2 {
			return JWK{}, errors.New("public key: RSA key is incomplete")
		}
		return JWK{Kty: "RSA", N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return JWK{}, fmt.Errorf("unsupported public key type %T", pub)
}
