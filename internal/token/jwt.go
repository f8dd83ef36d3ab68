package token

import (
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenLength is the longest token Verify and ParseUnverified look at.
// Longer input is refused before any decoding, so a hostile client cannot
// make the validator base64- or JSON-decode megabytes per request.
const MaxTokenLength = 8 << 10

// MaxDepth bounds the depth claim: no chain of exchanges is longer, and a token
// claiming more is malformed.
const MaxDepth = 8

// DefaultLeeway is the clock skew tolerated on exp and nbf when
// Verifier.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// b64 rejects non-zero trailing bits, so every segment has exactly one
// encoding (base64 would still skip CR and LF; Verify refuses those first).
var b64 = base64.RawURLEncoding.Strict()

// Claims are the claims of a JWT minted by this package.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub: apitoken:<namespace>:<name>
	Audience  []string  // aud
	IssuedAt  time.Time // iat; zero means absent
	NotBefore time.Time // nbf; zero means absent
	ExpiresAt time.Time // exp; required
	ID        string    // jti: the token ID; required
	Tenant    string    // tenant
	SubTenant string    // sub_tenant
	Role      string    // role
	Scopes    []string  // scope, space-separated on the wire
	// Memberships make a multi-tenant token: each a tenant, its sub-tenant and the
	// role held there. Tenant, SubTenant and Role are then empty.
	Memberships []Membership // memberships
	// Parent is, for a token issued by token exchange, the ID of the listed token it
	// descends from (directly or through a chain of exchanges): it is accepted only
	// while that token would be. Empty for tokens the controller minted.
	Parent string // parent
	// Depth counts the exchanges between this token and its listed parent: 1 for a
	// token exchanged from a listed one, 0 for a listed token.
	Depth int // depth
	// KeyID is the kid header of a verified token. Verify fills it in;
	// MintJWT ignores it and uses the signing key's ID.
	KeyID string
}

// Membership is one tenant of a multi-tenant token.
type Membership struct {
	Tenant    string
	SubTenant string
	Role      string
}

// wireMembership is the JSON form of a Membership, named like the single-tenant claims.
type wireMembership struct {
	Tenant    string `json:"tenant,omitempty"`
	SubTenant string `json:"sub_tenant,omitempty"`
	Role      string `json:"role,omitempty"`
}

// wireClaims is the JSON form of Claims: encoding/json writes it when
// minting (through golang-jwt), parseClaims reads it when verifying.
type wireClaims struct {
	Issuer    string      `json:"iss,omitempty"`
	Subject   string      `json:"sub,omitempty"`
	Audience  audience    `json:"aud,omitempty"`
	ExpiresAt numericDate `json:"exp,omitzero"`
	IssuedAt  numericDate `json:"iat,omitzero"`
	NotBefore numericDate `json:"nbf,omitzero"`
	ID        string      `json:"jti,omitempty"`
	Tenant    string      `json:"tenant,omitempty"`
	SubTenant string      `json:"sub_tenant,omitempty"`
	Role      string      `json:"role,omitempty"`
	Scope     string      `json:"scope,omitempty"`
	Parent    string      `json:"parent,omitempty"`
	Depth     int         `json:"depth,omitempty"`
	// Memberships is last so that a token's other claims read as before.
	Memberships []wireMembership `json:"memberships,omitempty"`
}

// The jwt.Claims methods let golang-jwt carry wireClaims through
// jwt.NewWithClaims; its own validator is not used.

// GetExpirationTime implements jwt.Claims.
func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.jwt(), nil }

// GetIssuedAt implements jwt.Claims.
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.jwt(), nil }

// GetNotBefore implements jwt.Claims.
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.jwt(), nil }

// GetIssuer implements jwt.Claims.
func (c *wireClaims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *wireClaims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings(c.Audience), nil
}

// numericDate is a JWT NumericDate in whole seconds that remembers whether it
// was present, so that a missing exp is told apart from exp: 0.
type numericDate struct {
	sec int64
	set bool
}

func dateOf(t time.Time) numericDate {
	if t.IsZero() {
		return numericDate{}
	}
	return numericDate{sec: t.Unix(), set: true}
}

func (d numericDate) time() time.Time {
	if !d.set {
		return time.Time{}
	}
	return time.Unix(d.sec, 0)
}

