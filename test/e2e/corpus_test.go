package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// badRequest is one request that must not be allowed. Exactly one way of sending it
// is set: raw bytes over TCP; a body for /v1/validate or TokenReviews; headers for
// /authorize; or else a token asked about through endpoint.
type badRequest struct {
	category string
	endpoint endpoint
	token    string
	tenant   string
	role     string
	// query replaces the query of /authorize when set.
	query string
	// header, when set, is sent to /authorize as is (no Authorization of its own).
	header http.Header
	// path and body, when set, are POSTed as is.
	path string
	body []byte
	// raw, when set, is written to a TCP connection as is.
	raw []byte
}

// goodTokens are the valid tokens the corpus is made from, and what forging needs.
type goodTokens struct {
	ns                   string
	jwt, jwtID           string // role editor
	admin, adminID       string // role admin
	opaque, opaqueID     string // role editor
	revoked, deleted     string // a JWT of a revoked APIToken, an opaque token of a deleted one
	key                  *token.SigningKey
	claims, adminClaims  map[string]any // the payloads of jwt and admin
	opaquePrefix         string
	foreign              *ecdsa.PrivateKey
	foreignKid, adminSub string

	rawOnce sync.Once
	raw     [][]byte
}

// generator makes a bad request of one category.
type generator struct {
	category string
	make     func(r *rand.Rand, g *goodTokens) badRequest
}

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// tokenEndpoints are the endpoints a bad token is asked about through, in turn.
var tokenEndpoints = []endpoint{authorizeEndpoint, validateEndpoint, tokenReviewEndpoint}

// requirementEndpoints check a tenant and role; a TokenReview does not.
var requirementEndpoints = []endpoint{authorizeEndpoint, validateEndpoint}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func tokenCase(category string, r *rand.Rand, g *goodTokens, tok string) badRequest {
	return badRequest{category: category, endpoint: pick(r, tokenEndpoints), token: tok, tenant: g.ns, role: "viewer"}
}

// flip replaces one character of tok, never a dot, by another of the base64url
// alphabet (or of the opaque alphabet, which it is a superset of, but for _).
func flip(r *rand.Rand, tok string) string {
	b := []byte(tok)
	for range 100 {
		i := r.IntN(len(b))
		if b[i] == '.' || b[i] == '_' {
			continue
		}
		c := b64url[r.IntN(len(b64url))]
		if c == b[i] || (c == '_' || c == '-') && !strings.Contains(tok, ".") {
			continue
		}
		b[i] = c
		return string(b)
	}
	return tok + "x"
}

