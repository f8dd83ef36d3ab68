package validator

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// read returns the APIToken as the API server holds it now.
func (h *harness) read(m *minted) *tokensv1.APIToken {
	obj := &tokensv1.APIToken{}
	h.g.Expect(env.Client.Get(h.ctx, client.ObjectKeyFromObject(m.obj), obj)).To(Succeed())
	return obj
}

// TestUsageReporting: lastUsedTime is written once per minute per APIToken, however
// many requests the token served, and only for APITokens that were used.
func TestUsageReporting(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	used := h.apiToken(iss, tokenSpec{})
	usedOpaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque})
	idle := h.apiToken(iss, tokenSpec{})
	for _, m := range []*minted{used, usedOpaque, idle} {
		h.waitIndexed(m)
	}
	g := NewWithT(t)
	first := h.clk.Now()

	for range 50 {
		g.Expect(h.authorize(used.token, "").StatusCode).To(Equal(200))
		g.Expect(h.authorize(usedOpaque.token, "").StatusCode).To(Equal(200))
	}
	// Refused requests are no use.
	g.Expect(h.authorize(idle.token, "role=admin").StatusCode).To(Equal(403))
	idleRV := h.read(idle).ResourceVersion
	h.usage.Flush(h.ctx)

	for _, m := range []*minted{used, usedOpaque} {
		got := h.read(m).Status.LastUsedTime
		g.Expect(got).NotTo(BeNil())
		g.Expect(got.Time).To(BeTemporally("==", first))
	}
	g.Expect(h.read(idle).Status.LastUsedTime).To(BeNil())
	g.Expect(h.read(idle).ResourceVersion).To(Equal(idleRV))
	// The write changes no token, so it leaves the decision cache alone.
	g.Expect(h.read(used).Status.Current).To(Equal(used.obj.Status.Current))

	// More use within the same minute: no second write.
	rv := h.read(used).ResourceVersion
	h.clk.Step(30 * time.Second)
	for range 10 {
		g.Expect(h.authorize(used.token, "").StatusCode).To(Equal(200))
	}
	h.usage.Flush(h.ctx)
	g.Expect(h.read(used).ResourceVersion).To(Equal(rv))

	// A minute later it is written again, from the background loop.
	go func() { _ = h.usage.Start(h.ctx) }()
	g.Eventually(h.clk.HasWaiters).Should(BeTrue())
	h.clk.Step(30 * time.Second)
	second := h.clk.Now()
	g.Expect(h.authorize(used.token, "").StatusCode).To(Equal(200))
	h.clk.Step(time.Minute)
	g.Eventually(func() time.Time { return h.read(used).Status.LastUsedTime.Time }).WithTimeout(informerEvent).Should(BeTemporally("==", second))
}

// TestUsageReportingOtherReplica: a lastUsedTime another replica wrote less than a
// minute ago is left alone.
func TestUsageReportingOtherReplica(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{})
	g := NewWithT(t)
	recent := metav1.NewTime(h.clk.Now().Add(-20 * time.Second))
	h.updateStatus(m, func(s *tokensv1.APITokenStatus) { s.LastUsedTime = &recent })
	g.Eventually(func() time.Time {
		if r := h.idx.Token(m.issued.TokenID); r != nil {
			return r.Owner.LastUsed()
		}
		return time.Time{}
	}).WithTimeout(informerEvent).Should(BeTemporally("==", recent.Time))

	g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))
	h.usage.Flush(h.ctx)
	g.Expect(h.read(m).Status.LastUsedTime.Time).To(BeTemporally("==", recent.Time))
}

// TestUsageReportingRecreated: a mark never lands on an APIToken that was deleted and
// created again under the same name.
func TestUsageReportingRecreated(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{})
	h.waitIndexed(m)
	g := NewWithT(t)
	g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))

	g.Expect(env.Client.Delete(h.ctx, m.obj)).To(Succeed())
	again := &tokensv1.APIToken{}
	again.Namespace, again.Name, again.Spec = m.obj.Namespace, m.obj.Name, m.obj.Spec
	g.Eventually(func() error { return env.Client.Create(h.ctx, again) }).Should(Succeed())
	h.usage.Flush(h.ctx)
	g.Expect(h.read(m).Status.LastUsedTime).To(BeNil())
	g.Expect(h.read(m).UID).NotTo(Equal(m.obj.UID))
}