func (d numericDate) jwt() *jwt.NumericDate {
	if !d.set {
		return nil
	}
	return jwt.NewNumericDate(d.time())
}

// IsZero makes omitzero leave out absent dates.
func (d numericDate) IsZero() bool { return !d.set }

// MarshalJSON writes whole seconds, as RFC 7519 recommends.
func (d numericDate) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, d.sec, 10), nil
}

// audience is the aud claim, which RFC 7519 allows as a string or an array.
// It is always written as an array; parseClaims reads both.
type audience []string

// MintJWT signs c with key. ExpiresAt and ID are required: the validator
// refuses tokens without exp and revokes by ID. Scopes must be non-empty and
// free of whitespace, since the scope claim joins them with spaces. Times are
// truncated to whole seconds.
func MintJWT(key *SigningKey, c Claims) (string, error) {
	if key == nil || key.Signer == nil {
		return "", errors.New("mint JWT: no signing key")
	}
	if err := checkKeyType(key.Algorithm, key.Signer.Public()); err != nil {
		return "", fmt.Errorf("mint JWT: %w", err)
	}
	if c.ExpiresAt.IsZero() {
		return "", errors.New("mint JWT: ExpiresAt is required")
	}
	if c.ID == "" {
		return "", errors.New("mint JWT: ID is required")
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\v\f") {
			return "", fmt.Errorf("mint JWT: scope %s is empty or contains whitespace", quoteShort(s))
		}
	}
	if slices.Contains(c.Audience, "") {
		return "", errors.New("mint JWT: empty audience")
	}
	if c.Depth < 0 || c.Depth > MaxDepth || (c.Depth > 0) != (c.Parent != "") {
		return "", errors.New("mint JWT: a parent needs a depth of 1 to MaxDepth, and a depth a parent")
	}
	if err := checkMemberships(&c); err != nil {
		return "", err
	}
	w := &wireClaims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  audience(c.Audience),
		ExpiresAt: dateOf(c.ExpiresAt),
		IssuedAt:  dateOf(c.IssuedAt),
		NotBefore: dateOf(c.NotBefore),
		ID:        c.ID,
		Tenant:    c.Tenant,
		SubTenant: c.SubTenant,
		Role:      c.Role,
		Scope:     strings.Join(c.Scopes, " "),
		Parent:    c.Parent,
		Depth:     c.Depth,
	}
	for _, m := range c.Memberships {
		w.Memberships = append(w.Memberships, wireMembership(m))
	}
	t := jwt.NewWithClaims(key.Algorithm.method(), w)
	t.Header["kid"] = key.ID
	s, err := t.SignedString(key.Signer)
	if err != nil {
		return "", fmt.Errorf("mint JWT: %w", err)
	}
	return s, nil
}

// checkMemberships refuses memberships a multi-tenant token cannot carry: beside a
// tenant, sub-tenant or role of its own, without a tenant or a role, or a tenant twice.
// A verifier could not tell which membership a request selects.
func checkMemberships(c *Claims) error {
	if len(c.Memberships) == 0 {
		return nil
	}
	if c.Tenant != "" || c.SubTenant != "" || c.Role != "" {
		return errors.New("mint JWT: memberships replace tenant, sub-tenant and role")
	}
	for i, m := range c.Memberships {
		if m.Tenant == "" || m.Role == "" {
			return fmt.Errorf("mint JWT: membership %d has no tenant or no role", i)
		}
		for _, o := range c.Memberships[:i] {
			if o.Tenant == m.Tenant {
				return fmt.Errorf("mint JWT: tenant %s has two memberships", quoteShort(m.Tenant))
			}
		}
	}
	return nil
}

// LooksLikeJWT reports whether tok has the three-segment shape of a JWS
// (two dots); opaque tokens have none. It says nothing about validity.
func LooksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2
}

