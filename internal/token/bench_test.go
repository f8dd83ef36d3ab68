package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The benchmarks put each of our operations next to the bare crypto
// operation it cannot avoid, in the same run, so that the difference is our
// overhead. For ES256 and RS256 the bare verification includes the SHA-256
// of the signing input, which ed25519.Verify does internally. Results are in
// docs/performance.md.
//
// Besides ns/op (wall time), each benchmark reports cpu-ns/op: the process's
// CPU time per operation. On a shared machine wall time also counts the time
// other processes hold the CPU, which can swamp a 10% difference; CPU time
// does not.

// bench runs op in a b.Loop and reports its CPU time per operation.
func bench(b *testing.B, op func()) {
	start := cpuClock()
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64(cpuClock()-start)/float64(b.N), "cpu-ns/op")
}

// must turns an operation that may fail into one for bench.
func must(b *testing.B, op func() error) func() {
	return func() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJWT(b *testing.B) {
	v := testVerifier(b)
	for _, alg := range algorithms {
		key := testKey(b, alg, false)
		c := testClaims()
		tok, err := MintJWT(key, c)
		if err != nil {
			b.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		input := tok[:dot]
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil {
			b.Fatal(err)
		}
		pub := key.Signer.Public()
		// golang-jwt's own parser, for comparison: what Verify would cost
		// if it used jwt.Parse (MapClaims, validation included).
		parser := jwt.NewParser(jwt.WithValidMethods([]string{string(alg)}), jwt.WithTimeFunc(func() time.Time { return now }),
			jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience), jwt.WithExpirationRequired())
		ops := []struct {
			name string
			op   func()
		}{
			{"mint", must(b, func() error { _, err := MintJWT(key, c); return err })},
			{"verify", must(b, func() error { _, err := v.Verify(tok); return err })},
			{"verify-jwt.Parse", must(b, func() error {
				_, err := parser.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil })
				return err
			})},
		}
		bareSign, bareVerify := bareOps(b, key, input, sig)
		ops = append(ops, bareSign...)
		ops = append(ops, bareVerify...)
		for _, o := range ops {
			b.Run(string(alg)+"/"+o.name, func(b *testing.B) { bench(b, o.op) })
		}
	}
}

type namedOp = struct {
	name string
	op   func()
}

// bareOps returns the bare signing and verification of key's algorithm over
// input, with nothing of ours or of golang-jwt around them.
func bareOps(b *testing.B, key *SigningKey, input string, sig []byte) (sign, verify []namedOp) {
	check := func(ok bool) {
		if !ok {
			b.Fatal("bare verification failed")
		}
	}
	switch priv := key.Signer.(type) {
	case *ecdsa.PrivateKey:
		pub := &priv.PublicKey
		asn1Sig := ecdsaASN1(b, sig)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		sign = []namedOp{{"bare-sign-sha256+ecdsa.SignASN1", must(b, func() error {
			d := sha256.Sum256([]byte(input))
			_, err := ecdsa.SignASN1(rand.Reader, priv, d[:])
			return err
		})}}
		verify = []namedOp{
			{"bare-verify-sha256+ecdsa.VerifyASN1", func() { d := sha256.Sum256([]byte(input)); check(ecdsa.VerifyASN1(pub, d[:], asn1Sig)) }},
			{"bare-verify-sha256+ecdsa.Verify", func() { d := sha256.Sum256([]byte(input)); check(ecdsa.Verify(pub, d[:], r, s)) }},
		}
	case ed25519.PrivateKey:
		pub := priv.Public().(ed25519.PublicKey)
		sign = []namedOp{{"bare-sign-ed25519.Sign", func() { ed25519.Sign(priv, []byte(input)) }}}
		verify = []namedOp{{"bare-verify-ed25519.Verify", func() { check(ed25519.Verify(pub, []byte(input), sig)) }}}
	case *rsa.PrivateKey:
		pub := &priv.PublicKey
		sign = []namedOp{{"bare-sign-sha256+rsa.SignPKCS1v15", must(b, func() error {
			d := sha256.Sum256([]byte(input))
			_, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
			return err
		})}}
		verify = []namedOp{{"bare-verify-sha256+rsa.VerifyPKCS1v15", must(b, func() error {
			d := sha256.Sum256([]byte(input))
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
		})}}
	}
	return sign, verify
}

