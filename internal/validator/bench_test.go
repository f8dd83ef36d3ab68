package validator

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/paired"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// The benchmarks put /authorize next to a bare net/http handler that answers 200,
// served and called the same way (httptest server on loopback, one keep-alive
// client, the same request), so that the difference is the validator's own cost.
// The cold path is also put next to the ES256 verification it cannot avoid. The
// index is filled directly, as the informers would fill it, to keep the API server
// out of the measurement. Results are in docs/performance.md.

// benchIndex holds n ES256 JWTs and one opaque token of one issuer.
type benchIndex struct {
	idx    *index.Index
	jwts   []string
	opaque string
	key    *token.SigningKey
	url    string
}

func newBenchIndex(b *testing.B, n int) *benchIndex {
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		b.Fatal(err)
	}
	bi := &benchIndex{idx: index.New(index.Config{}), key: key, url: "https://bench.example"}
	bi.idx.PutIssuer(issuerObject("bench", bi.url, key, true))
	now := time.Now()
	add := func(i int, format tokensv1.TokenFormat) string {
		name := fmt.Sprintf("tok-%d", i)
		it := tokensv1.IssuedToken{
			TokenID: token.NewTokenID(), Format: format,
			Claims:   tokensv1.TokenClaims{Tenant: "acme", Role: "editor", Scopes: []string{"reports:read"}},
			IssuedAt: metav1.NewTime(now), ExpiresAt: metav1.NewTime(now.Add(time.Hour)),
		}
		var tok string
		if format == tokensv1.FormatOpaque {
			op, err := token.MintOpaque("apt", it.TokenID)
			if err != nil {
				b.Fatal(err)
			}
			tok, it.TokenHash = op.Token, op.Hash
		} else {
			it.SigningKeyID = key.ID
			tok, err = token.MintJWT(key, token.Claims{Issuer: bi.url, Subject: "apitoken:acme:" + name, ExpiresAt: now.Add(time.Hour),
				IssuedAt: now, ID: it.TokenID, Tenant: "acme", Role: "editor", Scopes: []string{"reports:read"}})
			if err != nil {
				b.Fatal(err)
			}
			it.Digest = token.Digest(tok)
		}
		obj := &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name, UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "bench"}, Tenant: "acme", Role: "editor"},
			Status:     tokensv1.APITokenStatus{Current: &it},
		}
		bi.idx.PutTokenSet(index.NewTokenSet(obj))
		return tok
	}
	for i := range n {
		bi.jwts = append(bi.jwts, add(i, tokensv1.FormatJWT))
	}
	bi.opaque = add(n, tokensv1.FormatOpaque)
	return bi
}

// latencies records per-request durations and reports their p50 and p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Nanoseconds()), "p99-ns")
}

// call is paired.Get: one keep-alive client for every HTTP benchmark.
func call(b *testing.B, url, tok string) { paired.Get(b, url, tok) }

// sequential calls url with the token next(i) returns, one request at a time.
func sequential(b *testing.B, url string, next func(i int) string) {
	var lat latencies
	d := make([]time.Duration, 0, 1<<16)
	i := 0
	cpu0 := paired.CPUTime(b)
	for b.Loop() {
		start := time.Now()
		call(b, url, next(i))
		d = append(d, time.Since(start))
		i++
	}
	b.ReportMetric(float64(paired.CPUTime(b)-cpu0)/float64(i), "cpu-ns/op")
	lat.add(d)
	lat.report(b)
}

// parallel calls url from GOMAXPROCS goroutines at once, for throughput.
func parallel(b *testing.B, url string, next func(i int) string) {
	var lat latencies
	var mu sync.Mutex
	seq := 0
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		i := seq * 1_000_000
		seq++
		mu.Unlock()
		d := make([]time.Duration, 0, 1<<14)
		for pb.Next() {
			start := time.Now()
			call(b, url, next(i))
			d = append(d, time.Since(start))
			i++
		}
		lat.add(d)
	})
	lat.report(b)
}

