package middleware

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// start is where every fake clock starts: a whole second, as JWTs and metav1.Time keep.
var start = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

const issuerURL = "https://tokens.example.test"

// world is a real validator server over an index the test fills the way the
// validator's informers would: one issuer, "default", and the APITokens minted.
type world struct {
	t   testing.TB
	clk *clocktesting.FakeClock
	idx *index.Index
	// url is the validator's base URL.
	url string
	// keys are the issuer's signing keys, the current one last.
	keys []*token.SigningKey
	// jwksServed counts the JWKS documents the server answered.
	jwksServed atomic.Int64
	// jwksDown makes the JWKS endpoint answer 503, as an unreachable validator.
	jwksDown atomic.Bool
	// handler serves the validator's endpoints, for a test that serves them itself.
	handler http.Handler
	tokens  map[types.NamespacedName]*tokensv1.APIToken
}

func newWorld(t testing.TB, opts validator.Options) *world {
	t.Helper()
	w := &world{t: t, clk: clocktesting.NewFakeClock(start), tokens: map[types.NamespacedName]*tokensv1.APIToken{}}
	w.idx = index.New(index.Config{Clock: w.clk})
	opts.Clock = w.clk
	h := validator.New(w.idx, opts).Handler()
	w.handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == validatorapi.PathJWKS {
			if w.jwksDown.Load() {
				http.Error(rw, "down", http.StatusServiceUnavailable)
				return
			}
			w.jwksServed.Add(1)
		}
		h.ServeHTTP(rw, r)
	})
	srv := httptest.NewServer(w.handler)
	t.Cleanup(srv.Close)
	w.url = srv.URL
	w.addKey()
	return w
}

// addKey makes a new key current; the old ones stay published.
func (w *world) addKey() *token.SigningKey {
	w.t.Helper()
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		w.t.Fatal(err)
	}
	w.keys = append(w.keys, key)
	cti := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: tokensv1.DefaultIssuerName, UID: "issuer-uid"},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:       issuerURL,
			OpaquePrefix: "apt",
			Roles: []tokensv1.Role{
				{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}},
			},
			// Each namespace mints for its own tenant; acme for globex too, which its
			// multi-tenant tokens are members of.
			Tenants: []tokensv1.Tenant{{Name: "acme", Namespaces: []string{"acme"}}, {Name: "globex", Namespaces: []string{"globex", "acme"}}},
		},
		Status: tokensv1.ClusterTokenIssuerStatus{CurrentKeyID: key.ID, JWKS: &tokensv1.JSONWebKeySet{}},
	}
	for _, k := range w.keys {
		j := k.PublicJWK()
		cti.Status.JWKS.Keys = append(cti.Status.JWKS.Keys, tokensv1.JSONWebKey{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y})
	}
	meta.SetStatusCondition(&cti.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonKeyGenerated})
	w.idx.PutIssuer(cti)
	return key
}

// grant says what mint mints.
type grant struct {
	ns, name                string
	tenant, subTenant, role string
	format                  tokensv1.TokenFormat
	// memberships make a multi-tenant token, with no tenant, sub-tenant or role.
	memberships []tokensv1.Membership
	// lifetime defaults to an hour; negative mints a token that already expired.
	lifetime time.Duration
}

// mint records an APIToken whose current token is a new one and returns the token.
func (w *world) mint(g grant) string {
	w.t.Helper()
	if g.lifetime == 0 {
		g.lifetime = time.Hour
	}
	now := w.clk.Now()
	exp := now.Add(g.lifetime)
	id := token.NewTokenID()
	it := tokensv1.IssuedToken{
		TokenID: id, Format: tokensv1.FormatJWT,
		Claims:   tokensv1.TokenClaims{Tenant: g.tenant, SubTenant: g.subTenant, Role: g.role, Memberships: g.memberships, Scopes: []string{"reports:read"}},
		IssuedAt: metav1.NewTime(now.Add(-time.Minute)), ExpiresAt: metav1.NewTime(exp),
	}
	var tok string
	if g.format == tokensv1.FormatOpaque {
		o, err := token.MintOpaque("apt", id)
		if err != nil {
			w.t.Fatal(err)
		}
		tok, it.Format, it.TokenHash = o.Token, tokensv1.FormatOpaque, o.Hash
	} else {
		key := w.keys[len(w.keys)-1]
		var ms []token.Membership
		for _, m := range g.memberships {
			ms = append(ms, token.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role})
		}
		var err error
		tok, err = token.MintJWT(key, token.Claims{
			Issuer: issuerURL, Subject: "apitoken:" + g.ns + ":" + g.name, IssuedAt: now.Add(-time.Minute), ExpiresAt: exp, ID: id,
			Tenant: g.tenant, SubTenant: g.subTenant, Role: g.role, Memberships: ms, Scopes: []string{"reports:read"},
		})
		if err != nil {
			w.t.Fatal(err)
		}
		it.SigningKeyID, it.Digest = key.ID, token.Digest(tok)
	}
	at := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: g.ns, Name: g.name, UID: types.UID("uid-" + g.name)},
		Spec: tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: tokensv1.DefaultIssuerName}, Tenant: g.tenant, SubTenant: g.subTenant, Role: g.role,
			Memberships: g.memberships},
		Status: tokensv1.APITokenStatus{Current: &it},
	}
	w.tokens[types.NamespacedName{Namespace: g.ns, Name: g.name}] = at
	w.idx.PutTokenSet(index.NewTokenSet(at))
	return tok
}

// revoke sets spec.revoked on an APIToken, as the validator's informer would see it.
func (w *world) revoke(ns, name string) {
	at := w.tokens[types.NamespacedName{Namespace: ns, Name: name}].DeepCopy()
	at.Spec.Revoked = true
	w.idx.PutTokenSet(index.NewTokenSet(at))
}

// protected is the handler behind the middleware: it answers with the identity.
var protected = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := IdentityFrom(r.Context())
	if !ok {
		http.Error(w, "no identity", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(id)
})

// answer is what a client saw.
type answer struct {
	status    int
	challenge string
	body      string
	identity  *Identity
}

// call sends GET / with tok (none when empty) to url.
func call(t testing.TB, url, tok string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), body: strings.TrimSpace(string(b))}
	if resp.StatusCode == http.StatusOK {
		a.identity = &Identity{}
		NewWithT(t).Expect(json.Unmarshal(b, a.identity)).To(Succeed())
	}
	return a
}

// serve runs handler on a real listener and returns its URL.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