// Verifier checks JWTs against a key set and the expected issuer and
// audiences. It is safe for concurrent use as long as its fields are not
// changed.
type Verifier struct {
	// Keys finds the public key for the kid header; a nil Keys refuses all.
	Keys KeySet
	// Issuer is the expected iss; empty means iss is not checked (the key
	// set still pins who signed).
	Issuer string
	// Audiences: when non-empty, a token must carry at least one of them.
	Audiences []string
	// Leeway is the clock skew allowed on exp and nbf: 0 means
	// DefaultLeeway, negative means none.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// header is what Verify needs from the JOSE header. The members that would
// let a token choose its own key (jku, x5u, jwk, x5c) or demand extensions
// (crit, which golang-jwt ignores and we understand none of) are only noted.
type header struct {
	alg, kid  string
	forbidden string // name of the first forbidden member present
}

// Verify checks tok and returns its claims, or an *Error whose Reason says
// why it was refused. The checks run in this order, and the first failure
// decides the reason: length, structure and header (Malformed), alg none,
// forbidden headers, kid, alg against the key's algorithm, signature, then
// the claims (exp present, exp, nbf, iss, aud). No claim is looked at before
// the signature has been verified.
//
// It parses the token itself (see json.go) rather than through jwt.Parser,
// which decodes into maps; the signature is still checked by golang-jwt's
// SigningMethod.
func (v *Verifier) Verify(tok string) (*Claims, error) {
	if len(tok) > MaxTokenLength {
		return nil, refuse(ReasonTooLarge, fmt.Sprintf("longer than %d bytes", MaxTokenLength))
	}
	seg, err := splitJWT(tok)
	if err != nil {
		return nil, err
	}
	// One buffer for all three decoded segments: they are never longer
	// than the token.
	buf := make([]byte, 0, b64.DecodedLen(len(tok)))

	var h header
	hb, ok := decodeSegment(&buf, seg.header)
	if !ok || parseHeader(string(hb), &h) != nil {
		return nil, refuse(ReasonMalformed, "header is not base64url JSON")
	}
	if strings.EqualFold(h.alg, "none") {
		return nil, refuse(ReasonAlgNone, "unsigned tokens are not accepted")
	}
	if h.alg == "" {
		return nil, refuse(ReasonMalformed, "header has no alg")
	}
	if h.forbidden != "" {
		return nil, refuse(ReasonForbiddenHeader, "header "+h.forbidden+" is not allowed")
	}
	if h.kid == "" {
		return nil, refuse(ReasonUnknownKey, "header has no kid")
	}
	var (
		pub crypto.PublicKey
		alg Algorithm
	)
	ok = false
	if v.Keys != nil {
		pub, alg, ok = v.Keys.PublicKey(h.kid)
	}
	if !ok {
		return nil, refuse(ReasonUnknownKey, "no key with kid "+quoteShort(h.kid))
	}
	// The key decides the algorithm, never the token: this is what stops
	// HS256 tokens "signed" with a public key used as HMAC secret.
	if Algorithm(h.alg) != alg {
		return nil, refuse(ReasonAlgMismatch, "alg "+quoteShort(h.alg)+" but key "+quoteShort(h.kid)+" is "+string(alg))
	}
	sig, ok := decodeSegment(&buf, seg.signature)
	if !ok {
		return nil, refuse(ReasonMalformed, "signature is not base64url")
	}
	if err := verifySignature(alg, pub, seg.signingInput, sig); err != nil {
		return nil, refuse(ReasonBadSignature, "signature does not verify with key "+quoteShort(h.kid))
	}

	var w wireClaims
	pb, ok := decodeSegment(&buf, seg.payload)
	if !ok || parseClaims(string(pb), &w) != nil {
		return nil, refuse(ReasonMalformed, "claims are not base64url JSON of the expected types")
	}
	if err := v.checkClaims(&w); err != nil {
		return nil, err
	}
	return &Claims{
		Issuer:      w.Issuer,
		Subject:     w.Subject,
		Audience:    []string(w.Audience),
		IssuedAt:    w.IssuedAt.time(),
		NotBefore:   w.NotBefore.time(),
		ExpiresAt:   w.ExpiresAt.time(),
		ID:          w.ID,
		Tenant:      w.Tenant,
		SubTenant:   w.SubTenant,
		Role:        w.Role,
		Scopes:      scopes(w.Scope),
		Parent:      w.Parent,
		Depth:       w.Depth,
		Memberships: memberships(w.Memberships),
		KeyID:       h.kid,
	}, nil
}

// memberships converts the memberships claim; none is nil.
func memberships(w []wireMembership) []Membership {
	if len(w) == 0 {
		return nil
	}
	out := make([]Membership, len(w))
	for i, m := range w {
		out[i] = Membership(m)
	}
	return out
}

func (v *Verifier) checkClaims(w *wireClaims) *Error {
	if !w.ExpiresAt.set {
		return refuse(ReasonMissingExpiry, "claims have no exp")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now()
	leeway := v.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	// RFC 7519: the token is valid strictly before exp.
	if exp := w.ExpiresAt.time(); !t.Before(exp.Add(leeway)) {
		return refuse(ReasonExpired, "expired at "+exp.UTC().Format(time.RFC3339))
	}
	if nbf := w.NotBefore.time(); w.NotBefore.set && t.Add(leeway).Before(nbf) {
		return refuse(ReasonNotYetValid, "not valid before "+nbf.UTC().Format(time.RFC3339))
	}
	if v.Issuer != "" && w.Issuer != v.Issuer {
		return refuse(ReasonWrongIssuer, "iss "+quoteShort(w.Issuer)+", want "+quoteShort(v.Issuer))
	}
	if len(v.Audiences) > 0 && !slices.ContainsFunc(w.Audience, func(a string) bool { return slices.Contains(v.Audiences, a) }) {
		return refuse(ReasonWrongAudience, "aud holds none of the expected audiences")
	}
	return nil
}

// scopes splits the scope claim; no scope is nil, as it was when minted.
func scopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

// verifySignature checks sig over signingInput with golang-jwt's
// implementation of alg. Verify calls it, and the Wycheproof tests run their
// vectors through it, so the vectors test exactly the path tokens take.
func verifySignature(alg Algorithm, pub crypto.PublicKey, signingInput string, sig []byte) error {
	m := alg.method()
	if m == nil {
		return fmt.Errorf("unsupported algorithm %s", quoteShort(string(alg)))
	}
	return m.Verify(signingInput, sig, pub)
}

// ParseUnverified returns the kid header and iss claim of tok WITHOUT
// checking anything else, so that a verifier holding a cached JWKS (the
// workload middleware's Offline) can tell whether it must fetch the keys again
// before it verifies. (The validator needs no such step: its key set spans
// every issuer and Verify finds the key by kid.) Never trust the result for
// anything more. It is length-capped like Verify.
func ParseUnverified(tok string) (kid string, iss string, err error) {
	if len(tok) > MaxTokenLength {
		return "", "", refuse(ReasonTooLarge, fmt.Sprintf("longer than %d bytes", MaxTokenLength))
	}
	seg, e := splitJWT(tok)
	if e != nil {
		return "", "", e
	}
	buf := make([]byte, 0, b64.DecodedLen(len(seg.signingInput)))
	var (
		h header
		w wireClaims
	)
	hb, ok := decodeSegment(&buf, seg.header)
	if !ok || parseHeader(string(hb), &h) != nil {
		return "", "", refuse(ReasonMalformed, "header is not base64url JSON")
	}
	pb, ok := decodeSegment(&buf, seg.payload)
	if !ok || parseClaims(string(pb), &w) != nil {
		return "", "", refuse(ReasonMalformed, "claims are not base64url JSON")
	}
	return h.kid, w.Issuer, nil
}

// segments are the parts of a compact JWS, as substrings of the token.
type segments struct {
	header, payload, signature string
	signingInput               string // header.payload, what the signature covers
}

func splitJWT(tok string) (segments, *Error) {
	h, rest, ok1 := strings.Cut(tok, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return segments{}, refuse(ReasonMalformed, "not three dot-separated segments")
	}
	if h == "" || p == "" {
		return segments{}, refuse(ReasonMalformed, "empty header or claims")
	}
	// base64 skips CR and LF, which would let one token have many
	// spellings; refuse them outright.
	if strings.ContainsAny(tok, "\r\n") {
		return segments{}, refuse(ReasonMalformed, "line break in token")
	}
	return segments{header: h, payload: p, signature: s, signingInput: tok[:len(h)+1+len(p)]}, nil
}

// decodeSegment appends the decoded seg to *buf and returns the new bytes.
// The caller sizes *buf for all segments, so this never reallocates.
func decodeSegment(buf *[]byte, seg string) ([]byte, bool) {
	b, err := b64.AppendDecode(*buf, []byte(seg))
	if err != nil {
		return nil, false
	}
	out := b[len(*buf):]
	*buf = b
	return out, true
}
