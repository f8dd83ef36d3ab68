package issuer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// The tests in this file call Reconcile themselves at fake times: no manager runs, so
// nothing else touches their issuers.

func TestRotation(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "rotation"
	create(t, newIssuer(name, tokensv1.AlgorithmES256))

	res := d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(720*time.Hour), "wakes up for the rotation")
	first := getIssuer(g, name)
	checkPublished(g, first, d.clock.Now())
	k1 := first.Status.CurrentKeyID
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyGenerated")))

	// A pass with nothing to do writes nothing: no status patch, no Secret apply.
	secretVersion := getSecret(g, name).ResourceVersion
	d.reconcile(t, name)
	g.Expect(getIssuer(g, name).ResourceVersion).To(Equal(first.ResourceVersion))
	g.Expect(getSecret(g, name).ResourceVersion).To(Equal(secretVersion))

	// A second early is too early.
	d.clock.Step(720*time.Hour - time.Second)
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(time.Second))
	g.Expect(getIssuer(g, name).Status.CurrentKeyID).To(Equal(k1))

	d.clock.Step(time.Second)
	now := d.clock.Now()
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(720*time.Hour), "the next rotation comes before the retired key expires")
	iss := getIssuer(g, name)
	checkPublished(g, iss, now)
	g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(k1))
	g.Expect(iss.Status.Keys).To(HaveLen(2))
	g.Expect(iss.Status.Keys[0].CreatedAt.Time).To(BeTemporally("==", now))
	old := iss.Status.Keys[1]
	g.Expect(old.KeyID).To(Equal(k1))
	g.Expect(old.CreatedAt.Time).To(BeTemporally("==", start))
	g.Expect(old.RetiredAt.Time).To(BeTemporally("==", now))
	g.Expect(old.ExpiresAt.Time).To(BeTemporally("==", now.Add(2160*time.Hour)))
	g.Expect(iss.Status.JWKS.Keys[1].Kid).To(Equal(k1), "the retired public key stays published")
	ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
	g.Expect(ready.Reason).To(Equal(tokensv1.ReasonKeyRotated))
	g.Expect(ready.LastTransitionTime.Time).To(BeTemporally("==", start), "Ready stayed True")
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyRotated")))
}

func TestPruning(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "pruning"
	iss := newIssuer(name, tokensv1.AlgorithmEdDSA)
	iss.Spec.MaxLifetime = metav1.Duration{Duration: 1000 * time.Hour}
	create(t, iss)

	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID
	d.clock.Step(720 * time.Hour)
	d.reconcile(t, name)
	d.clock.Step(720 * time.Hour)
	res := d.reconcile(t, name)
	// At 1440h: k1 retired at 720h expires at 1720h, before the next rotation at 2160h.
	g.Expect(res.RequeueAfter).To(Equal(280 * time.Hour))
	iss = getIssuer(g, name)
	g.Expect(iss.Status.Keys).To(HaveLen(3))
	g.Expect(iss.Status.Keys[2].KeyID).To(Equal(k1))
	g.Expect(iss.Status.Keys[2].ExpiresAt.Time).To(BeTemporally("==", start.Add(1720*time.Hour)))

	d.clock.Step(280*time.Hour - time.Second)
	d.reconcile(t, name)
	g.Expect(statusKeyIDs(getIssuer(g, name))).To(ContainElement(k1), "not a second early")

	d.clock.Step(time.Second)
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(440*time.Hour), "the next rotation, at 2160h")
	iss = getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.Keys).To(HaveLen(2))
	g.Expect(statusKeyIDs(iss)).NotTo(ContainElement(k1))
	g.Expect(secretKeyIDs(getSecret(g, name))).NotTo(ContainElement(k1))
}

// A year of daily passes with monthly rotation and keys needed for 90 days after
// retirement, each also run at the times the controller asks to be woken, for
// publishBefore 0s, the default and three days: at every pass the JWKS and the Secret
// hold exactly the keys still needed, a key leaves exactly when its time is up,
// RequeueAfter always names the next pass that has work to do, and no key signs
// (is the current key, the one tokens are signed with) before it has been published
// publishBefore. The first key is the exception: until it exists nothing can sign.
func TestYearOfRotations(t *testing.T) {
	for _, lead := range []time.Duration{0, tokensv1.DefaultPublishBefore, 72 * time.Hour} {
		t.Run("publishBefore="+lead.String(), func(t *testing.T) { testYearOfRotations(t, lead) })
	}
}

