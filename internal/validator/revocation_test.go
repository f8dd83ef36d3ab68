package validator

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// informerEvent is how long a change may take to reach the validator: one watch
// event from a local API server.
const informerEvent = 5 * time.Second

// reason asks /v1/validate why tok is refused now.
func (h *harness) reason(tok string) func() string {
	return func() string {
		_, body := h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: tok}), nil)
		var out validatorapi.ValidateResponse
		h.g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
		return out.Reason
	}
}

// warm makes sure tok is accepted, twice, so the second answer came from the decision
// cache: what follows proves the cache does not outlive the change.
func (h *harness) warm(tok string) {
	h.g.Eventually(h.authorizeStatus(tok, "")).WithTimeout(informerEvent).Should(Equal(200))
	h.g.Expect(h.authorize(tok, "").StatusCode).To(Equal(200))
}

// TestRevocationAndRotation: every change the controller (or a user) makes to an
// APIToken or an issuer takes effect with the informer event that carries it, even for
// JWTs whose signature and exp are still good and whose decision is cached.
func TestRevocationAndRotation(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)

	t.Run("revoked", func(t *testing.T) {
		for _, f := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
			m := h.apiToken(iss, tokenSpec{format: f})
			h.warm(m.token)
			h.updateSpec(m, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
			h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
			h.g.Expect(h.reason(m.token)()).To(Equal(validatorapi.ReasonRevoked))
		}
	})

	t.Run("deleted", func(t *testing.T) {
		m := h.apiToken(iss, tokenSpec{})
		h.warm(m.token)
		h.g.Expect(env.Client.Delete(h.ctx, m.obj)).To(Succeed())
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(m.token)()).To(Equal(string(token.ReasonUnknownToken)))
	})

	t.Run("being deleted", func(t *testing.T) {
		// A finalizer holds the object: the controller has not cleaned up yet, but
		// the token is refused already.
		m := h.apiToken(iss, tokenSpec{})
		h.warm(m.token)
		h.updateFinalizers(m, []string{"tokens.apitoken.dev/test"})
		h.g.Expect(env.Client.Delete(h.ctx, m.obj)).To(Succeed())
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(m.token)()).To(Equal(validatorapi.ReasonRevoked))
		h.updateFinalizers(m, nil)
	})

	t.Run("rotated, then the grace period ends by the validator's clock", func(t *testing.T) {
		for _, f := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
			old := h.apiToken(iss, tokenSpec{format: f})
			h.warm(old.token)
			newTok := h.rotate(iss, old, tokenSpec{format: f}, h.clk.Now().Add(10*time.Minute))
			h.g.Eventually(h.authorizeStatus(newTok, "")).WithTimeout(informerEvent).Should(Equal(200))
			h.g.Expect(h.authorize(old.token, "").StatusCode).To(Equal(200), "the previous token lives through its grace period")

			h.clk.Step(10 * time.Minute)
			h.g.Expect(h.authorize(old.token, "").StatusCode).To(Equal(401), "retireAt is enforced by the validator's clock, not the controller's next write")
			h.g.Expect(h.reason(old.token)()).To(Equal(validatorapi.ReasonRetired))
			h.g.Expect(h.authorize(newTok, "").StatusCode).To(Equal(200))
		}
	})

	t.Run("previous tokens retired early", func(t *testing.T) {
		// What the apitoken.dev/retire-previous annotation makes the controller write.
		old := h.apiToken(iss, tokenSpec{})
		newTok := h.rotate(iss, old, tokenSpec{}, h.clk.Now().Add(time.Hour))
		h.warm(old.token)
		h.warm(newTok)
		h.updateStatus(old, func(s *tokensv1.APITokenStatus) { s.PreviousTokens = nil })
		h.g.Eventually(h.authorizeStatus(old.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(old.token)()).To(Equal(string(token.ReasonUnknownToken)))
		h.g.Expect(h.authorize(newTok, "").StatusCode).To(Equal(200))
	})

	t.Run("signing key rotated, then withdrawn", func(t *testing.T) {
		m := h.apiToken(iss, tokenSpec{})
		h.warm(m.token)
		next, err := token.GenerateKey(token.ES256)
		h.g.Expect(err).NotTo(HaveOccurred())
		oldKey := iss.keys[0]
		h.setIssuerKeys(iss, true, next, oldKey)
		iss.keys = []*token.SigningKey{next}
		fresh := h.apiToken(iss, tokenSpec{})
		h.warm(fresh.token)
		h.g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200), "the old key is still published")

		h.setIssuerKeys(iss, true, next)
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(m.token)()).To(Equal(string(token.ReasonUnknownKey)))
		h.g.Expect(h.authorize(fresh.token, "").StatusCode).To(Equal(200))
	})

	t.Run("issuer deleted", func(t *testing.T) {
		gone := h.issuer(token.EdDSA, true)
		jwt := h.apiToken(gone, tokenSpec{})
		opaque := h.apiToken(gone, tokenSpec{format: tokensv1.FormatOpaque})
		h.warm(jwt.token)
		h.warm(opaque.token)
		h.g.Expect(env.Client.Delete(h.ctx, &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: gone.name}})).To(Succeed())
		h.g.Eventually(h.authorizeStatus(jwt.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Eventually(h.authorizeStatus(opaque.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(opaque.token)()).To(Equal(validatorapi.ReasonUnknownIssuer))
	})

	t.Run("role changed by a re-mint", func(t *testing.T) {
		m := h.apiToken(iss, tokenSpec{role: "admin"})
		h.warm(m.token)
		h.g.Expect(h.authorize(m.token, "role=admin").StatusCode).To(Equal(200))
		tok, issued := h.mint(iss, m.obj, tokenSpec{role: "viewer"})
		h.updateStatus(m, func(s *tokensv1.APITokenStatus) { s.Current = &issued })
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.authorize(tok, "role=admin").StatusCode).To(Equal(403))
	})

	t.Run("status writes that change no token keep the cache", func(t *testing.T) {
		m := h.apiToken(iss, tokenSpec{})
		h.warm(m.token)
		gen := h.idx.Generation()
		now := metav1.NewTime(h.clk.Now())
		h.updateStatus(m, func(s *tokensv1.APITokenStatus) {
			s.LastUsedTime = &now
			s.Conditions = []metav1.Condition{{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonMinted, LastTransitionTime: now}}
		})
		h.g.Eventually(func() time.Time { return h.idx.Token(m.issued.TokenID).Owner.LastUsed() }).WithTimeout(informerEvent).Should(BeTemporally("==", now.Time))
		h.g.Expect(h.idx.Generation()).To(Equal(gen))
	})
}

