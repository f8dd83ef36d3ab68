package apitoken

import (
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
)

// TestLeaseFence: a replica that cannot prove it still holds the leader lease writes
// nothing, whether it knew so when the pass began or found out in the middle of a
// mint (a pause during which a standby took over), and the replica that does hold
// it finishes the job.
func TestLeaseFence(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	var held atomic.Bool
	h.r.Leading = held.Load
	tok := newToken(t, ns, f.name, nil)
	created := getToken(t, tok)

	res, err := h.reconcile(tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(controller.NotLeaderRetry))
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(created.ResourceVersion), "not even the finalizer is added")
	g.Expect(getSecret(t, ns, tok.Name)).To(BeNil())

	held.Store(true)
	h.mustReconcile(tok)
	minted := getToken(t, tok)
	g.Expect(condition(minted, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	sec := getSecret(t, ns, tok.Name)

	// Due for rotation; the lease is lost while the new token is being made.
	h.clock.Step(2 * time.Hour)
	h.r.hook = func(step string) error {
		if step == stepMinted {
			held.Store(false)
		}
		return nil
	}
	res, err = h.reconcile(tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(controller.NotLeaderRetry))
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(minted.ResourceVersion), "the rotation is not listed")
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(sec.ResourceVersion))

	// Lost between the status write and the Secret write: the new token is listed
	// but stays out of the Secret, which keeps a token that is still valid.
	held.Store(true)
	h.r.hook = func(step string) error {
		if step == stepStatusWritten {
			held.Store(false)
		}
		return nil
	}
	res, err = h.reconcile(tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(controller.NotLeaderRetry))
	listed := getToken(t, tok)
	g.Expect(listed.Status.Current.TokenID).NotTo(Equal(minted.Status.Current.TokenID))
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(sec.ResourceVersion))
	g.Expect(accepted(t, f, listed, string(sec.Data[tokensv1.SecretKeyToken]), h.clock.Now())).To(BeTrue())

	// The leader (here: the same replica, lease renewed) repairs it.
	held.Store(true)
	h.r.hook = nil
	h.mustReconcile(tok)
	got := getToken(t, tok)
	sec = getSecret(t, ns, tok.Name)
	g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID))
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
}
