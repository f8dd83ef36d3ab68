package issuer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	clocktesting "k8s.io/utils/clock/testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// No private key ever appears in a status, an event or a log line. The test drives
// every path that logs, records events or writes status (generation, algorithm
// change, loss, stall) for each algorithm, collects every private key the Secrets
// ever held, and looks for each key's material in every encoding it could leak in.
func TestPrivateKeysNeverLeak(t *testing.T) {
	g := newG(t)
	clk := clocktesting.NewFakeClock(start)
	logs := startManager(t, clk)
	ctx := context.Background()

	keys := map[string]*token.SigningKey{}
	collect := func(g Gomega, name string) {
		iss := getIssuer(g, name)
		secret := getSecret(g, name)
		for _, k := range iss.Status.Keys {
			key, ok := keystore.Parse(secret.Data, k.KeyID, k.Algorithm)
			g.Expect(ok).To(BeTrue())
			keys[key.ID] = key
		}
	}
	var names []string
	for _, alg := range []tokensv1.SigningAlgorithm{tokensv1.AlgorithmES256, tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmRS256} {
		name := "leak-" + strings.ToLower(string(alg))
		names = append(names, name)
		create(t, newIssuer(name, alg))
		g.Eventually(func(g Gomega) {
			g.Expect(getIssuer(g, name).Status.Keys).To(HaveLen(1))
		}).Should(Succeed())
		collect(g, name)

		// Rotate to the next algorithm, then lose every key, then stall.
		next := map[tokensv1.SigningAlgorithm]tokensv1.SigningAlgorithm{
			tokensv1.AlgorithmES256: tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmEdDSA: tokensv1.AlgorithmRS256, tokensv1.AlgorithmRS256: tokensv1.AlgorithmES256,
		}[alg]
		setAlgorithm(g, name, next)
		g.Eventually(func(g Gomega) {
			g.Expect(getIssuer(g, name).Status.Keys).To(HaveLen(2))
		}).Should(Succeed())
		collect(g, name)

		g.Expect(env.Client.Delete(ctx, getSecret(g, name))).To(Succeed())
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(meta.IsStatusConditionTrue(iss.Status.Conditions, tokensv1.ConditionKeysLost)).To(BeTrue())
			g.Expect(iss.Status.Keys).To(HaveLen(1))
		}).Should(Succeed())
		collect(g, name)

		iss := getIssuer(g, name)
		iss.Spec.Roles = []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"a"}}}
		g.Expect(env.Client.Update(ctx, iss)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(meta.IsStatusConditionTrue(getIssuer(g, name).Status.Conditions, tokensv1.ConditionStalled)).To(BeTrue())
		}).Should(Succeed())
	}
	g.Expect(len(keys)).To(Equal(9), "three keys per issuer: the first, the rotated-to and the one after the loss")

	// Everything the operator published: status, events (once they are all in), logs.
	var published strings.Builder
	for _, name := range names {
		g.Eventually(func(g Gomega) {
			reasons := map[string]bool{}
			for _, e := range issuerEvents(g, name) {
				reasons[e.Reason] = true
			}
			g.Expect(reasons).To(HaveKey(tokensv1.ReasonKeyGenerated))
			g.Expect(reasons).To(HaveKey(tokensv1.ReasonKeyRotated))
			g.Expect(reasons).To(HaveKey(tokensv1.ReasonKeysLost))
		}).Should(Succeed())
		status, err := json.Marshal(getIssuer(g, name).Status)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(status)).NotTo(ContainSubstring(`"d":`), "no private JWK member")
		published.Write(status)
		for _, e := range issuerEvents(g, name) {
			raw, err := json.Marshal(e)
			g.Expect(err).NotTo(HaveOccurred())
			published.Write(raw)
		}
	}
	g.Expect(logs.String()).To(ContainSubstring("Made a new current signing key"), "the logs were captured")
	g.Expect(logs.String()).To(ContainSubstring("Signing keys lost"))
	published.WriteString(logs.String())
	published.WriteString(globalLogs.String())
	all := published.String()

	windows := map[string]string{}
	for _, key := range keys {
		for _, w := range privateWindows(g, key) {
			windows[w] = key.ID
		}
	}
	g.Expect(len(windows)).To(BeNumerically(">", 1000))
	for i := 0; i+windowLength <= len(all); i++ {
		if id, ok := windows[all[i:i+windowLength]]; ok {
			t.Fatalf("private material of key %s leaked at offset %d of what the operator published", id, i)
		}
	}
}

// windowLength is the length of the pieces of private material searched for: 10
// base64 characters are 60 bits, which nothing else matches by chance.
const windowLength = 10

// privateWindows are pieces of a key's private material in every form it could be
// written out in: the PEM text (also as hex.Dump shows it, 16 characters a row), the
// PEM text in base64 (a Secret's data in JSON), and the private scalars in base64,
// base64url, hex and decimal. Only characters that depend on private bytes alone are
// used, since a PKCS#8 key also holds its public half, which the JWKS publishes.
func privateWindows(g Gomega, key *token.SigningKey) []string {
	pemText, err := key.MarshalPrivateKey()
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	block, _ := pem.Decode(pemText)
	der := block.Bytes
	const header = len("-----BEGIN PRIVATE KEY-----\n")
	g.ExpectWithOffset(1, string(pemText[:header])).To(Equal("-----BEGIN PRIVATE KEY-----\n"))

	var scalars [][]byte
	switch k := key.Signer.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
		scalars = append(scalars, d)
	case ed25519.PrivateKey:
		scalars = append(scalars, k.Seed())
	case *rsa.PrivateKey:
		scalars = append(scalars, k.D.Bytes(), k.Primes[0].Bytes(), k.Primes[1].Bytes())
	default:
		g.ExpectWithOffset(1, k).To(BeNil(), "unexpected key type")
	}

	var out []string
	windowsOf := func(s string) {
		for i := 0; i+windowLength <= len(s); i++ {
			if !strings.Contains(s[i:i+windowLength], "\n") {
				out = append(out, s[i:i+windowLength])
			}
		}
	}
	derB64 := base64.StdEncoding.EncodeToString(der)
	for _, x := range scalars {
		off := bytes.Index(der, x)
		g.ExpectWithOffset(1, off).To(BeNumerically(">=", 0), "the scalar is in the DER")
		// The PEM body is derB64 in lines of 64; character j is at header+j+j/64.
		first, last := b64Span(off, off+len(x))
		at := func(j int) int { return header + j + j/64 }
		windowsOf(string(pemText[at(first) : at(last-1)+1]))
		from, to := b64Span(at(first), at(last-1)+1)
		windowsOf(base64.StdEncoding.EncodeToString(pemText)[from:to])
		g.ExpectWithOffset(1, derB64[first:last]).To(Equal(strings.ReplaceAll(string(pemText[at(first):at(last-1)+1]), "\n", "")))

		windowsOf(base64.StdEncoding.EncodeToString(x))
		windowsOf(base64.RawURLEncoding.EncodeToString(x))
		windowsOf(hex.EncodeToString(x))
		windowsOf(new(big.Int).SetBytes(x).String())
	}
	return out
}

// b64Span is the range of the base64 characters of a byte string that depend on
// its bytes [from, to) alone: character i encodes bits [6i, 6i+6).
func b64Span(from, to int) (first, last int) {
	return (8*from + 5) / 6, 8 * to / 6
}
