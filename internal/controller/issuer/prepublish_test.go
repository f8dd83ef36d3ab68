package issuer

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// prePublished is an issuer of newIssuer that leaves publishBefore to the API
// server's default.
func prePublished(name string) *tokensv1.ClusterTokenIssuer {
	iss := newIssuer(name, tokensv1.AlgorithmES256)
	iss.Spec.Signing.PublishBefore = nil
	return iss
}

// A scheduled rotation publishes the next key publishBefore (the API's default, 5m)
// ahead: the key is in the JWKS, signing nothing, for exactly that long, then signs
// and the old key retires.
func TestPrePublication(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "prepublish"
	create(t, prePublished(name))
	const lead = tokensv1.DefaultPublishBefore
	g.Expect(getIssuer(g, name).Spec.Signing.PublishBefore.Duration).To(Equal(lead), "the API server's default")

	res := d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(720*time.Hour-lead), "wakes up to publish the next key")
	first := getIssuer(g, name)
	checkPublished(g, first, d.clock.Now())
	k1 := first.Status.CurrentKeyID
	g.Expect(first.Status.NextKeyID).To(BeEmpty())
	g.Expect(first.Status.Keys[0].ActivatedAt.Time).To(BeTemporally("==", start), "the first key signs at once: nothing else could")
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyGenerated")))

	d.clock.Step(720*time.Hour - lead - time.Second)
	g.Expect(d.reconcile(t, name).RequeueAfter).To(Equal(time.Second))
	g.Expect(getIssuer(g, name).Status.Keys).To(HaveLen(1), "not a second early")

	d.clock.Step(time.Second)
	published := d.clock.Now()
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(lead), "wakes up when the next key may sign")
	iss := getIssuer(g, name)
	checkPublished(g, iss, published)
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k1), "the current key keeps signing")
	k2 := iss.Status.NextKeyID
	g.Expect(k2).NotTo(BeEmpty())
	g.Expect(iss.Status.Keys[1].CreatedAt.Time).To(BeTemporally("==", published))
	g.Expect(iss.Status.JWKS.Keys[1].Kid).To(Equal(k2), "the next key is published")
	g.Expect(iss.Status.NextRotationTime.Time).To(BeTemporally("==", start.Add(720*time.Hour)))
	ready := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady)
	g.Expect(ready.Reason).To(Equal(tokensv1.ReasonKeyPublished))
	g.Expect(ready.Message).To(ContainSubstring("key " + k2 + " (ES256) is published and replaces it at 2026-01-31T00:00:00Z"))
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyPublished")))

	// A pass meanwhile writes nothing.
	d.clock.Step(lead - time.Second)
	g.Expect(d.reconcile(t, name).RequeueAfter).To(Equal(time.Second))
	g.Expect(getIssuer(g, name).ResourceVersion).To(Equal(iss.ResourceVersion))
	g.Expect(getIssuer(g, name).Status.CurrentKeyID).To(Equal(k1))

	d.clock.Step(time.Second)
	rotated := d.clock.Now()
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(720*time.Hour-lead), "the next key of the new one is published keyRotationInterval after it began, less publishBefore")
	iss = getIssuer(g, name)
	checkPublished(g, iss, rotated)
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k2))
	g.Expect(iss.Status.NextKeyID).To(BeEmpty())
	g.Expect(iss.Status.Keys[0].CreatedAt.Time).To(BeTemporally("==", published))
	g.Expect(iss.Status.Keys[0].ActivatedAt.Time).To(BeTemporally("==", rotated))
	g.Expect(rotated.Sub(published)).To(Equal(lead), "published exactly publishBefore before it signed")
	g.Expect(iss.Status.Keys[1].KeyID).To(Equal(k1))
	g.Expect(iss.Status.Keys[1].RetiredAt.Time).To(BeTemporally("==", rotated))
	g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady).Reason).To(Equal(tokensv1.ReasonKeyRotated))
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyRotated")))
}