func BenchmarkAuthorize(b *testing.B) {
	const query = "/authorize?tenant=acme&role=viewer"
	// 4096 distinct tokens through a 256-entry cache: every request misses.
	bi := newBenchIndex(b, 4096)
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer bare.Close()
	warmSrv := httptest.NewServer(New(bi.idx, Options{}).Handler())
	defer warmSrv.Close()
	coldSrv := httptest.NewServer(New(bi.idx, Options{CacheSize: 256}).Handler())
	defer coldSrv.Close()
	// The same warm validator with its audit stream on, writing to a file as
	// --audit-log does.
	auditFile, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer auditFile.Close()
	audit := NewAuditStream(auditFile, AuditOptions{})
	auditCtx, stopAudit := context.WithCancel(context.Background())
	defer stopAudit()
	go audit.Run(auditCtx)
	auditSrv := httptest.NewServer(New(bi.idx, Options{Audit: audit}).Handler())
	defer auditSrv.Close()
	one := func(int) string { return bi.jwts[0] }
	each := func(i int) string { return bi.jwts[i%len(bi.jwts)] }
	call(b, warmSrv.URL+query, bi.jwts[0])
	verifier := &token.Verifier{Keys: bi.idx.Issuer("bench").Keys, Issuer: bi.url}

	b.Run("bare-handler", func(b *testing.B) { sequential(b, bare.URL+query, one) })
	b.Run("warm/ES256", func(b *testing.B) { sequential(b, warmSrv.URL+query, one) })
	b.Run("warm/ES256/audit", func(b *testing.B) { sequential(b, auditSrv.URL+query, one) })
	b.Run("cold/ES256", func(b *testing.B) { sequential(b, coldSrv.URL+query, each) })
	b.Run("opaque", func(b *testing.B) { sequential(b, warmSrv.URL+query, func(int) string { return bi.opaque }) })
	b.Run("bare-es256-handler", func(b *testing.B) {
		srv := httptest.NewServer(bareES256Handler(b, bi.key))
		defer srv.Close()
		sequential(b, srv.URL+query, each)
	})

	// The paired runs interleave batches of requests to the bare handlers and to the
	// validator (and, cold, batches of in-process verifications), timed with the
	// process CPU clock, so that the load of a shared machine weighs on all of them
	// alike; one op is one request of each kind. x-bare-throughput is the bare
	// handler's CPU time per request over the validator's: the ratio of their
	// throughputs once the CPU is the bottleneck.
	//
	// bareHeaders answers with the same headers as /authorize (static values): the
	// part of the validator's cost that is the size of its answer.
	req := httptest.NewRequest(http.MethodGet, query, nil)
	req.Header.Set("Authorization", "Bearer "+bi.jwts[0])
	rec := httptest.NewRecorder()
	warmSrv.Config.Handler.ServeHTTP(rec, req)
	identity := rec.Header().Clone()
	bareHeaders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range identity {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer bareHeaders.Close()
	// warm-audit is the warm validator with its audit stream on: its CPU time
	// includes the writer's encoding and writes, which run in the same process.
	b.Run("paired/warm/ES256", func(b *testing.B) {
		cpu := paired.InTurn(b,
			func(int) { call(b, bare.URL+query, bi.jwts[0]) },
			func(int) { call(b, bareHeaders.URL+query, bi.jwts[0]) },
			func(int) { call(b, warmSrv.URL+query, bi.jwts[0]) },
			func(int) { call(b, auditSrv.URL+query, bi.jwts[0]) })
		b.ReportMetric(cpu[0], "bare-cpu-ns/op")
		b.ReportMetric(cpu[1], "bare-with-headers-cpu-ns/op")
		b.ReportMetric(cpu[2], "warm-cpu-ns/op")
		b.ReportMetric(cpu[3], "warm-audit-cpu-ns/op")
		b.ReportMetric(cpu[0]/cpu[2], "x-bare-throughput")
		b.ReportMetric(cpu[1]/cpu[2], "x-bare-with-headers-throughput")
		b.ReportMetric(cpu[0]/cpu[3], "x-bare-throughput-audit")
	})
	// bareVerify does the ES256 verification a cold request cannot avoid, in the same
	// setup: the token's SHA-256 and ecdsa.Verify, nothing else. x-verify is the
	// validator's CPU time above the bare handler's in units of bareVerify's:
	// a verification between requests runs with caches the HTTP stack has cooled and
	// costs more than one in a hot loop, and bareVerify pays that too. x-loop-verify
	// compares with the hot loop (loop-verify-cpu-ns/op) instead.
	bareVerify := httptest.NewServer(bareES256Handler(b, bi.key))
	defer bareVerify.Close()
	b.Run("paired/cold/ES256", func(b *testing.B) {
		cpu := paired.InTurn(b,
			func(i int) { call(b, bare.URL+query, each(i)) },
			func(i int) { call(b, bareVerify.URL+query, each(i)) },
			func(i int) { call(b, coldSrv.URL+query, each(i)) },
			func(i int) {
				if _, err := verifier.Verify(each(i)); err != nil {
					b.Fatal(err)
				}
			})
		bareCPU, bareVerifyCPU, coldCPU, verifyCPU := cpu[0], cpu[1], cpu[2], cpu[3]
		b.ReportMetric(bareCPU, "bare-cpu-ns/op")
		b.ReportMetric(bareVerifyCPU, "bare-verify-cpu-ns/op")
		b.ReportMetric(coldCPU, "cold-cpu-ns/op")
		b.ReportMetric(verifyCPU, "loop-verify-cpu-ns/op")
		b.ReportMetric(bareCPU/coldCPU, "x-bare-throughput")
		b.ReportMetric((coldCPU-bareCPU)/(bareVerifyCPU-bareCPU), "x-verify")
		b.ReportMetric((coldCPU-bareCPU)/verifyCPU, "x-loop-verify")
	})

	b.Run("parallel/bare-handler", func(b *testing.B) { parallel(b, bare.URL+query, one) })
	b.Run("parallel/warm/ES256", func(b *testing.B) { parallel(b, warmSrv.URL+query, one) })
	b.Run("parallel/cold/ES256", func(b *testing.B) { parallel(b, coldSrv.URL+query, each) })
}

// bareES256Handler answers 200 to a request whose bearer JWT's ES256 signature
// verifies with key, with nothing around it: no parsing of header or claims, no
// index, no cache.
func bareES256Handler(b *testing.B, key *token.SigningKey) http.Handler {
	pub := &key.Signer.(*ecdsa.PrivateKey).PublicKey
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		dot := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil || len(sig) != 64 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		d := sha256.Sum256([]byte(tok[:dot]))
		if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// BenchmarkES256Verify is what a cold request cannot avoid: the token package's
// verification of one of the benchmark's tokens, and the bare SHA-256 and ECDSA
// verification under it.
func BenchmarkES256Verify(b *testing.B) {
	bi := newBenchIndex(b, 1)
	tok := bi.jwts[0]
	keys, err := token.NewKeySet(token.JWKS{Keys: []token.JWK{bi.key.PublicJWK()}})
	if err != nil {
		b.Fatal(err)
	}
	v := &token.Verifier{Keys: keys, Issuer: bi.url}
	b.Run("token.Verifier", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare-sha256+ecdsa.Verify", func(b *testing.B) {
		dot := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil {
			b.Fatal(err)
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		pub := &bi.key.Signer.(*ecdsa.PrivateKey).PublicKey
		input := []byte(tok[:dot])
		for b.Loop() {
			d := sha256.Sum256(input)
			if !ecdsa.Verify(pub, d[:], r, s) {
				b.Fatal("bad signature")
			}
		}
	})
}
