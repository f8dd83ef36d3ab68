// Package middleware protects net/http handlers with the tokens of apitoken-operator.
//
// A Middleware takes the bearer token of each request, has a Checker decide whether
// it is valid for the required tenant, sub-tenant and role, and either answers the
// way the validator does (401 for a missing or bad token, 403 for a role too low, 404
// for another tenant's token, 429 when rate limited, 503 when it cannot tell) or calls
// the next handler with the token's Identity in the request context.
//
// Two Checkers exist:
//   - Validator asks the validator service (POST /v1/validate). It knows everything
//     the cluster knows: revocation, retirement after a rotation, opaque tokens and
//     the issuer's role graph. Answers are cached briefly, keyed by a hash of the token.
//   - Offline verifies JWTs itself against the issuer's JWKS, fetched from a URL. It
//     needs no call per request but cannot see a revocation before the token expires,
//     cannot check opaque tokens, and knows the role graph only if it is given one.
package middleware

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
)

// Identity is who an accepted token identifies.
type Identity struct {
	// TokenID is the token's public ID (the JWT jti), safe to log.
	TokenID string
	// Subject is "apitoken:<namespace>:<name>", the APIToken that holds the token.
	Subject string
	// Namespace and Name are those of the APIToken.
	Namespace, Name string
	// Issuer is, in validator mode, the ClusterTokenIssuer's name; offline, the iss
	// claim.
	Issuer string
	// Tenant, SubTenant and Role are what the token was minted for.
	Tenant, SubTenant, Role string
	// Roles are Role and every role it includes.
	Roles []string
	// Scopes and Audiences are those the token carries.
	Scopes, Audiences []string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

// HasRole reports whether the identity's roles include role.
func (id *Identity) HasRole(role string) bool {
	for _, r := range id.Roles {
		if r == role {
			return true
		}
	}
	return false
}

type identityKey struct{}

// IdentityFrom returns the identity a Middleware put in ctx.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

// WithIdentity returns a copy of ctx holding id, for tests of handlers that read it.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Requirement is what a request must be allowed: each field is empty (anything goes)
// or a DNS label, as tenants, sub-tenants and roles are.
type Requirement struct {
	Tenant    string `json:"tenant,omitempty"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role,omitempty"`
}

// Validate reports a field that is neither empty nor a DNS label: no token can match
// it, so it is a configuration mistake.
func (r Requirement) Validate() error {
	for _, f := range []struct{ name, value string }{{"tenant", r.Tenant}, {"subTenant", r.SubTenant}, {"role", r.Role}} {
		if f.value != "" && len(validation.IsDNS1123Label(f.value)) > 0 {
			return fmt.Errorf("middleware: required %s %q is not a DNS label", f.name, f.value)
		}
	}
	return nil
}

// Reasons of decisions, as the validator names them. Refusals of the token itself
// carry the token package's reasons (Expired, BadSignature, UnknownKey, ...).
const (
	ReasonAllowed           = "Allowed"
	ReasonMissing           = "Missing"
	ReasonTenantMismatch    = "TenantMismatch"
	ReasonSubTenantMismatch = "SubTenantMismatch"
	ReasonInsufficientRole  = "InsufficientRole"
)

// Decision is a Checker's answer.
type Decision struct {
	// Status is the HTTP status to answer: 200, 401, 403, 404 (or the configured
	// tenant-mismatch status) or 429.
	Status int
	// Reason is a stable CamelCase word; Message a sentence safe to send the client.
	Reason, Message string
	// RetryAfter is set with 429.
	RetryAfter time.Duration
	// Identity is set when the token was authenticated, also when it was then refused
	// a tenant or role.
	Identity *Identity
}

// Allowed reports whether the request may proceed.
func (d *Decision) Allowed() bool { return d.Status == http.StatusOK }

// Checker decides whether a token is valid for a requirement. An error means it
// could not decide (the validator or the JWKS is unreachable); the request is then
// refused with 503, never let through.
type Checker interface {
	Check(ctx context.Context, token string, req Requirement) (Decision, error)
}

// Options configure a Middleware.
type Options struct {
	// Checker decides. Required.
	Checker Checker
	// Requirement is what Handler requires; Require sets one per handler.
	Requirement Requirement
	// TokenHeaders are headers whose whole value is a token (e.g. X-Api-Key), looked
	// at after Authorization: Bearer.
	TokenHeaders []string
	// OnError, when set, is told when the Checker failed. The error holds no token.
	OnError func(r *http.Request, err error)
}

// Middleware checks the token of each request before the handler runs.
type Middleware struct {
	opts Options
}

// New returns a Middleware. It fails on a missing Checker or an invalid Requirement.
func New(opts Options) (*Middleware, error) {
	if opts.Checker == nil {
		return nil, fmt.Errorf("middleware: no Checker")
	}
	if err := opts.Requirement.Validate(); err != nil {
		return nil, err
	}
	return &Middleware{opts: opts}, nil
}

// Handler protects next with the Middleware's Requirement.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return m.handler(m.opts.Requirement, next)
}

// Require protects next with req. Like http.ServeMux with a bad pattern, it panics on
// an invalid requirement, since that is a mistake in the program, found at start-up.
func (m *Middleware) Require(req Requirement, next http.Handler) http.Handler {
	if err := req.Validate(); err != nil {
		panic(err)
	}
	return m.handler(req, next)
}

func (m *Middleware) handler(req Requirement, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := m.credentials(r)
		var d Decision
		if tok == "" {
			d = Decision{Status: http.StatusUnauthorized, Reason: ReasonMissing, Message: "no token in the request"}
		} else {
			var err error
			if d, err = m.opts.Checker.Check(r.Context(), tok, req); err != nil {
				if m.opts.OnError != nil {
					m.opts.OnError(r, err)
				}
				w.Header().Set("Cache-Control", "no-store")
				http.Error(w, "the token cannot be checked now", http.StatusServiceUnavailable)
				return
			}
		}
		if d.Allowed() && d.Identity != nil {
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), d.Identity)))
			return
		}
		if d.Allowed() {
			// A Checker that allows without saying whom is broken: refuse.
			d = Decision{Status: http.StatusUnauthorized, Reason: "NoIdentity", Message: "the token is not valid"}
		}
		refuse(w, &d)
	})
}

// credentials finds the token: Authorization: Bearer, then the token headers.
func (m *Middleware) credentials(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	for _, name := range m.opts.TokenHeaders {
		if v := r.Header.Get(name); v != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// refuse answers a refusal as the validator's /authorize does (RFC 6750 challenges).
func refuse(w http.ResponseWriter, d *Decision) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	msg := d.Message
	if msg == "" {
		msg = http.StatusText(d.Status)
	}
	switch d.Status {
	case http.StatusUnauthorized:
		// RFC 6750 §3.1: a request without credentials gets no error code.
		if d.Reason == ReasonMissing {
			bearer.SetChallenge(h, "", "")
		} else {
			bearer.SetChallenge(h, bearer.InvalidToken, msg)
		}
	case http.StatusForbidden:
		if d.Reason == ReasonInsufficientRole {
			bearer.SetChallenge(h, bearer.InsufficientScope, msg)
		}
	case http.StatusTooManyRequests:
		bearer.SetRetryAfter(h, d.RetryAfter)
	}
	http.Error(w, msg, d.Status)
}