func testYearOfRotations(t *testing.T, lead time.Duration) {
	g := NewWithT(t)
	d := newDirect()
	name := fmt.Sprintf("year-%d", int(lead.Minutes()))
	const interval, maxLifetime = 720 * time.Hour, 2160 * time.Hour
	iss := newIssuer(name, tokensv1.AlgorithmES256)
	iss.Spec.Signing.PublishBefore = &metav1.Duration{Duration: lead}
	create(t, iss)

	type life struct{ published, activated, retired time.Time }
	lives := map[string]*life{} // every key ever published, as the test saw it
	var due time.Time           // when the last pass asked to be woken
	var current, next string
	rotations, passes := 0, 0
	end := start.Add(365 * 24 * time.Hour)
	for now := start; !now.After(end); {
		d.clock.SetTime(now)
		before := keyView(getIssuer(g, name))
		res := d.reconcile(t, name)
		passes++
		iss := getIssuer(g, name)
		checkPublished(g, iss, now)

		after := keyView(iss)
		if passes > 1 {
			g.Expect(!slices.Equal(before, after)).To(Equal(!now.Before(due)),
				"%s: the key set changes exactly when the previous pass asked to be woken (%s)", now, due)
		}
		due = now.Add(res.RequeueAfter)
		g.Expect(res.RequeueAfter).To(BeNumerically(">", 0))
		g.Expect(res.RequeueAfter).To(BeNumerically("<=", interval))

		for _, k := range iss.Status.Keys {
			if lives[k.KeyID] == nil {
				lives[k.KeyID] = &life{published: now}
			}
		}
		if next != "" && next != iss.Status.NextKeyID && next != iss.Status.CurrentKeyID {
			t.Fatalf("%s: next key %s was dropped without signing", now, next)
		}
		next = iss.Status.NextKeyID
		if iss.Status.CurrentKeyID != current {
			if current != "" {
				lives[current].retired = now
				rotations++
			}
			current = iss.Status.CurrentKeyID
			g.Expect(lives[current].activated.IsZero()).To(BeTrue(), "%s: a key ID is never reused", now)
			lives[current].activated = now
		}
		if rotations > 0 {
			g.Expect(now.Sub(lives[current].published)).To(BeNumerically(">=", lead),
				"%s: key %s signs %s after it was published", now, current, now.Sub(lives[current].published))
		}
		// The needed keys, from the test's own record: the current and next ones and
		// those retired less than maxLifetime ago.
		var needed []string
		for id, l := range lives {
			if id == current || id == next || (!l.retired.IsZero() && now.Before(l.retired.Add(maxLifetime))) {
				needed = append(needed, id)
			}
		}
		slices.Sort(needed)
		g.Expect(statusKeyIDs(iss)).To(Equal(needed), "%s", now)
		g.Expect(secretKeyIDs(getSecret(g, name))).To(Equal(needed), "%s", now)
		g.Expect(len(needed)).To(BeNumerically("<=", 5), "%s: current, next and at most three retired keys", now)
		for _, k := range iss.Status.Keys {
			if k.RetiredAt == nil {
				continue
			}
			g.Expect(k.RetiredAt.Time).To(BeTemporally("==", lives[k.KeyID].retired))
			g.Expect(k.ExpiresAt.Time).To(BeTemporally("==", lives[k.KeyID].retired.Add(maxLifetime)))
		}

		// Day by day, and whenever the controller asked to be woken in between.
		now = now.Truncate(24 * time.Hour).Add(24 * time.Hour)
		if due.Before(now) {
			now = due
		}
	}
	g.Expect(rotations).To(Equal(12), "one rotation every 30 days")
	g.Expect(slices.Collect(maps.Keys(lives))).To(HaveLen(13))
	for id, l := range lives {
		if !l.activated.IsZero() && l.activated != start {
			g.Expect(l.activated.Sub(l.published)).To(Equal(lead), "key %s was published exactly publishBefore ahead", id)
		}
	}
}

// keyView is what a pass can change of the keys: which are listed, and which one is
// current and next.
func keyView(iss *tokensv1.ClusterTokenIssuer) []string {
	return append(statusKeyIDs(iss), "current="+iss.Status.CurrentKeyID, "next="+iss.Status.NextKeyID)
}

