package validator

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestListedTokenBinding: whoever reads an issuer's key Secret can sign anything, and
// a listed token's jti and sub are public in its APIToken's status. A clone of a
// listed token, re-signed with the real key with any claim changed (an audience that
// kube-apiserver accepts, a longer expiry, a higher role), is not the token the
// record lists: TokenReview and /authorize refuse it with DigestMismatch, with and
// without the decision cache, while the token itself is accepted. A record written
// before digests were recorded is still judged by its claims.
func TestListedTokenBinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{{"decision cache", Options{}}, {"no decision cache", Options{CacheSize: -1}}} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.opts)
			iss := h.issuer(token.ES256, true)
			spec := tokenSpec{audiences: []string{"billing-api"}}
			listed := h.apiToken(iss, spec)
			legacy := h.apiToken(iss, tokenSpec{})
			h.updateStatus(legacy, func(s *tokensv1.APITokenStatus) { s.Current.Digest = "" })
			h.waitIndexed(listed)
			h.waitIndexed(legacy)
			h.g.Eventually(func() bool { return h.idx.Token(legacy.issued.TokenID).HasDigest() }).Should(BeFalse())
			h.g.Expect(h.idx.Token(listed.issued.TokenID).HasDigest()).To(BeTrue())

			// clone re-signs listed's claims, changed by edit, with the issuer's key.
			clone := func(edit func(*token.Claims)) string {
				it := listed.issued
				c := token.Claims{
					Issuer: iss.url, Subject: "apitoken:" + h.ns + ":" + listed.obj.Name, Audience: it.Claims.Audiences,
					IssuedAt: it.IssuedAt.Time, ExpiresAt: it.ExpiresAt.Time, ID: it.TokenID,
					Tenant: it.Claims.Tenant, SubTenant: it.Claims.SubTenant, Role: it.Claims.Role, Scopes: it.Claims.Scopes,
				}
				edit(&c)
				tok, err := token.MintJWT(iss.keys[0], c)
				h.g.Expect(err).NotTo(HaveOccurred())
				return tok
			}
			clones := map[string]string{
				"audience of kube-apiserver": clone(func(c *token.Claims) { c.Audience = []string{"https://kubernetes.default.svc"} }),
				"one more audience":          clone(func(c *token.Claims) { c.Audience = append(c.Audience, "acme-apis") }),
				"longer expiry":              clone(func(c *token.Claims) { c.ExpiresAt = c.ExpiresAt.Add(24 * time.Hour) }),
				"higher role":                clone(func(c *token.Claims) { c.Role = "admin" }),
				"nothing changed but iat":    clone(func(c *token.Claims) { c.IssuedAt = c.IssuedAt.Add(-time.Second) }),
			}

			for name, tok := range clones {
				t.Run(name, func(t *testing.T) {
					g := NewWithT(t)
					resp, body := h.request(http.MethodGet, validatorapi.PathAuthorize, nil, map[string]string{"Authorization": "Bearer " + tok})
					g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
					g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error_description="` + validatorapi.Describe(validatorapi.ReasonDigestMismatch) + `"`))
					g.Expect(body).NotTo(ContainSubstring(tok))

					_, body, out := h.review(tok)
					g.Expect(out.Status.Authenticated).To(BeFalse())
					g.Expect(out.Status.Error).To(HavePrefix(validatorapi.ReasonDigestMismatch))
					g.Expect(body).NotTo(ContainSubstring(tok))
					_, _, out = h.review(tok, "https://kubernetes.default.svc")
					g.Expect(out.Status.Authenticated).To(BeFalse())

					resp, body = h.request(http.MethodPost, validatorapi.PathValidate, mustJSON(validatorapi.ValidateRequest{Token: tok}), nil)
					g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
					g.Expect(body).To(ContainSubstring(`"reason":"` + validatorapi.ReasonDigestMismatch + `"`))
				})
			}

			t.Run("the listed token itself", func(t *testing.T) {
				g := NewWithT(t)
				for range 2 { // cold, then warm when the cache is on
					g.Expect(h.authorize(listed.token, "tenant=acme&role=editor").StatusCode).To(Equal(http.StatusOK))
					_, _, out := h.review(listed.token)
					g.Expect(out.Status.Authenticated).To(BeTrue())
				}
				// A clone refused after the token was cached is still refused.
				g.Expect(h.authorize(clones["longer expiry"], "").StatusCode).To(Equal(http.StatusUnauthorized))
			})

			t.Run("a record without a digest is bound by its claims", func(t *testing.T) {
				g := NewWithT(t)
				g.Expect(h.authorize(legacy.token, "tenant=acme&role=editor").StatusCode).To(Equal(http.StatusOK))
			})

			t.Run("an alg other than its key's", func(t *testing.T) {
				// The key decides the algorithm: an RS256 signature under the kid of
				// the issuer's ES256 key is refused before anything else is looked at.
				g := NewWithT(t)
				rsa, err := token.GenerateKey(token.RS256)
				g.Expect(err).NotTo(HaveOccurred())
				it := listed.issued
				tok, err := token.MintJWT(&token.SigningKey{ID: iss.keys[0].ID, Algorithm: token.RS256, Signer: rsa.Signer}, token.Claims{
					Issuer: iss.url, Subject: "apitoken:" + h.ns + ":" + listed.obj.Name, Audience: it.Claims.Audiences,
					ExpiresAt: it.ExpiresAt.Time, ID: it.TokenID, Tenant: "acme", Role: "editor"})
				g.Expect(err).NotTo(HaveOccurred())
				resp, _ := h.request(http.MethodGet, validatorapi.PathAuthorize, nil, map[string]string{"Authorization": "Bearer " + tok})
				g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
				_, _, out := h.review(tok)
				g.Expect(out.Status.Error).To(HavePrefix(validatorapi.ReasonAlgMismatch))
			})
		})
	}
}
