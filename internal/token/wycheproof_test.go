package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Wycheproof vectors come from the Go module cache rather than from
// testdata: the module is pinned in go.mod (go get ...@version) and read from
// its cache directory, so the vectors are checksummed by go.sum and nobody
// copies them by hand. The module holds no Go package, so nothing imports it.
const (
	wycheproofModule  = "github.com/google/wycheproof"
	wycheproofVersion = "v0.0.0-20191219022705-2196000605e4"
)

// wycheproofDir returns the testvectors directory of the pinned module,
// downloading it first if the module cache lacks it. It fails the test rather
// than skipping it: missing vectors must not look like passing ones.
func wycheproofDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	// The module path has no upper-case letters, so its cache path needs
	// no escaping.
	dir := filepath.Join(strings.TrimSpace(string(out)), wycheproofModule+"@"+wycheproofVersion, "testvectors")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		cmd := exec.Command("go", "mod", "download", wycheproofModule+"@"+wycheproofVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go mod download %s@%s: %v\n%s", wycheproofModule, wycheproofVersion, err, out)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Wycheproof vectors not found: %v", err)
	}
	return dir
}

type wycheproofFile struct {
	Algorithm     string            `json:"algorithm"`
	NumberOfTests int               `json:"numberOfTests"`
	TestGroups    []wycheproofGroup `json:"testGroups"`
}

// wycheproofGroup is a key and the vectors signed with it.
type wycheproofGroup struct {
	Type   string `json:"type"`
	SHA    string `json:"sha"`
	JWK    JWK    `json:"jwk"`    // ECDSA, EdDSA
	KeyJWK JWK    `json:"keyJwk"` // RSA
	KeyDer string `json:"keyDer"` // RSA: the SubjectPublicKeyInfo
	Key    struct {
		Curve        string `json:"curve"`
		Uncompressed string `json:"uncompressed"` // ECDSA
		PK           string `json:"pk"`           // EdDSA
	} `json:"key"`
	Tests []struct {
		TcID    int      `json:"tcId"`
		Comment string   `json:"comment"`
		Msg     string   `json:"msg"`
		Sig     string   `json:"sig"`
		Result  string   `json:"result"` // valid, invalid or acceptable
		Flags   []string `json:"flags"`
	} `json:"tests"`
}

// TestWycheproof runs the vectors through verifySignature, the function
// Verify uses for every signature, with keys decoded by our JWK code from the
// vectors' own JWKs. The message plays the role of the JWS signing input.
func TestWycheproof(t *testing.T) {
	dir := wycheproofDir(t)
	for _, tc := range []struct {
		file, groupType, curve string
		alg                    Algorithm
	}{
		{"ecdsa_secp256r1_sha256_p1363_test.json", "EcdsaP1363Verify", "secp256r1", ES256},
		{"eddsa_test.json", "EddsaVerify", "edwards25519", EdDSA},
		// RS256 is RSASSA-PKCS1-v1_5 with SHA-256; this file has 2048-bit keys, the
		// size we generate.
		{"rsa_signature_2048_sha256_test.json", "RsassaPkcs1Verify", "", RS256},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var f wycheproofFile
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			var ran, accepted, rejected int
			for _, g := range f.TestGroups {
				if g.Type != tc.groupType || g.Key.Curve != tc.curve || (tc.alg != EdDSA && g.SHA != "SHA-256") {
					t.Fatalf("unexpected group %s/%s/%s", g.Type, g.Key.Curve, g.SHA)
				}
				pub := wycheproofKey(t, tc.alg, g)
				for _, v := range g.Tests {
					ran++
					msg, err1 := hex.DecodeString(v.Msg)
					sig, err2 := hex.DecodeString(v.Sig)
					if err1 != nil || err2 != nil {
						t.Fatalf("tcId %d: bad hex", v.TcID)
					}
					err := verifySignature(tc.alg, pub, string(msg), sig)
					switch v.Result {
					case "valid":
						if err != nil {
							t.Errorf("tcId %d (%s): valid signature rejected: %v", v.TcID, v.Comment, err)
						}
					case "invalid":
						if err == nil {
							t.Errorf("tcId %d (%s): invalid signature accepted", v.TcID, v.Comment)
						}
					case "acceptable":
						// Either outcome is allowed; record which one we give.
						if err == nil {
							accepted++
						} else {
							rejected++
						}
						t.Logf("tcId %d (%s, flags %v): acceptable, we %s", v.TcID, v.Comment, v.Flags,
							map[bool]string{true: "accept", false: "reject"}[err == nil])
					default:
						t.Fatalf("tcId %d: unknown result %q", v.TcID, v.Result)
					}
				}
			}
			if ran != f.NumberOfTests || ran == 0 {
				t.Fatalf("ran %d vectors, file has %d", ran, f.NumberOfTests)
			}
			t.Logf("%s: %d vectors; %d acceptable accepted, %d acceptable rejected", tc.file, ran, accepted, rejected)
		})
	}
}

// wycheproofKey decodes a group's JWK with JWK.PublicKey and checks it
// against the raw key of the same group, so a JWK decoding bug cannot hide
// behind matching vectors.
func wycheproofKey(t *testing.T, alg Algorithm, g wycheproofGroup) crypto.PublicKey {
	t.Helper()
	j := g.JWK
	if alg == RS256 {
		j = g.KeyJWK
	}
	j.Kid = "" // the vectors use "none"
	pub, err := j.PublicKey()
	if err != nil {
		t.Fatalf("JWK %+v: %v", j, err)
	}
	switch alg {
	case ES256:
		raw, _ := hex.DecodeString(g.Key.Uncompressed)
		want, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil || !want.Equal(pub) {
			t.Fatalf("JWK and uncompressed key differ (%v)", err)
		}
	case EdDSA:
		raw, _ := hex.DecodeString(g.Key.PK)
		if got, ok := pub.(ed25519.PublicKey); !ok || !bytes.Equal(got, raw) {
			t.Fatal("JWK and raw Ed25519 key differ")
		}
	case RS256:
		der, _ := hex.DecodeString(g.KeyDer)
		want, err := x509.ParsePKIXPublicKey(der)
		if got, ok := pub.(*rsa.PublicKey); err != nil || !ok || !got.Equal(want) {
			t.Fatalf("JWK and DER RSA key differ (%v)", err)
		}
	}
	return pub
}
