package issuer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// The tests in this file run the controller in a manager and change the world the
// way a user would; the manager notices on its own.

func newG(t *testing.T) Gomega {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	return g
}

func TestNewIssuerBecomesReady(t *testing.T) {
	startManager(t, clocktesting.NewFakeClock(start))

	for _, alg := range []tokensv1.SigningAlgorithm{tokensv1.AlgorithmES256, tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmRS256} {
		t.Run(string(alg), func(t *testing.T) {
			g := newG(t)
			name := "ready-" + strings.ToLower(string(alg))
			create(t, newIssuer(name, alg))

			var iss *tokensv1.ClusterTokenIssuer
			g.Eventually(func(g Gomega) {
				iss = getIssuer(g, name)
				g.Expect(meta.IsStatusConditionTrue(iss.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
			}).Should(Succeed())

			ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
			g.Expect(ready.Reason).To(Equal(tokensv1.ReasonKeyGenerated))
			g.Expect(ready.ObservedGeneration).To(Equal(iss.Generation))
			g.Expect(iss.Status.ObservedGeneration).To(Equal(iss.Generation))
			g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionStalled)).To(BeNil())
			g.Expect(iss.Status.JWKS.Keys).To(HaveLen(1), "a new issuer publishes exactly one key")
			g.Expect(iss.Status.Keys).To(HaveLen(1))
			k := iss.Status.Keys[0]
			g.Expect(k.Algorithm).To(Equal(alg))
			g.Expect(k.CreatedAt.Time).To(BeTemporally("==", start))
			g.Expect(iss.Status.NextRotationTime.Time).To(BeTemporally("==", start.Add(720*time.Hour)))
			g.Expect(iss.Status.JWKS.Keys[0].Kid).To(Equal(iss.Status.CurrentKeyID))
			g.Expect(iss.Status.JWKS.Keys[0].Alg).To(Equal(string(alg)))
			checkPublished(g, iss, start)

			// The private key, parsed back from the Secret, is the published key.
			secret := getSecret(g, name)
			g.Expect(string(secret.Type)).To(Equal(tokensv1.SigningKeySecretType))
			g.Expect(secret.Labels).To(HaveKeyWithValue(tokensv1.ManagedByLabel, tokensv1.ManagedByValue))
			g.Expect(secret.Labels).To(HaveKeyWithValue(keystore.IssuerLabel, name))
			key, err := token.ParsePrivateKey(token.Algorithm(alg), secret.Data[keystore.DataKey(iss.Status.CurrentKeyID)])
			g.Expect(err).NotTo(HaveOccurred())
			thumb, err := token.Thumbprint(key.Signer.Public())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(thumb).To(Equal(iss.Status.CurrentKeyID))

			// What the APIToken controller does: load the key through the keystore and
			// sign; what the validator does: verify with the published JWKS.
			loaded, err := keystore.Load(context.Background(), env.Client, keyNamespace, iss, iss.Status.CurrentKeyID)
			g.Expect(err).NotTo(HaveOccurred())
			jwt, err := token.MintJWT(loaded, token.Claims{ID: token.NewTokenID(), ExpiresAt: time.Now().Add(time.Hour), Issuer: iss.Spec.Issuer})
			g.Expect(err).NotTo(HaveOccurred())
			keys, err := token.NewKeySet(jwk.ToToken(iss.Status.JWKS))
			g.Expect(err).NotTo(HaveOccurred())
			claims, err := (&token.Verifier{Keys: keys, Issuer: iss.Spec.Issuer}).Verify(jwt)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(claims.KeyID).To(Equal(iss.Status.CurrentKeyID))

			// Deleting the issuer deletes the Secret through its owner reference (envtest
			// runs no garbage collector, so check the reference itself).
			g.Expect(secret.OwnerReferences).To(ConsistOf(metav1.OwnerReference{
				APIVersion:         tokensv1.GroupVersion.String(),
				Kind:               "ClusterTokenIssuer",
				Name:               name,
				UID:                iss.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}))

			g.Eventually(func(g Gomega) {
				g.Expect(issuerEvents(g, name)).To(ContainElement(And(
					HaveField("Type", corev1.EventTypeNormal),
					HaveField("Reason", tokensv1.ReasonKeyGenerated),
				)))
			}).Should(Succeed())
		})
	}
}