func randomString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func b64json(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeClaims(jwtTok string) map[string]any {
	parts := strings.Split(jwtTok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		panic(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		panic(err)
	}
	return c
}

func with(c map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// sign signs claims with key under the given header members (alg is set by method).
func sign(method jwt.SigningMethod, key any, header map[string]any, claims map[string]any) string {
	t := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	for k, v := range header {
		t.Header[k] = v
	}
	s, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// signReal signs with the issuer's current key, the way the manager does, under
// extra header members.
func (g *goodTokens) signReal(claims map[string]any, extraHeader ...any) string {
	h := map[string]any{"kid": g.key.ID, "typ": "JWT"}
	for i := 0; i < len(extraHeader); i += 2 {
		h[extraHeader[i].(string)] = extraHeader[i+1]
	}
	return sign(jwt.SigningMethodES256, g.key.Signer, h, claims)
}

func newForeignKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
}

// rawRequests are requests no HTTP client library would send.
func (g *goodTokens) rawRequests() [][]byte {
	g.rawOnce.Do(func() { g.raw = rawRequests(g) })
	return g.raw
}

func rawRequests(g *goodTokens) [][]byte {
	auth := "/authorize?tenant=" + g.ns
	return [][]byte{
		[]byte("GARBAGE\r\n\r\n"),
		[]byte("GET " + auth + "\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x00" + g.jwt + "\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe" + g.opaque[2:] + "\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\nAuthorization Bearer " + g.jwt + "\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + g.jwt[:len(g.jwt)/2] + "\r\n " + g.jwt[len(g.jwt)/2:] + "\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + g.revoked + "\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/9.9\r\nHost: x\r\nAuthorization: Bearer " + flip(rand.New(rand.NewPCG(1, 2)), g.jwt) + "\r\n\r\n"),
		[]byte("POST " + validatorapi.PathValidate + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"token\":\"" + g.jwt[:20]),
		[]byte("POST " + validatorapi.PathValidate + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
		[]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		[]byte("GET " + auth + " HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("a", 1000)+"\r\n", 80) + "Authorization: Bearer " + g.jwt + "\r\n\r\n"),
	}
}

// generators are the categories of bad input, each made afresh from the good tokens
// and the random source for every request.
var generators = []generator{
	{"garbage", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("garbage", r, g, randomString(r, "!#$%&'()*+,-./0123456789:;<=>?@ABCXYZabcxyz[]^_`{|}~", 1+r.IntN(300)))
	}},
	{"garbage-jwt-shape", func(r *rand.Rand, g *goodTokens) badRequest {
		seg := func() string { return randomString(r, b64url, r.IntN(120)) }
		return tokenCase("garbage-jwt-shape", r, g, "eyJ"+seg()+"."+seg()+"."+seg())
	}},
	{"truncated-jwt", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("truncated-jwt", r, g, g.jwt[:1+r.IntN(len(g.jwt)-1)])
	}},
	{"truncated-opaque", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("truncated-opaque", r, g, g.opaque[:1+r.IntN(len(g.opaque)-1)])
	}},
	{"flipped-jwt", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("flipped-jwt", r, g, flip(r, g.jwt))
	}},
	{"flipped-opaque", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("flipped-opaque", r, g, flip(r, g.opaque))
	}},
	{"extended", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("extended", r, g, pick(r, []string{g.jwt, g.opaque})+pick(r, []string{".", "x", "=", "..", ".e30", "_", "A"}))
	}},
	{"alg-none", func(r *rand.Rand, g *goodTokens) badRequest {
		alg := pick(r, []string{"none", "None", "NONE", ""})
		tok := b64json(map[string]any{"alg": alg, "typ": "JWT", "kid": g.key.ID}) + "." + b64json(g.claims) + "."
		return tokenCase("alg-none", r, g, tok)
	}},
	{"hs256-key-confusion", func(r *rand.Rand, g *goodTokens) badRequest {
		pub, _ := json.Marshal(g.key.PublicJWK())
		return tokenCase("hs256-key-confusion", r, g, sign(jwt.SigningMethodHS256, pub, map[string]any{"kid": g.key.ID}, g.claims))
	}},
	{"foreign-key-same-kid", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("foreign-key-same-kid", r, g, sign(jwt.SigningMethodES256, g.foreign, map[string]any{"kid": g.key.ID}, g.claims))
	}},
	{"foreign-key", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("foreign-key", r, g, sign(jwt.SigningMethodES256, g.foreign, map[string]any{"kid": g.foreignKid}, g.claims))
	}},
	{"unknown-jti", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("unknown-jti", r, g, g.signReal(with(g.claims, "jti", token.NewTokenID())))
	}},
	{"forged-role", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("forged-role", r, g, g.signReal(with(g.claims, "role", "admin")))
	}},
	{"forged-tenant", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("forged-tenant", r, g, g.signReal(with(g.claims, "tenant", "other")))
	}},
	{"forged-subject", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("forged-subject", r, g, g.signReal(with(g.claims, "sub", g.adminSub)))
	}},
	{"swapped-jti", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("swapped-jti", r, g, g.signReal(with(g.adminClaims, "jti", g.jwtID)))
	}},
	{"expired", func(r *rand.Rand, g *goodTokens) badRequest {
		past := time.Now().Add(-time.Hour).Unix()
		return tokenCase("expired", r, g, g.signReal(with(g.claims, "exp", past, "iat", past-60, "nbf", past-60)))
	}},
	{"not-yet-valid", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("not-yet-valid", r, g, g.signReal(with(g.claims, "nbf", time.Now().Add(time.Hour).Unix())))
	}},
	{"no-expiry", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("no-expiry", r, g, g.signReal(with(g.claims, "exp", nil)))
	}},
	{"forbidden-header", func(r *rand.Rand, g *goodTokens) badRequest {
		member := pick(r, []string{"jku", "x5u", "jwk", "x5c", "crit"})
		var v any = "https://attacker.invalid/keys"
		if member == "crit" {
			v = []string{"exp"}
		}
		return tokenCase("forbidden-header", r, g, g.signReal(g.claims, member, v))
	}},
	{"revoked", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("revoked", r, g, g.revoked)
	}},
	{"deleted", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("deleted", r, g, g.deleted)
	}},
	{"opaque-wrong-secret", func(r *rand.Rand, g *goodTokens) badRequest {
		o, err := token.MintOpaque(g.opaquePrefix, g.opaqueID)
		if err != nil {
			panic(err)
		}
		return tokenCase("opaque-wrong-secret", r, g, o.Token)
	}},
	{"opaque-unknown-id", func(r *rand.Rand, g *goodTokens) badRequest {
		o, err := token.MintOpaque(g.opaquePrefix, token.NewTokenID())
		if err != nil {
			panic(err)
		}
		return tokenCase("opaque-unknown-id", r, g, o.Token)
	}},
	{"oversized-token", func(r *rand.Rand, g *goodTokens) badRequest {
		return tokenCase("oversized-token", r, g, g.jwt+"."+randomString(r, b64url, token.MaxTokenLength+r.IntN(50<<10)))
	}},
	{"oversized-header", func(r *rand.Rand, g *goodTokens) badRequest {
		// The validator reads at most 64KiB of headers; net/http lets up to 8KiB
		// more through (4KiB of slack, and on a kept-alive connection the 4KiB it
		// buffered while waiting for the request). Past that, a valid token in a
		// request too large must still be refused: 431.
		h := http.Header{"Authorization": {"Bearer " + g.jwt}, "X-Filler": {strings.Repeat("a", 64<<10+8<<10+r.IntN(64<<10))}}
		return badRequest{category: "oversized-header", endpoint: authorizeEndpoint, header: h, query: "tenant=" + g.ns}
	}},
	{"wrong-tenant", func(r *rand.Rand, g *goodTokens) badRequest {
		return badRequest{category: "wrong-tenant", endpoint: pick(r, requirementEndpoints), token: pick(r, []string{g.jwt, g.opaque, g.admin}), tenant: pick(r, []string{"other", "default", "kube-system"})}
	}},
	{"wrong-role", func(r *rand.Rand, g *goodTokens) badRequest {
		return badRequest{category: "wrong-role", endpoint: pick(r, requirementEndpoints), token: pick(r, []string{g.jwt, g.opaque}), tenant: g.ns, role: pick(r, []string{"admin", "owner"})}
	}},
	{"bad-requirement", func(r *rand.Rand, g *goodTokens) badRequest {
		return badRequest{category: "bad-requirement", endpoint: pick(r, requirementEndpoints), token: g.jwt,
			tenant: pick(r, []string{"Bad_Tenant", "../" + g.ns, strings.Repeat("a", 64), g.ns + "\x00", "ünïcode"}), role: "viewer"}
	}},
	{"repeated-query", func(r *rand.Rand, g *goodTokens) badRequest {
		h := http.Header{"Authorization": {"Bearer " + g.jwt}}
		q := pick(r, []string{"tenant=other&tenant=" + g.ns, "tenant=" + g.ns + "&role=admin&role=viewer", "tenant=other", "role=admin"})
		if r.IntN(2) == 0 {
			h.Set(validatorapi.HeaderRequiredTenant, "other")
			q = "role=viewer"
		}
		return badRequest{category: "repeated-query", endpoint: authorizeEndpoint, header: h, query: q}
	}},
	{"bad-scheme", func(r *rand.Rand, g *goodTokens) badRequest {
		v := pick(r, []string{"Basic " + g.jwt, "Bearer", "Token " + g.opaque, "Bearer" + g.jwt, "Bearer\t" + g.jwt, "JWT " + g.jwt, g.jwt, "Bearer " + g.revoked + " " + g.jwt})
		return badRequest{category: "bad-scheme", endpoint: authorizeEndpoint, header: http.Header{"Authorization": {v}}, query: "tenant=" + g.ns}
	}},
	{"non-ascii", func(r *rand.Rand, g *goodTokens) badRequest {
		tok := pick(r, []string{g.jwt[:10] + "é" + g.jwt[11:], "🔑" + g.opaque, "apt_Ω_" + g.opaqueID, strings.Repeat("\u202e", 5) + g.jwt})
		return badRequest{category: "non-ascii", endpoint: validateEndpoint, token: tok, tenant: g.ns}
	}},
	{"validate-body", func(r *rand.Rand, g *goodTokens) badRequest {
		good, _ := json.Marshal(validatorapi.ValidateRequest{Token: g.jwt, Requirement: validatorapi.Requirement{Tenant: "other"}})
		full, _ := json.Marshal(validatorapi.ValidateRequest{Token: g.jwt})
		body := pick(r, [][]byte{
			full[:r.IntN(len(full)-1)],
			good,
			[]byte(`{"token": 42}`),
			[]byte(`{"token": ["` + g.jwt + `"]}`),
			[]byte(`[]`),
			[]byte(`null`),
			bytes.Repeat([]byte(`{"token":`), 1000),
			append([]byte(`{"token":"`+g.revoked+`","pad":"`), append(bytes.Repeat([]byte("a"), 70<<10), []byte(`"}`)...)...),
			[]byte(randomString(r, "{}[]\":,abc", 200)),
		})
		return badRequest{category: "validate-body", endpoint: validateEndpoint, path: validatorapi.PathValidate, body: body}
	}},
	{"tokenreview-body", func(r *rand.Rand, g *goodTokens) badRequest {
		review := func(apiVersion, kind, tok string) []byte {
			b, _ := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": map[string]any{"token": tok}})
			return b
		}
		full := review("authentication.k8s.io/v1", "TokenReview", g.jwt)
		body := pick(r, [][]byte{
			review("authentication.k8s.io/v1beta1", "TokenReview", g.jwt),
			review("authentication.k8s.io/v1", "SubjectAccessReview", g.jwt),
			review("", "", g.jwt),
			review("authentication.k8s.io/v1", "TokenReview", g.revoked),
			review("authentication.k8s.io/v1", "TokenReview", ""),
			full[:r.IntN(len(full)-1)],
			[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":{"a":1}}}`),
			[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + g.jwt + `","audiences":["elsewhere"]}}`),
		})
		return badRequest{category: "tokenreview-body", endpoint: tokenReviewEndpoint, path: validatorapi.PathTokenReview, body: body}
	}},
	{"raw", func(r *rand.Rand, g *goodTokens) badRequest {
		return badRequest{category: "raw", endpoint: authorizeEndpoint, raw: pick(r, g.rawRequests())}
	}},
}

// describe says what a bad request was, for a failure message, without the token.
func (b badRequest) describe() string {
	return fmt.Sprintf("%s via %s", b.category, b.endpoint)
}