func TestAlgorithmChanges(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "algorithms"
	create(t, newIssuer(name, tokensv1.AlgorithmES256))
	d.reconcile(t, name)

	published := []string{getIssuer(g, name).Status.CurrentKeyID}
	for _, alg := range []tokensv1.SigningAlgorithm{tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmRS256, tokensv1.AlgorithmES256} {
		d.clock.Step(time.Hour)
		setAlgorithm(g, name, alg)
		d.reconcile(t, name)

		iss := getIssuer(g, name)
		checkPublished(g, iss, d.clock.Now())
		g.Expect(iss.Status.Keys[0].Algorithm).To(Equal(alg))
		g.Expect(iss.Status.Keys[0].CreatedAt.Time).To(BeTemporally("==", d.clock.Now()))
		g.Expect(iss.Status.Keys[1].KeyID).To(Equal(published[len(published)-1]))
		g.Expect(iss.Status.Keys[1].RetiredAt.Time).To(BeTemporally("==", d.clock.Now()))
		published = append(published, iss.Status.CurrentKeyID)
		g.Expect(iss.Status.JWKS.Keys).To(HaveLen(len(published)), "every retired key is still needed")
		g.Expect(iss.Status.ObservedGeneration).To(Equal(iss.Generation))
	}
	g.Expect(d.drainEvents()).To(HaveExactElements(
		HavePrefix("Normal KeyGenerated"), HavePrefix("Normal KeyRotated"), HavePrefix("Normal KeyRotated"), HavePrefix("Normal KeyRotated")))
}

// KeysLost stays True, with the time of the loss, until the next rotation.
func TestKeysLostClearsAtNextRotation(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "lost-clears"
	create(t, newIssuer(name, tokensv1.AlgorithmES256))
	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID
	d.drainEvents()

	d.clock.Step(24 * time.Hour)
	lostAt := d.clock.Now()
	g.Expect(env.Client.Delete(context.Background(), getSecret(g, name))).To(Succeed())
	d.reconcile(t, name)
	iss := getIssuer(g, name)
	checkPublished(g, iss, lostAt)
	k2 := iss.Status.CurrentKeyID
	g.Expect(k2).NotTo(Equal(k1))
	g.Expect(iss.Status.Keys[0].CreatedAt.Time).To(BeTemporally("==", lostAt))
	lost := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysLost)
	g.Expect(lost.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(lost.LastTransitionTime.Time).To(BeTemporally("==", lostAt))
	g.Expect(d.drainEvents()).To(ConsistOf(
		And(HavePrefix("Warning KeysLost"), ContainSubstring(k1)),
		HavePrefix("Normal KeyGenerated"),
	))

	d.clock.Step(24 * time.Hour)
	d.reconcile(t, name)
	lost = meta.FindStatusCondition(getIssuer(g, name).Status.Conditions, tokensv1.ConditionKeysLost)
	g.Expect(lost.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(lost.LastTransitionTime.Time).To(BeTemporally("==", lostAt))
	g.Expect(d.drainEvents()).To(BeEmpty(), "a loss is reported once")

	d.clock.SetTime(lostAt.Add(720 * time.Hour))
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(k2))
	lost = meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysLost)
	g.Expect(lost.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(lost.Reason).To(Equal(tokensv1.ReasonKeysIntact))
	g.Expect(lost.LastTransitionTime.Time).To(BeTemporally("==", d.clock.Now()))
}

// failingStatus is a client that writes Secrets but dies before writing any status:
// the manager crashing between the two writes of a pass.
func failingStatus(g Gomega) client.Client {
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: testenv.Scheme})
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return interceptor.NewClient(c, interceptor.Funcs{
		SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
			return errCrash
		},
	})
}

