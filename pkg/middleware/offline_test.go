package middleware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TestOfflineHTTPS: the JWKS is fetched over TLS without any option, and a token of
// another issuer that the same JWKS URL serves is refused.
func TestOfflineHTTPS(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor"})
	srv := httptest.NewTLSServer(w.handler)
	t.Cleanup(srv.Close)
	o, err := NewOffline(OfflineOptions{JWKSURL: srv.URL + validatorapi.PathJWKS, Issuer: issuerURL, Client: srv.Client(), Clock: w.clk})
	g.Expect(err).NotTo(HaveOccurred())
	d, err := o.Check(context.Background(), tok, Requirement{Tenant: "acme"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Allowed()).To(BeTrue(), d.Message)
	g.Expect(w.jwksServed.Load()).To(Equal(int64(1)))

	other, err := NewOffline(OfflineOptions{JWKSURL: srv.URL + validatorapi.PathJWKS, Issuer: "https://other.example.test", Client: srv.Client(), Clock: w.clk})
	g.Expect(err).NotTo(HaveOccurred())
	d, err = other.Check(context.Background(), tok, Requirement{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Status).To(Equal(http.StatusUnauthorized))
	g.Expect(d.Reason).To(Equal(validatorapi.ReasonWrongIssuer))
}

// TestOfflineStaleKeys: while the JWKS endpoint is unreachable, the keys fetched last
// keep verifying until they are MaxKeyAge old; from then on every request is refused
// with 503 and an error that says why, rather than checked against keys the issuer
// may have withdrawn meanwhile. Once the endpoint answers again, so does the
// middleware.
func TestOfflineStaleKeys(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, validator.Options{})
	tok := w.mint(grant{ns: "acme", name: "ci", tenant: "acme", role: "editor", lifetime: 24 * time.Hour})
	o, err := NewOffline(OfflineOptions{JWKSURL: w.url + validatorapi.PathJWKS, AllowInsecureHTTP: true, Issuer: issuerURL, Clock: w.clk,
		MinRefreshInterval: 30 * time.Second, MaxKeyAge: 5 * time.Minute})
	g.Expect(err).NotTo(HaveOccurred())
	errs := make(chan error, 10)
	m, _ := New(Options{Checker: o, OnError: func(_ *http.Request, err error) { errs <- err }})
	url := serve(t, m.Handler(protected))
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusOK))

	w.jwksDown.Store(true)
	w.clk.Step(5*time.Minute - time.Second)
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusOK), "younger than MaxKeyAge: still trusted")
	g.Expect(o.Fetches()).To(Equal(int64(1)), "and not fetched again")

	w.clk.Step(time.Second)
	got := call(t, url, tok)
	g.Expect(got.status).To(Equal(http.StatusServiceUnavailable))
	var e error
	g.Expect(errs).To(Receive(&e))
	g.Expect(e).To(MatchError(And(ContainSubstring("older than MaxKeyAge (5m0s) and could not be refreshed"), ContainSubstring("503"))))
	g.Expect(o.Fetches()).To(Equal(int64(2)))

	// Within the floor nothing is fetched, and the keys are still too old.
	w.clk.Step(10 * time.Second)
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(errs).To(Receive(&e))
	g.Expect(e).To(MatchError(ContainSubstring("older than MaxKeyAge")))
	g.Expect(o.Fetches()).To(Equal(int64(2)))

	w.jwksDown.Store(false)
	w.clk.Step(20 * time.Second)
	g.Expect(call(t, url, tok).status).To(Equal(http.StatusOK), "refreshed once the floor allowed it")
	g.Expect(o.Fetches()).To(Equal(int64(3)))
}
