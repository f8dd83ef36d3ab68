package validator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// countingReader counts the reads that reach the API server.
type countingReader struct {
	client.Reader
	gets atomic.Int64
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// blindValidator is a second validator over the harness's API server whose index
// knows the issuers but has heard of no APIToken, as one whose APIToken watch has
// not come back after an API server outage. It reads APITokens past the index
// through reader, at most perSecond times a second.
func (h *harness) blindValidator(reader client.Reader, perSecond float64, issuers ...*issuerFixture) string {
	idx := index.New(index.Config{Clock: h.clk})
	for _, f := range issuers {
		cti := &tokensv1.ClusterTokenIssuer{}
		h.g.Expect(env.Client.Get(h.ctx, client.ObjectKey{Name: f.name}, cti)).To(Succeed())
		idx.PutIssuer(cti)
	}
	srv := New(idx, Options{Clock: h.clk, Live: NewLiveLookup(reader, h.clk, perSecond, 2*time.Second)})
	ts := httptest.NewServer(srv.Handler())
	h.t.Cleanup(ts.Close)
	return ts.URL
}

// TestLiveLookup: a validly signed JWT that the index does not know is decided by
// the APIToken as the API server has it now, with every rule of an indexed token;
// reads are reused for a second, one per APIToken at a time, and rate limited; an
// unsigned or forged token never causes one.
func TestLiveLookup(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	reader := &countingReader{Reader: env.Client}
	url := h.blindValidator(reader, 1000, iss)
	status := func(tok string) int {
		req, err := http.NewRequest(http.MethodGet, url+validatorapi.PathAuthorize, nil)
		h.g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := h.http.Do(req)
		h.g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	m := h.apiToken(iss, tokenSpec{})
	h.g.Expect(status(m.token)).To(Equal(200), "listed in the status: accepted")
	h.g.Expect(reader.gets.Load()).To(BeEquivalentTo(1))
	h.g.Expect(status(m.token)).To(Equal(200))
	h.g.Expect(reader.gets.Load()).To(BeEquivalentTo(1), "the answer is reused for a second")

	h.clk.Step(2 * time.Second)
	h.updateSpec(m, func(s *tokensv1.APITokenSpec) { s.Revoked = true })
	h.g.Expect(status(m.token)).To(Equal(401), "the live read sees the revocation, and the acceptance was not cached")
	h.g.Expect(reader.gets.Load()).To(BeEquivalentTo(2))

	retired := h.apiToken(iss, tokenSpec{})
	newTok := h.rotate(iss, retired, tokenSpec{}, h.clk.Now().Add(time.Minute))
	h.g.Expect(status(retired.token)).To(Equal(200), "a previous token in its grace period")
	h.g.Expect(status(newTok)).To(Equal(200))
	h.clk.Step(2 * time.Minute)
	h.g.Expect(status(retired.token)).To(Equal(401), "retired by the validator's clock")

	gone := h.apiToken(iss, tokenSpec{})
	h.g.Expect(env.Client.Delete(h.ctx, gone.obj)).To(Succeed())
	notFound := testutil.ToFloat64(liveLookupsTotal.WithLabelValues(liveNotFound))
	h.g.Expect(status(gone.token)).To(Equal(401), "no APIToken, no token")
	h.g.Expect(testutil.ToFloat64(liveLookupsTotal.WithLabelValues(liveNotFound))).To(Equal(notFound + 1))

	// A token of another issuer (or of nobody) is refused before any read.
	before := reader.gets.Load()
	stranger := h.issuer(token.ES256, true)
	foreign := h.apiToken(stranger, tokenSpec{})
	h.g.Expect(status(foreign.token)).To(Equal(401))
	h.g.Expect(status("eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.")).To(Equal(401))
	h.g.Expect(reader.gets.Load()).To(Equal(before), "only a signature of a known issuer leads to a read")

	// The rate limit: one read, then none for 100 s.
	throttled := &countingReader{Reader: env.Client}
	slow := h.blindValidator(throttled, 0.01, iss)
	a, b := h.apiToken(iss, tokenSpec{}), h.apiToken(iss, tokenSpec{})
	url = slow
	h.g.Expect(status(a.token)).To(Equal(200))
	throttledBefore := testutil.ToFloat64(liveLookupsTotal.WithLabelValues(liveThrottled))
	h.g.Expect(status(b.token)).To(Equal(401), "over the rate, an unknown token stays unknown")
	h.g.Expect(testutil.ToFloat64(liveLookupsTotal.WithLabelValues(liveThrottled))).To(Equal(throttledBefore + 1))
	h.g.Expect(throttled.gets.Load()).To(BeEquivalentTo(1))
}
