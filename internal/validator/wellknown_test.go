package validator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/rand"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

func (h *harness) getJSON(path string, out any) int {
	resp, body := h.request(http.MethodGet, path, nil, nil)
	if resp.StatusCode == http.StatusOK {
		h.g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
		h.g.Expect(json.Unmarshal([]byte(body), out)).To(Succeed())
	}
	return resp.StatusCode
}

func kids(keys []tokensv1.JSONWebKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Kid
	}
	return out
}

// TestWellKnown: the keys and discovery documents come from the issuers' status, and
// only Ready issuers are published.
func TestWellKnown(t *testing.T) {
	h := start(t, Options{DefaultIssuer: "wk-" + rand.String(6)})
	es := h.issuer(token.ES256, true)
	ed := h.issuer(token.EdDSA, true)
	rs := h.issuer(token.RS256, false)
	h.g.Eventually(func() int { return len(h.idx.Issuers()) }).WithTimeout(informerEvent).Should(BeNumerically(">=", 3))
	h.g.Eventually(func() *index.Issuer { return h.idx.Issuer(rs.name) }).ShouldNot(BeNil())

	t.Run("JWKS of every Ready issuer", func(t *testing.T) {
		g := NewWithT(t)
		var all JWKSResponse
		g.Expect(h.getJSON(validatorapi.PathJWKS, &all)).To(Equal(200))
		g.Expect(kids(all.Keys)).To(ContainElements(es.keys[0].ID, ed.keys[0].ID))
		g.Expect(kids(all.Keys)).NotTo(ContainElement(rs.keys[0].ID), "not Ready")
		for _, k := range all.Keys {
			if k.Kid == es.keys[0].ID {
				g.Expect(k).To(Equal(apiJWK(es.keys[0])), "published as the issuer status holds it")
			}
		}
		// What a workload does with it: verify a token offline.
		var one JWKSResponse
		g.Expect(h.getJSON(validatorapi.PathJWKS+"?issuer="+es.name, &one)).To(Equal(200))
		g.Expect(kids(one.Keys)).To(Equal([]string{es.keys[0].ID}))
		keys, err := token.NewKeySet(jwk.ToToken(&tokensv1.JSONWebKeySet{Keys: one.Keys}))
		g.Expect(err).NotTo(HaveOccurred())
		m := h.apiToken(es, tokenSpec{})
		claims, err := (&token.Verifier{Keys: keys, Issuer: es.url, Now: h.clk.Now}).Verify(m.token)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(claims.ID).To(Equal(m.issued.TokenID))

		g.Expect(h.getJSON(validatorapi.PathJWKS+"?issuer="+url.QueryEscape(ed.url), &one)).To(Equal(200), "by issuer URL")
		g.Expect(kids(one.Keys)).To(Equal([]string{ed.keys[0].ID}))
		g.Expect(h.getJSON(validatorapi.PathJWKS+"?issuer="+rs.name, &one)).To(Equal(404))
		g.Expect(h.getJSON(validatorapi.PathJWKS+"?issuer=nope", &one)).To(Equal(404))
	})

	t.Run("openid-configuration", func(t *testing.T) {
		g := NewWithT(t)
		var doc OpenIDConfiguration
		g.Expect(h.getJSON(validatorapi.PathOIDC+"?issuer="+ed.name, &doc)).To(Equal(200))
		g.Expect(doc.Issuer).To(Equal(ed.url))
		g.Expect(doc.IDTokenSigningAlgValuesSupported).To(Equal([]string{"EdDSA"}))
		g.Expect(doc.JWKSURI).To(Equal(h.url + validatorapi.PathJWKS + "?issuer=" + ed.name))
		g.Expect(doc.ResponseTypesSupported).NotTo(BeEmpty())
		g.Expect(doc.SubjectTypesSupported).NotTo(BeEmpty())

		// The jwks_uri it names serves that issuer's keys.
		var keys JWKSResponse
		g.Expect(h.getJSON(strings.TrimPrefix(doc.JWKSURI, h.url), &keys)).To(Equal(200))
		g.Expect(kids(keys.Keys)).To(Equal([]string{ed.keys[0].ID}))

		g.Expect(h.getJSON(validatorapi.PathOIDC+"?issuer="+url.QueryEscape(es.url), &doc)).To(Equal(200))
		g.Expect(doc.Issuer).To(Equal(es.url))
		g.Expect(h.getJSON(validatorapi.PathOIDC+"?issuer="+rs.name, &doc)).To(Equal(404))
		// Several Ready issuers and none named like the default: no guess.
		g.Expect(h.getJSON(validatorapi.PathOIDC, &doc)).To(Equal(404))
	})

	t.Run("default issuer", func(t *testing.T) {
		g := NewWithT(t)
		def := h.issuerNamed(h.srv.opts.DefaultIssuer, token.ES256, true)
		var doc OpenIDConfiguration
		g.Eventually(func() int { return h.getJSON(validatorapi.PathOIDC, &doc) }).WithTimeout(informerEvent).Should(Equal(200))
		g.Expect(doc.Issuer).To(Equal(def.url))
		g.Expect(doc.IDTokenSigningAlgValuesSupported).To(Equal([]string{"ES256"}))
	})

	t.Run("a single Ready issuer is the default", func(t *testing.T) {
		g := NewWithT(t)
		x := index.New(index.Config{})
		x.PutIssuer(issuerObject("only", "https://only.example", es.keys[0], true))
		x.PutIssuer(issuerObject("unready", "https://unready.example", ed.keys[0], false))
		ts := httptest.NewServer(New(x, Options{PublicURL: "https://validator.example/"}).Handler())
		defer ts.Close()
		resp, err := http.Get(ts.URL + validatorapi.PathOIDC)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		var doc OpenIDConfiguration
		g.Expect(json.NewDecoder(resp.Body).Decode(&doc)).To(Succeed())
		g.Expect(doc.Issuer).To(Equal("https://only.example"))
		g.Expect(doc.JWKSURI).To(Equal("https://validator.example"+validatorapi.PathJWKS+"?issuer=only"), "the configured public URL")
	})
}