func (h *harness) updateFinalizers(m *minted, finalizers []string) {
	h.g.Eventually(func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(m.obj), m.obj); err != nil {
			return client.IgnoreNotFound(err)
		}
		m.obj.Finalizers = finalizers
		return env.Client.Update(context.Background(), m.obj)
	}).Should(Succeed())
}

// updateIssuerSpec re-reads f's issuer, applies change to its spec and writes it.
func (h *harness) updateIssuerSpec(f *issuerFixture, change func(*tokensv1.ClusterTokenIssuerSpec)) {
	h.g.Eventually(func() error {
		cti := &tokensv1.ClusterTokenIssuer{}
		if err := env.Client.Get(h.ctx, client.ObjectKey{Name: f.name}, cti); err != nil {
			return err
		}
		change(&cti.Spec)
		return env.Client.Update(h.ctx, cti)
	}).Should(Succeed())
}

// TestPolicyTightening: tokens minted under an issuer's policy are judged by the
// policy as it is now. Lowering a tenant's maxRole or taking a namespace off a tenant
// refuses the tokens that no longer fit, at once and for both formats; a policy that
// cannot be resolved leaves the last good one in force; loosening it again restores
// them.
func TestPolicyTightening(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	adminJWT := h.apiToken(iss, tokenSpec{role: "admin"})
	adminOpaque := h.apiToken(iss, tokenSpec{role: "admin", format: tokensv1.FormatOpaque})
	viewer := h.apiToken(iss, tokenSpec{role: "viewer"})
	for _, m := range []*minted{adminJWT, adminOpaque, viewer} {
		h.warm(m.token)
	}

	h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) { s.Tenants[0].MaxRole = "viewer" })
	for _, m := range []*minted{adminJWT, adminOpaque} {
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(401))
		h.g.Expect(h.reason(m.token)()).To(Equal(validatorapi.ReasonPolicy))
	}
	h.g.Expect(h.authorize(viewer.token, "").StatusCode).To(Equal(200), "a token within the new maxRole stays valid")

	h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) { s.Tenants[0].Namespaces = []string{"somewhere-else"} })
	h.g.Eventually(h.authorizeStatus(viewer.token, "")).WithTimeout(informerEvent).Should(Equal(401))
	h.g.Expect(h.reason(viewer.token)()).To(Equal(validatorapi.ReasonPolicy))

	// A role cycle (the API server cannot refuse it; the issuer goes Stalled) on top
	// of giving the namespace back: the new policy is unusable, so the old one,
	// which does not list the namespace, still decides.
	h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) {
		s.Tenants[0].Namespaces = []string{h.ns}
		s.Tenants[0].MaxRole = ""
		s.Roles = []tokensv1.Role{{Name: "viewer", Includes: []string{"admin"}}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}}
	})
	h.g.Eventually(func() error { return h.idx.Issuer(iss.name).PolicyError }).WithTimeout(informerEvent).Should(HaveOccurred())
	for _, m := range []*minted{adminJWT, adminOpaque, viewer} {
		h.g.Expect(h.reason(m.token)()).To(Equal(validatorapi.ReasonPolicy), "the last valid policy stays in force")
	}

	h.updateIssuerSpec(iss, func(s *tokensv1.ClusterTokenIssuerSpec) {
		s.Roles = []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}}
	})
	for _, m := range []*minted{adminJWT, adminOpaque, viewer} {
		h.g.Eventually(h.authorizeStatus(m.token, "")).WithTimeout(informerEvent).Should(Equal(200))
	}
	h.g.Expect(h.audit.text()).To(ContainSubstring(validatorapi.ReasonPolicy))
}