// ecdsaASN1 converts a P1363 signature to the DER form VerifyASN1 takes.
func ecdsaASN1(b *testing.B, sig []byte) []byte {
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	intBytes := func(n *big.Int) []byte {
		v := n.Bytes()
		if v[0]&0x80 != 0 {
			v = append([]byte{0}, v...)
		}
		return append([]byte{0x02, byte(len(v))}, v...)
	}
	body := append(intBytes(r), intBytes(s)...)
	out := append([]byte{0x30, byte(len(body))}, body...)
	if len(out) > 72 {
		b.Fatal("unexpected DER length")
	}
	return out
}

func BenchmarkOpaque(b *testing.B) {
	op, err := MintOpaque("apt", NewTokenID())
	if err != nil {
		b.Fatal(err)
	}
	other, _ := MintOpaque("apt", op.ID)
	secret := []byte(op.Token[len(op.Token)-SecretLength-ChecksumLength : len(op.Token)-ChecksumLength])
	var buf [32]byte
	for _, o := range []namedOp{
		{"mint", must(b, func() error { _, err := MintOpaque("apt", op.ID); return err })},
		{"bare-mint-rand.Read+sha256", func() { rand.Read(buf[:]); sha256.Sum256(buf[:]) }},
		{"verify", must(b, func() error { _, err := VerifyOpaque(op.Token, op.Hash); return err })},
		// During a rotation's grace period the validator passes the
		// current and the previous hash.
		{"verify-2-hashes", must(b, func() error { _, err := VerifyOpaque(op.Token, other.Hash, op.Hash); return err })},
		{"bare-verify-sha256", func() { sha256.Sum256(secret) }},
	} {
		b.Run(o.name, func(b *testing.B) { bench(b, o.op) })
	}
}

// BenchmarkOverhead alternates batches of Verify and of the bare
// verification in one loop and reports the CPU time of each and the
// overhead, so that whatever else the machine is doing hits both alike. It
// uses the thread's CPU clock, the steadiest under load; that leaves out
// the background share of garbage collection, small here (Verify allocates
// about 1.6 KB, the bare Ed25519 verification 0.5 KB).
func BenchmarkOverhead(b *testing.B) {
	v := testVerifier(b)
	for _, alg := range algorithms {
		key := testKey(b, alg, false)
		tok, err := MintJWT(key, testClaims())
		if err != nil {
			b.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		_, bareVerify := bareOps(b, key, tok[:dot], sig)
		bare := bareVerify[0].op // VerifyASN1 for ES256, the faster baseline
		b.Run(string(alg), func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			const batch = 10
			var ours, base time.Duration
			for b.Loop() {
				t0 := threadClock()
				for range batch {
					if _, err := v.Verify(tok); err != nil {
						b.Fatal(err)
					}
				}
				t1 := threadClock()
				for range batch {
					bare()
				}
				t2 := threadClock()
				ours += t1 - t0
				base += t2 - t1
			}
			n := float64(b.N * batch)
			b.ReportMetric(float64(ours.Nanoseconds())/n, "verify-cpu-ns/op")
			b.ReportMetric(float64(base.Nanoseconds())/n, "bare-cpu-ns/op")
			b.ReportMetric(100*(float64(ours)/float64(base)-1), "overhead-%")
		})
	}
}

// BenchmarkParseClaims is the claims reader alone, on the claims of a single-tenant
// token and of tokens of one and four memberships.
func BenchmarkParseClaims(b *testing.B) {
	for _, n := range []int{0, 1, 4} {
		c := testClaims()
		if n > 0 {
			c.Tenant, c.SubTenant, c.Role = "", "", ""
			for i := range n {
				c.Memberships = append(c.Memberships, Membership{Tenant: fmt.Sprintf("tenant-%d", i), SubTenant: "payments", Role: "editor"})
			}
		}
		tok, err := MintJWT(testKey(b, ES256, false), c)
		if err != nil {
			b.Fatal(err)
		}
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			b.Fatal(err)
		}
		s := string(payload)
		b.Run(fmt.Sprintf("memberships=%d/%dB", n, len(s)), func(b *testing.B) {
			for b.Loop() {
				var w wireClaims
				if err := parseClaims(s, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
