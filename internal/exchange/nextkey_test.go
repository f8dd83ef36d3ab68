package exchange

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// A next key is published, and in the key Secret, before it signs (the issuer's
// status.nextKeyID): the exchange keeps signing with status.currentKeyID until the
// issuer makes the next key current.
func TestNextKeyDoesNotSign(t *testing.T) {
	h := start(t, harnessFlags())
	iss := h.issuer(enabled())
	p := h.apiToken(iss, parentSpec{})
	current := iss.keys[0]
	next, err := token.GenerateKey(token.ES256)
	h.g.Expect(err).NotTo(HaveOccurred())
	iss.keys = append(iss.keys, next)
	h.writeKeySecret(iss)
	cti := &tokensv1.ClusterTokenIssuer{}
	h.g.Expect(env.Client.Get(h.ctx, client.ObjectKey{Name: iss.name}, cti)).To(Succeed())
	cti.Status.JWKS.Keys = append(cti.Status.JWKS.Keys, jwk.FromToken(next.PublicJWK()))
	cti.Status.Keys = append(cti.Status.Keys, tokensv1.SigningKeyStatus{KeyID: next.ID, Algorithm: tokensv1.AlgorithmES256, CreatedAt: metav1.NewTime(h.clk.Now())})
	cti.Status.NextKeyID = next.ID
	h.g.Expect(meta.IsStatusConditionTrue(cti.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue())
	h.g.Expect(env.Client.Status().Update(h.ctx, cti)).To(Succeed())
	h.g.Eventually(func() int { return len(h.idx.Issuer(iss.name).JWKS) }).Should(Equal(2))

	h.g.Expect(verify(t, h, iss, h.exchangeOK(p.token, "").Token).KeyID).To(Equal(current.ID), "the published next key signs nothing yet")

	h.publishStatus(iss, next)
	h.g.Expect(verify(t, h, iss, h.exchangeOK(p.token, "").Token).KeyID).To(Equal(next.ID))
}
