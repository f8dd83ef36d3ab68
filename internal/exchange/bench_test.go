package exchange

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/paired"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// The benchmark puts GET /v1/token next to a bare net/http handler that does only
// what an exchange cannot avoid: one ES256 verification of the presented token and
// one ES256 signature of a new one. Both are served and called the same way
// (httptest on loopback, one keep-alive client), and timed in turns with the
// process CPU clock, so a shared machine's load weighs on both alike. The index is
// filled directly and the key Secret read once from a fake client, to keep the API
// server out of the measurement. Results are in docs/performance.md.

type benchExchange struct {
	srv     *Server
	key     *token.SigningKey
	parents []string
}

func newBenchExchange(b *testing.B, n, cacheSize int) *benchExchange {
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		b.Fatal(err)
	}
	const url = "https://bench.example"
	idx := index.New(index.Config{})
	j := key.PublicJWK()
	idx.PutIssuer(&tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: url, Tenants: []tokensv1.Tenant{{Name: "acme", Namespaces: []string{"acme"}}},
			Roles:    []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}},
			Exchange: &tokensv1.ExchangeSpec{Enabled: true, DefaultLifetime: metav1.Duration{Duration: 600 * time.Second}, MaxLifetime: metav1.Duration{Duration: 24 * time.Hour}, MaxDepth: 4}},
		Status: tokensv1.ClusterTokenIssuerStatus{CurrentKeyID: key.ID,
			JWKS: &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y}}}},
	})
	be := &benchExchange{key: key}
	now := time.Now()
	for i := range n {
		name := fmt.Sprintf("tok-%d", i)
		it := tokensv1.IssuedToken{TokenID: token.NewTokenID(), Format: tokensv1.FormatJWT, SigningKeyID: key.ID,
			Claims:   tokensv1.TokenClaims{Tenant: "acme", Role: "editor"},
			IssuedAt: metav1.NewTime(now), ExpiresAt: metav1.NewTime(now.Add(48 * time.Hour))}
		tok, err := token.MintJWT(key, token.Claims{Issuer: url, Subject: token.Subject("acme", name), IssuedAt: now,
			ExpiresAt: now.Add(48 * time.Hour), ID: it.TokenID, Tenant: "acme", Role: "editor"})
		if err != nil {
			b.Fatal(err)
		}
		idx.PutTokenSet(index.NewTokenSet(&tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name, UID: types.UID(name)},
			Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: "bench"}, Tenant: "acme", Role: "editor"},
			Status:     tokensv1.APITokenStatus{Current: &it},
		}))
		be.parents = append(be.parents, tok)
	}
	pem, err := key.MarshalPrivateKey()
	if err != nil {
		b.Fatal(err)
	}
	// A fake client is enough here: it serves the one read of the key Secret, which
	// the benchmark makes before it starts timing.
	reader := fake.NewClientBuilder().WithScheme(testenv.Scheme).WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: keystore.SecretName("bench")},
		Data:       map[string][]byte{keystore.DataKey(key.ID): pem},
	}).Build()
	front := validator.New(idx, validator.Options{CacheSize: cacheSize, Limits: validator.RateLimits{FailureRate: 1, FailureBurst: 20}})
	be.srv = New(front, idx, NewKeys(reader, "ops"), Options{Log: logr.Discard()})
	return be
}

// bareVerifySign verifies the bearer JWT's ES256 signature and signs a new JWT of
// the same size as an exchanged one with key, answering it as JSON: an exchange's
// unavoidable work with nothing around it.
func bareVerifySign(key *token.SigningKey) http.Handler {
	priv := key.Signer.(*ecdsa.PrivateKey)
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"` + key.ID + `","typ":"JWT"}`))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		dot := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil || len(sig) != 64 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		d := sha256.Sum256([]byte(tok[:dot]))
		if !ecdsa.Verify(&priv.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		now := time.Now().Unix()
		claims := fmt.Sprintf(`{"iss":"https://bench.example","sub":"apitoken:acme:tok","exp":%d,"iat":%d,"nbf":%d,"jti":"01JBENCHBENCHBENCHBENCHBENC","tenant":"acme","role":"editor","parent":"01JPARENTPARENTPARENTPARENT","depth":1}`, now+600, now, now)
		input := head + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
		d = sha256.Sum256([]byte(input))
		rr, ss, err := ecdsa.Sign(rand.Reader, priv, d[:])
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		out := make([]byte, 64)
		rr.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(exchangeapi.TokenResponse{Token: input + "." + base64.RawURLEncoding.EncodeToString(out),
			TokenID: "01JBENCHBENCHBENCHBENCHBENC", ExpiresAt: time.Unix(now+600, 0), ExpiresIn: 600})
	})
}

func BenchmarkExchange(b *testing.B) {
	// 4096 parents through a 256-entry decision cache: every parent is verified.
	cold := newBenchExchange(b, 4096, 256)
	warm := newBenchExchange(b, 1, 0)
	coldSrv := httptest.NewServer(cold.srv.Handler())
	defer coldSrv.Close()
	warmSrv := httptest.NewServer(warm.srv.Handler())
	defer warmSrv.Close()
	bareCold := httptest.NewServer(bareVerifySign(cold.key))
	defer bareCold.Close()
	bareWarm := httptest.NewServer(bareVerifySign(warm.key))
	defer bareWarm.Close()
	path := exchangeapi.PathToken + "?expiration=600"
	each := func(i int) string { return cold.parents[i%len(cold.parents)] }
	// The first exchange reads the key Secret; time the ones after.
	paired.Get(b, coldSrv.URL+path, each(0))
	paired.Get(b, warmSrv.URL+path, warm.parents[0])

	// x-bare is the exchange's CPU time per request over the bare handler's: the
	// issue's target is at most 1.3.
	b.Run("paired/cold-parent", func(b *testing.B) {
		cpu := paired.InTurn(b,
			func(i int) { paired.Get(b, bareCold.URL+path, each(i)) },
			func(i int) { paired.Get(b, coldSrv.URL+path, each(i)) })
		b.ReportMetric(cpu[0], "bare-cpu-ns/op")
		b.ReportMetric(cpu[1], "exchange-cpu-ns/op")
		b.ReportMetric(cpu[1]/cpu[0], "x-bare")
	})
	// A parent presented again skips its verification (the validator's decision
	// cache), so the exchange does less than the bare handler.
	b.Run("paired/warm-parent", func(b *testing.B) {
		cpu := paired.InTurn(b,
			func(int) { paired.Get(b, bareWarm.URL+path, warm.parents[0]) },
			func(int) { paired.Get(b, warmSrv.URL+path, warm.parents[0]) })
		b.ReportMetric(cpu[0], "bare-cpu-ns/op")
		b.ReportMetric(cpu[1], "exchange-cpu-ns/op")
		b.ReportMetric(cpu[1]/cpu[0], "x-bare")
	})
}