// A spec change of the algorithm is a rotation like any other: the key of the new
// algorithm is published ahead; changing the algorithm again before it signs
// replaces it, since it never signed anything.
func TestAlgorithmChangeIsPrePublished(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "prepublish-algorithm"
	create(t, prePublished(name))
	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID
	d.drainEvents()

	d.clock.Step(time.Hour)
	setAlgorithm(g, name, tokensv1.AlgorithmEdDSA)
	d.reconcile(t, name)
	iss := getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k1))
	g.Expect(iss.Status.Keys[1].Algorithm).To(Equal(tokensv1.AlgorithmEdDSA))
	eddsa := iss.Status.NextKeyID

	d.clock.Step(time.Minute)
	setAlgorithm(g, name, tokensv1.AlgorithmRS256)
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k1))
	g.Expect(iss.Status.NextKeyID).NotTo(Equal(eddsa))
	g.Expect(statusKeyIDs(iss)).NotTo(ContainElement(eddsa), "a next key that never signed leaves at once")
	g.Expect(iss.Status.Keys[1].Algorithm).To(Equal(tokensv1.AlgorithmRS256))

	d.clock.Step(tokensv1.DefaultPublishBefore)
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.Keys[0].Algorithm).To(Equal(tokensv1.AlgorithmRS256))
	g.Expect(iss.Status.Keys[1].KeyID).To(Equal(k1))
	g.Expect(d.drainEvents()).To(HaveExactElements(HavePrefix("Normal KeyPublished"), HavePrefix("Normal KeyPublished"), HavePrefix("Normal KeyRotated")))
}

// setAnnotations merges annotations into the issuer's.
func setAnnotations(g Gomega, name string, annotations map[string]string) {
	iss := getIssuer(g, name)
	if iss.Annotations == nil {
		iss.Annotations = map[string]string{}
	}
	for k, v := range annotations {
		if v == "" {
			delete(iss.Annotations, k)
			continue
		}
		iss.Annotations[k] = v
	}
	g.ExpectWithOffset(1, env.Client.Update(context.Background(), iss)).To(Succeed())
}

// Rotate now: every new value of apitoken.dev/rotate-key publishes a next key at once,
// which signs publishBefore later; a request while a next key waits is served by it.
func TestRotateKeyNow(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	const name = "rotate-now"
	create(t, prePublished(name))
	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID
	d.drainEvents()

	d.clock.Step(24 * time.Hour)
	requested := d.clock.Now()
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: "1"})
	res := d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(tokensv1.DefaultPublishBefore))
	iss := getIssuer(g, name)
	checkPublished(g, iss, requested)
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k1), "the current key signs until the new one has been published long enough")
	k2 := iss.Status.NextKeyID
	g.Expect(k2).NotTo(BeEmpty())
	g.Expect(iss.Status.LastRotateKeyRequest).To(Equal("1"))
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyPublished")))

	// Served once: the same value again does nothing.
	d.reconcile(t, name)
	g.Expect(getIssuer(g, name).ResourceVersion).To(Equal(iss.ResourceVersion))

	// Another request while k2 waits: k2 serves it too.
	d.clock.Step(time.Minute)
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: "2"})
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	g.Expect(iss.Status.NextKeyID).To(Equal(k2))
	g.Expect(iss.Status.Keys).To(HaveLen(2))
	g.Expect(iss.Status.LastRotateKeyRequest).To(Equal("2"))
	g.Expect(d.drainEvents()).To(BeEmpty())

	d.clock.SetTime(requested.Add(tokensv1.DefaultPublishBefore))
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.CurrentKeyID).To(Equal(k2))
	g.Expect(iss.Status.Keys[1].KeyID).To(Equal(k1))
	g.Expect(iss.Status.Keys[1].RetiredAt.Time).To(BeTemporally("==", d.clock.Now()))
	g.Expect(iss.Status.NextRotationTime.Time).To(BeTemporally("==", d.clock.Now().Add(720*time.Hour)), "the new key's own interval starts when it signs")
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyRotated")))

	// With publishBefore 0s a request rotates in the same pass, as before
	// pre-publication.
	iss.Spec.Signing.PublishBefore = &metav1.Duration{}
	g.Expect(env.Client.Update(context.Background(), iss)).To(Succeed())
	d.clock.Step(time.Hour)
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: "3"})
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(k2))
	g.Expect(iss.Status.NextKeyID).To(BeEmpty())
	g.Expect(iss.Status.Keys[1].KeyID).To(Equal(k2))
	g.Expect(d.drainEvents()).To(ConsistOf(HavePrefix("Normal KeyRotated")))
}
