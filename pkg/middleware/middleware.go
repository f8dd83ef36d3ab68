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
//     Each request tells the validator the end client's address in X-Forwarded-For,
//     so that its failed-attempt limit and its audit see the client rather than this
//     service; the validator believes it only from the callers it trusts
//     (--trusted-proxies).
//   - Offline verifies JWTs itself against the issuer's JWKS, fetched from a URL. It
//     needs no call per request but cannot see a revocation before the token expires,
//     cannot check opaque tokens, and knows the role graph only if it is given one.
package middleware

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
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
	// Tenant, SubTenant and Role are what the token was minted for; for a token of
	// several tenants, those of the membership the required tenant selected, and
	// empty when the requirement selected none.
	Tenant, SubTenant, Role string
	// Roles are Role and every role it includes.
	Roles []string
	// Memberships are, for a token of several tenants, all of them.
	Memberships []validatorapi.Membership
	// Scopes and Audiences are those the token carries.
	Scopes, Audiences []string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

// HasRole reports whether the identity's roles include role.
func (id *Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

type identityKey struct{}

// forwardedForKey holds, in the context a Middleware passes its Checker, the
// X-Forwarded-For value that names the request's client (bearer.ForwardedFor).
type forwardedForKey struct{}

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
// or a DNS label, as tenants, sub-tenants and roles are. It is the validator's, so
// that both modes decide as the validator does.
type Requirement = validatorapi.Requirement

// Decision is a Checker's answer.
type Decision struct {
	// Status is the HTTP status to answer: 200, 401, 403, 404 (or the configured
	// tenant-mismatch status) or 429.
	Status int
	// Reason is one of validatorapi's Reason words; Message a sentence safe to send
	// the client.
	Reason, Message string
	// RetryAfter is set with 429.
	RetryAfter time.Duration
	// Identity is set when the token was authenticated, also when it was then refused
	// a tenant or role.
	Identity *Identity
}

// Allowed reports whether the request may proceed.
func (d *Decision) Allowed() bool { return d.Status == http.StatusOK }

// Clock tells the time to the checkers' caches and expiry rules; tests pass a fake.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

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
	opts  Options
	creds bearer.Credentials
}

// New returns a Middleware. It fails on a missing Checker or an invalid Requirement.
func New(opts Options) (*Middleware, error) {
	if opts.Checker == nil {
		return nil, fmt.Errorf("middleware: no Checker")
	}
	if err := opts.Requirement.Validate(); err != nil {
		return nil, fmt.Errorf("middleware: %w", err)
	}
	return &Middleware{opts: opts, creds: bearer.Credentials{Headers: opts.TokenHeaders}}, nil
}

// Handler protects next with the Middleware's Requirement.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return m.handler(m.opts.Requirement, next)
}

// Require protects next with req. Like http.ServeMux with a bad pattern, it panics on
// an invalid requirement, since that is a mistake in the program, found at start-up.
func (m *Middleware) Require(req Requirement, next http.Handler) http.Handler {
	if err := req.Validate(); err != nil {
		panic(fmt.Errorf("middleware: %w", err))
	}
	return m.handler(req, next)
}

func (m *Middleware) handler(req Requirement, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := m.creds.Token(r)
		var d Decision
		switch {
		case err != nil:
			d = Decision{Status: http.StatusBadRequest, Reason: validatorapi.ReasonBadRequest, Message: err.Error()}
		case tok == "":
			d = Decision{Status: http.StatusUnauthorized, Reason: validatorapi.ReasonMissing, Message: validatorapi.Describe(validatorapi.ReasonMissing)}
		default:
			// The validator counts failed attempts per client: tell it who the client
			// is, or everyone behind this service shares one budget.
			ctx := context.WithValue(r.Context(), forwardedForKey{}, bearer.ForwardedFor(r))
			if d, err = m.opts.Checker.Check(ctx, tok, req); err != nil {
				if m.opts.OnError != nil {
					m.opts.OnError(r, err)
				}
				bearer.Refuse(w, r, http.StatusServiceUnavailable, validatorapi.ReasonUnavailable, validatorapi.Describe(validatorapi.ReasonUnavailable), 0)
				return
			}
		}
		if d.Allowed() && d.Identity != nil {
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), d.Identity)))
			return
		}
		if d.Allowed() {
			// A Checker that allows without saying whom is broken: refuse.
			d = Decision{Status: http.StatusUnauthorized, Reason: "NoIdentity", Message: validatorapi.Describe("NoIdentity")}
		}
		bearer.Refuse(w, r, d.Status, d.Reason, d.Message, d.RetryAfter)
	})
}
