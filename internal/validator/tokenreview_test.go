package validator

import (
	"encoding/json"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// review posts a TokenReview and decodes the answer with the k8s.io/api types.
func (h *harness) review(tok string, audiences ...string) (*http.Response, string, authnv1.TokenReview) {
	in := authnv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authnv1.TokenReviewSpec{Token: tok, Audiences: audiences},
	}
	resp, body := h.request(http.MethodPost, validatorapi.PathTokenReview, mustJSON(in), map[string]string{"Content-Type": "application/json"})
	var out authnv1.TokenReview
	if resp.StatusCode == http.StatusOK {
		h.g.Expect(json.Unmarshal([]byte(body), &out)).To(Succeed())
	}
	return resp, body, out
}

func TestTokenReview(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	jwt := h.apiToken(iss, tokenSpec{subTenant: "payments", scopes: []string{"reports:read", "invoices:write"}, audiences: []string{"billing-api", "acme-apis"}})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)

	t.Run("JWT", func(t *testing.T) {
		g := NewWithT(t)
		resp, body, out := h.review(jwt.token)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
		g.Expect(body).NotTo(ContainSubstring(jwt.token), "the answer never echoes the token")
		g.Expect(out.APIVersion).To(Equal("authentication.k8s.io/v1"))
		g.Expect(out.Kind).To(Equal("TokenReview"))
		g.Expect(out.Spec.Token).To(BeEmpty())
		g.Expect(out.Status.Authenticated).To(BeTrue())
		g.Expect(out.Status.Error).To(BeEmpty())
		g.Expect(out.Status.User).To(Equal(authnv1.UserInfo{
			Username: "apitoken:" + h.ns + ":" + jwt.obj.Name,
			UID:      string(jwt.obj.UID),
			Groups:   []string{"apitoken:tenant:acme", "apitoken:role:editor", "apitoken:role:viewer"},
			Extra: map[string]authnv1.ExtraValue{
				validatorapi.ExtraTokenID:   {jwt.issued.TokenID},
				validatorapi.ExtraSubTenant: {"payments"},
				validatorapi.ExtraScopes:    {"reports:read", "invoices:write"},
			},
		}))
		g.Expect(out.Status.Audiences).To(BeEmpty(), "no audiences asked for, none answered")
	})

	t.Run("opaque", func(t *testing.T) {
		g := NewWithT(t)
		_, _, out := h.review(opaque.token)
		g.Expect(out.Status.Authenticated).To(BeTrue())
		g.Expect(out.Status.User.Groups).To(Equal([]string{"apitoken:tenant:acme", "apitoken:role:viewer"}))
		g.Expect(out.Status.User.Extra).To(Equal(map[string]authnv1.ExtraValue{validatorapi.ExtraTokenID: {opaque.issued.TokenID}}))
	})

	t.Run("audiences", func(t *testing.T) {
		g := NewWithT(t)
		_, _, out := h.review(jwt.token, "other-api", "billing-api")
		g.Expect(out.Status.Authenticated).To(BeTrue())
		g.Expect(out.Status.Audiences).To(Equal([]string{"billing-api"}), "the intersection")

		_, _, out = h.review(jwt.token, "other-api")
		g.Expect(out.Status.Authenticated).To(BeFalse())
		g.Expect(out.Status.User).To(BeZero())
		g.Expect(out.Status.Error).To(ContainSubstring(string(token.ReasonWrongAudience)))

		_, _, out = h.review(opaque.token, "billing-api")
		g.Expect(out.Status.Authenticated).To(BeFalse(), "the opaque token has no audience")
	})

	t.Run("refused", func(t *testing.T) {
		g := NewWithT(t)
		bad := jwt.token[:len(jwt.token)-4] + "AAAA"
		resp, body, out := h.review(bad)
		g.Expect(resp.StatusCode).To(Equal(200))
		g.Expect(out.Status.Authenticated).To(BeFalse())
		g.Expect(out.Status.Error).To(HavePrefix(string(token.ReasonBadSignature)))
		g.Expect(body).NotTo(ContainSubstring(bad))

		_, _, out = h.review("")
		g.Expect(out.Status.Authenticated).To(BeFalse())
		g.Expect(out.Status.Error).To(HavePrefix(validatorapi.ReasonMissing))
	})

	t.Run("not a TokenReview", func(t *testing.T) {
		g := NewWithT(t)
		for _, body := range []string{
			`{"apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview", "spec": {"token": "x"}}`,
			`{"apiVersion": "authentication.k8s.io/v1", "kind": "SubjectAccessReview"}`,
			`not json`,
		} {
			resp, _ := h.request(http.MethodPost, validatorapi.PathTokenReview, []byte(body), nil)
			g.Expect(resp.StatusCode).To(Equal(400), body)
		}
		resp, _ := h.request(http.MethodGet, validatorapi.PathTokenReview, nil, nil)
		g.Expect(resp.StatusCode).To(Equal(http.StatusMethodNotAllowed))
	})
}

// TestConfiguredAudiences: a validator that serves one audience refuses tokens for
// others, JWT or opaque.
func TestConfiguredAudiences(t *testing.T) {
	h := start(t, Options{Audiences: []string{"billing-api"}})
	iss := h.issuer(token.ES256, true)
	for _, f := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
		ok := h.apiToken(iss, tokenSpec{format: f, audiences: []string{"billing-api"}})
		other := h.apiToken(iss, tokenSpec{format: f, audiences: []string{"shipping-api"}})
		none := h.apiToken(iss, tokenSpec{format: f})
		h.waitIndexed(ok)
		h.waitIndexed(other)
		h.waitIndexed(none)
		g := NewWithT(t)
		g.Expect(h.authorize(ok.token, "").StatusCode).To(Equal(200), f)
		g.Expect(h.authorize(other.token, "").StatusCode).To(Equal(401), f)
		g.Expect(h.authorize(none.token, "").StatusCode).To(Equal(401), f)
	}
}