// A key written to the Secret by a pass that crashed before publishing it is adopted
// by the next pass instead of generating yet another key.
func TestCrashBetweenSecretAndStatus(t *testing.T) {
	t.Run("first key", func(t *testing.T) {
		g := NewWithT(t)
		d := newDirect()
		const name = "crash-first"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))

		d.r.Client = failingStatus(g)
		_, err := d.reconcileErr(name)
		g.Expect(err).To(MatchError(errCrash))
		g.Expect(getIssuer(g, name).Status.Keys).To(BeEmpty())
		orphan := secretKeyIDs(getSecret(g, name))
		g.Expect(orphan).To(HaveLen(1), "the key was written before the status")

		d.r.Client = env.Client
		d.reconcile(t, name)
		iss := getIssuer(g, name)
		checkPublished(g, iss, start)
		g.Expect(statusKeyIDs(iss)).To(Equal(orphan), "the written key is adopted, not replaced")
	})

	t.Run("rotation", func(t *testing.T) {
		g := NewWithT(t)
		d := newDirect()
		const name = "crash-rotation"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		d.reconcile(t, name)
		k1 := getIssuer(g, name).Status.CurrentKeyID

		d.clock.Step(720 * time.Hour)
		d.r.Client = failingStatus(g)
		_, err := d.reconcileErr(name)
		g.Expect(err).To(MatchError(errCrash))
		g.Expect(statusKeyIDs(getIssuer(g, name))).To(Equal([]string{k1}))
		written := secretKeyIDs(getSecret(g, name))
		g.Expect(written).To(HaveLen(2))
		g.Expect(written).To(ContainElement(k1), "the current key's private part is never lost")

		d.r.Client = env.Client
		d.reconcile(t, name)
		iss := getIssuer(g, name)
		checkPublished(g, iss, d.clock.Now())
		g.Expect(statusKeyIDs(iss)).To(Equal(written), "the written key is adopted, not replaced")
		g.Expect(iss.Status.Keys[1].KeyID).To(Equal(k1))
	})

	t.Run("pruning", func(t *testing.T) {
		// The expired key left the Secret but the status still lists it: it was
		// pruned, not lost.
		g := NewWithT(t)
		d := newDirect()
		const name = "crash-pruning"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		d.reconcile(t, name)
		k1 := getIssuer(g, name).Status.CurrentKeyID
		d.clock.Step(720 * time.Hour)
		d.reconcile(t, name)

		d.clock.Step(2160 * time.Hour) // k1 expires; k2 is due for rotation too
		d.r.Client = failingStatus(g)
		_, err := d.reconcileErr(name)
		g.Expect(err).To(MatchError(errCrash))
		g.Expect(statusKeyIDs(getIssuer(g, name))).To(ContainElement(k1))
		g.Expect(secretKeyIDs(getSecret(g, name))).NotTo(ContainElement(k1))

		d.r.Client = env.Client
		d.drainEvents()
		d.reconcile(t, name)
		iss := getIssuer(g, name)
		checkPublished(g, iss, d.clock.Now())
		g.Expect(statusKeyIDs(iss)).NotTo(ContainElement(k1))
		g.Expect(iss.Status.Keys).To(HaveLen(2))
		g.Expect(iss.Status.Conditions).NotTo(ContainElement(HaveField("Type", tokensv1.ConditionKeysLost)))
		g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyRotated")))
	})

	t.Run("orphan no longer needed", func(t *testing.T) {
		// The spec changed back before the next pass: the orphan, never published,
		// cannot have signed anything, and leaves the Secret.
		g := NewWithT(t)
		d := newDirect()
		const name = "crash-orphan"
		create(t, newIssuer(name, tokensv1.AlgorithmES256))
		d.reconcile(t, name)
		published := getIssuer(g, name)

		setAlgorithm(g, name, tokensv1.AlgorithmRS256)
		d.r.Client = failingStatus(g)
		_, err := d.reconcileErr(name)
		g.Expect(err).To(MatchError(errCrash))
		g.Expect(secretKeyIDs(getSecret(g, name))).To(HaveLen(2))

		setAlgorithm(g, name, tokensv1.AlgorithmES256)
		d.r.Client = env.Client
		d.reconcile(t, name)
		iss := getIssuer(g, name)
		checkPublished(g, iss, start)
		g.Expect(iss.Status.Keys).To(Equal(published.Status.Keys))
		g.Expect(iss.Status.Conditions).NotTo(ContainElement(HaveField("Type", tokensv1.ConditionKeysLost)))
	})
}

func setAlgorithm(g Gomega, name string, alg tokensv1.SigningAlgorithm) {
	iss := getIssuer(g, name)
	iss.Spec.Signing.Algorithm = alg
	g.ExpectWithOffset(1, env.Client.Update(context.Background(), iss)).To(Succeed())
}

// An issuer name longer than a label value still gets a valid label, and the Secret
// maps back to the full name through its owner reference.
func TestLongIssuerName(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	name := fmt.Sprintf("long-%0100d", 0)
	create(t, newIssuer(name, tokensv1.AlgorithmES256))
	d.reconcile(t, name)
	iss := getIssuer(g, name)
	checkPublished(g, iss, start)
	secret := getSecret(g, name)
	g.Expect(len(secret.Labels[keystore.IssuerLabel])).To(BeNumerically("<=", 63))
	g.Expect(d.r.issuerOfSecret(context.Background(), secret)).To(ConsistOf(
		HaveField("NamespacedName", client.ObjectKey{Name: name})))
}

func TestIssuerOfSecret(t *testing.T) {
	r := &Reconciler{Namespace: keyNamespace}
	labels := map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue, keystore.IssuerLabel: "acme"}
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		want   []string
	}{
		{"key Secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: keyNamespace, Labels: labels}}, []string{"acme"}},
		{"other namespace", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Labels: labels}}, nil},
		{"token Secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: keyNamespace,
			Labels: map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, req := range r.issuerOfSecret(context.Background(), tc.secret) {
				got = append(got, req.Name)
			}
			NewWithT(t).Expect(got).To(Equal(tc.want))
		})
	}
}
