package validator

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/paired"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// BenchmarkAuthorizeExchanged puts /authorize with a warm exchanged token next to a
// bare 200 handler and to a warm listed token, in turns on the CPU clock as
// BenchmarkAuthorize does. An exchanged token's decision is cached like a listed
// one's; the target is x-bare-throughput of at least 0.8.
func BenchmarkAuthorizeExchanged(b *testing.B) {
	const query = "/authorize?tenant=acme&role=viewer"
	bi := newBenchIndex(b, 1)
	cti := issuerObject("bench", bi.url, bi.key, true)
	cti.Spec.Exchange = &tokensv1.ExchangeSpec{Enabled: true, MaxDepth: 4}
	bi.idx.PutIssuer(cti)
	parent, err := bi.idx.Verifier().Verify(bi.jwts[0])
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	child, err := token.MintJWT(bi.key, token.Claims{Issuer: bi.url, Subject: parent.Subject, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		ID: token.NewTokenID(), Tenant: "acme", Role: "viewer", Parent: parent.ID, Depth: 1})
	if err != nil {
		b.Fatal(err)
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer bare.Close()
	srv := httptest.NewServer(New(bi.idx, Options{}).Handler())
	defer srv.Close()
	call(b, srv.URL+query, child)

	b.Run("paired/warm/exchanged", func(b *testing.B) {
		cpu := paired.InTurn(b,
			func(int) { call(b, bare.URL+query, child) },
			func(int) { call(b, srv.URL+query, bi.jwts[0]) },
			func(int) { call(b, srv.URL+query, child) })
		b.ReportMetric(cpu[0], "bare-cpu-ns/op")
		b.ReportMetric(cpu[1], "listed-cpu-ns/op")
		b.ReportMetric(cpu[2], "exchanged-cpu-ns/op")
		b.ReportMetric(cpu[0]/cpu[1], "x-bare-throughput-listed")
		b.ReportMetric(cpu[0]/cpu[2], "x-bare-throughput")
	})
}