// The default issuer installed from config/default-issuer: `kubectl get
// clustertokenissuer default -o yaml` shows a Ready issuer with its JWKS.
func TestDefaultIssuer(t *testing.T) {
	g := newG(t)
	startManager(t, clocktesting.NewFakeClock(start))

	dir := filepath.Join(testenv.RepoRoot(), "config", "default-issuer")
	var kustomization struct {
		Resources []string `json:"resources"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.Unmarshal(raw, &kustomization)).To(Succeed())
	g.Expect(kustomization.Resources).To(HaveLen(1))
	iss := decodeIssuer(g, filepath.Join(dir, kustomization.Resources[0]))
	sample := decodeIssuer(g, filepath.Join(testenv.RepoRoot(), "config", "samples", "tokens_v1alpha1_clustertokenissuer.yaml"))
	g.Expect(iss.Name).To(Equal(tokensv1.DefaultIssuerName))
	g.Expect(iss.Spec).To(Equal(sample.Spec), "the installed default issuer is the sample")
	g.Expect(iss.Spec.Tenants).To(BeEmpty())

	create(t, iss)
	g.Eventually(func(g Gomega) {
		got := getIssuer(g, tokensv1.DefaultIssuerName)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
		g.Expect(got.Status.JWKS.Keys).To(HaveLen(1))
		g.Expect(got.Status.JWKS.Keys[0]).To(And(
			HaveField("Kty", "EC"), HaveField("Crv", "P-256"), HaveField("Alg", "ES256"), HaveField("Use", "sig"),
			HaveField("Kid", got.Status.CurrentKeyID)))
		g.Expect(got.Spec.Roles).To(HaveLen(3))
		checkPublished(g, got, start)
	}).Should(Succeed())
}

func decodeIssuer(g Gomega, path string) *tokensv1.ClusterTokenIssuer {
	raw, err := os.ReadFile(path)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	obj, _, err := testenv.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	iss, ok := obj.(*tokensv1.ClusterTokenIssuer)
	g.ExpectWithOffset(1, ok).To(BeTrue(), "%s holds a ClusterTokenIssuer", path)
	return iss
}

func TestAlgorithmChangeRotatesAtOnce(t *testing.T) {
	g := newG(t)
	clk := clocktesting.NewFakeClock(start)
	startManager(t, clk)

	const name = "alg-change"
	create(t, newIssuer(name, tokensv1.AlgorithmES256))
	var old string
	g.Eventually(func(g Gomega) {
		iss := getIssuer(g, name)
		g.Expect(iss.Status.CurrentKeyID).NotTo(BeEmpty())
		old = iss.Status.CurrentKeyID
	}).Should(Succeed())

	clk.Step(24 * time.Hour)
	now := clk.Now()
	iss := getIssuer(g, name)
	iss.Spec.Signing.Algorithm = tokensv1.AlgorithmEdDSA
	g.Expect(env.Client.Update(context.Background(), iss)).To(Succeed())

	g.Eventually(func(g Gomega) {
		iss := getIssuer(g, name)
		g.Expect(iss.Status.ObservedGeneration).To(Equal(iss.Generation))
		g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(old))
		g.Expect(iss.Status.Keys).To(HaveLen(2))
		g.Expect(iss.Status.Keys[0]).To(And(HaveField("Algorithm", tokensv1.AlgorithmEdDSA), HaveField("CreatedAt.Time", BeTemporally("==", now))))
		g.Expect(iss.Status.Keys[1].KeyID).To(Equal(old))
		g.Expect(iss.Status.Keys[1].Algorithm).To(Equal(tokensv1.AlgorithmES256))
		g.Expect(iss.Status.Keys[1].RetiredAt.Time).To(BeTemporally("==", now))
		g.Expect(iss.Status.Keys[1].ExpiresAt.Time).To(BeTemporally("==", now.Add(2160*time.Hour)))
		g.Expect(iss.Status.NextRotationTime.Time).To(BeTemporally("==", now.Add(720*time.Hour)))
		ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(tokensv1.ReasonKeyRotated))
		g.Expect(ready.ObservedGeneration).To(Equal(iss.Generation))
		checkPublished(g, iss, now)
	}).Should(Succeed())
}

func TestLostKeys(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	startManager(t, clk)
	ctx := context.Background()

	t.Run("key Secret deleted", func(t *testing.T) {
		g := newG(t)
		const name = "lost-secret"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		var old string
		g.Eventually(func(g Gomega) {
			old = getIssuer(g, name).Status.CurrentKeyID
			g.Expect(old).NotTo(BeEmpty())
		}).Should(Succeed())

		g.Expect(env.Client.Delete(ctx, getSecret(g, name))).To(Succeed())

		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			lost := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysLost)
			g.Expect(lost).NotTo(BeNil())
			g.Expect(lost.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(lost.Reason).To(Equal(tokensv1.ReasonKeysLost))
			g.Expect(lost.Message).To(ContainSubstring(old))
			g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(old))
			g.Expect(iss.Status.Keys).To(HaveLen(1), "the lost key is no longer published")
			ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(ready.Reason).To(Equal(tokensv1.ReasonKeyGenerated))
			checkPublished(g, iss, start)
		}).Should(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(issuerEvents(g, name)).To(ContainElement(And(
				HaveField("Type", corev1.EventTypeWarning),
				HaveField("Reason", tokensv1.ReasonKeysLost),
				HaveField("Note", ContainSubstring(old)),
			)))
		}).Should(Succeed())
	})

	t.Run("entries corrupted", func(t *testing.T) {
		g := newG(t)
		const name = "lost-entry"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		var retired string
		g.Eventually(func(g Gomega) {
			retired = getIssuer(g, name).Status.CurrentKeyID
			g.Expect(retired).NotTo(BeEmpty())
		}).Should(Succeed())
		// A second, retired key: change the algorithm.
		iss := getIssuer(g, name)
		iss.Spec.Signing.Algorithm = tokensv1.AlgorithmEdDSA
		g.Expect(env.Client.Update(ctx, iss)).To(Succeed())
		var current string
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(iss.Status.Keys).To(HaveLen(2))
			current = iss.Status.CurrentKeyID
		}).Should(Succeed())

		// A retired entry overwritten by hand: dropped, and the current key still signs.
		secret := getSecret(g, name)
		secret.Data[keystore.DataKey(retired)] = []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
		g.Expect(env.Client.Update(ctx, secret)).To(Succeed())
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(iss.Status.CurrentKeyID).To(Equal(current))
			g.Expect(statusKeyIDs(iss)).To(Equal([]string{current}))
			lost := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysLost)
			g.Expect(lost).NotTo(BeNil())
			g.Expect(lost.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(lost.Message).To(ContainSubstring(retired))
			checkPublished(g, iss, start)
		}).Should(Succeed())

		// The current entry swapped for another valid key: its thumbprint is not its
		// kid, so it is lost too, and a new current key takes over.
		other, err := token.GenerateKey(token.EdDSA)
		g.Expect(err).NotTo(HaveOccurred())
		otherPEM, err := other.MarshalPrivateKey()
		g.Expect(err).NotTo(HaveOccurred())
		secret = getSecret(g, name)
		secret.Data[keystore.DataKey(current)] = otherPEM
		g.Expect(env.Client.Update(ctx, secret)).To(Succeed())
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(current))
			g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(other.ID))
			g.Expect(iss.Status.Keys).To(HaveLen(1))
			g.Expect(iss.Status.Keys[0].Algorithm).To(Equal(tokensv1.AlgorithmEdDSA))
			lost := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysLost)
			g.Expect(lost.Message).To(ContainSubstring(current))
			checkPublished(g, iss, start)
		}).Should(Succeed())
		g.Eventually(func(g Gomega) {
			var notes []string
			for _, e := range issuerEvents(g, name) {
				if e.Type == corev1.EventTypeWarning && e.Reason == tokensv1.ReasonKeysLost {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ContainElement(ContainSubstring(retired)))
			g.Expect(notes).To(ContainElement(ContainSubstring(current)))
		}).Should(Succeed())
	})
}

// A role cycle passes CEL but not the policy: the issuer stalls and makes no key.
func TestInvalidSpecStalls(t *testing.T) {
	startManager(t, clocktesting.NewFakeClock(start))
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		roles []tokensv1.Role
		cycle string
	}{
		{name: "stalled-two", roles: []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"a"}}}, cycle: "a -> b -> a"},
		{name: "stalled-three", roles: []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"c"}}, {Name: "c", Includes: []string{"a"}}}, cycle: "a -> b -> c -> a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newG(t)
			iss := newIssuer(tc.name, tokensv1.AlgorithmES256)
			iss.Spec.Roles = tc.roles
			create(t, iss)

			g.Eventually(func(g Gomega) {
				iss = getIssuer(g, tc.name)
				stalled := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionStalled)
				g.Expect(stalled).NotTo(BeNil())
				g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(stalled.Reason).To(Equal(tokensv1.ReasonInvalidSpec))
				g.Expect(stalled.Message).To(ContainSubstring(tc.cycle))
				ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
				g.Expect(ready).NotTo(BeNil())
				g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(ready.Reason).To(Equal(tokensv1.ReasonInvalidSpec))
				g.Expect(iss.Status.ObservedGeneration).To(Equal(iss.Generation))
			}).Should(Succeed())
			// The stall was decided before any key was made.
			g.Expect(iss.Status.Keys).To(BeEmpty())
			g.Expect(iss.Status.JWKS).To(BeNil())
			g.Expect(getSecret(g, tc.name)).To(BeNil())

			// Fixing the spec is what makes the controller try again.
			iss.Spec.Roles = []tokensv1.Role{{Name: "a"}, {Name: "b", Includes: []string{"a"}}}
			g.Expect(env.Client.Update(ctx, iss)).To(Succeed())
			g.Eventually(func(g Gomega) {
				iss := getIssuer(g, tc.name)
				g.Expect(meta.IsStatusConditionTrue(iss.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
				g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionStalled)).To(BeNil())
				checkPublished(g, iss, start)
			}).Should(Succeed())
		})
	}

	t.Run("stalled after Ready keeps its keys", func(t *testing.T) {
		g := newG(t)
		const name = "stalled-later"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		var published *tokensv1.ClusterTokenIssuer
		g.Eventually(func(g Gomega) {
			published = getIssuer(g, name)
			g.Expect(meta.IsStatusConditionTrue(published.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())
		published.Spec.Roles = []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"a"}}}
		g.Expect(env.Client.Update(ctx, published)).To(Succeed())
		g.Eventually(func(g Gomega) {
			iss := getIssuer(g, name)
			g.Expect(meta.IsStatusConditionTrue(iss.Status.Conditions, tokensv1.ConditionStalled)).To(BeTrue())
			// Tokens already minted still verify.
			g.Expect(iss.Status.JWKS).To(Equal(published.Status.JWKS))
			g.Expect(iss.Status.Keys).To(Equal(published.Status.Keys))
		}).Should(Succeed())
	})
}
