package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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

	var keys []*token.SigningKey
	collect := func(g Gomega, name string) {
		iss := getIssuer(g, name)
		secret := getSecret(g, name)
		for _, k := range iss.Status.Keys {
			key, ok := keystore.Parse(secret.Data, k.KeyID, k.Algorithm)
			g.Expect(ok).To(BeTrue())
			keys = append(keys, key)
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
	g.Expect(keys).To(HaveLen(9))

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

	for _, key := range keys {
		for _, secret := range privateEncodings(g, key) {
			g.Expect(strings.Contains(all, secret)).To(BeFalse(), "private material of key %s leaked", key.ID)
		}
	}
}

// privateEncodings are the ways a key's private material could be written out: the
// PEM body, whole and line by line, and the private scalars in base64, base64url,
// hex and decimal.
func privateEncodings(g Gomega, key *token.SigningKey) []string {
	pem, err := key.MarshalPrivateKey()
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	var out []string
	var body []string
	for _, line := range strings.Split(strings.TrimSpace(string(pem)), "\n") {
		if !strings.HasPrefix(line, "-----") {
			body = append(body, line)
			if len(line) >= 32 {
				out = append(out, line)
			}
		}
	}
	out = append(out, strings.Join(body, ""))

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
		g.Expect(k).To(BeNil(), "unexpected key type")
	}
	for _, s := range scalars {
		out = append(out,
			base64.StdEncoding.EncodeToString(s)[:40],
			base64.RawURLEncoding.EncodeToString(s)[:40],
			hex.EncodeToString(s)[:40],
			new(big.Int).SetBytes(s).String()[:40],
		)
	}
	return out
}
