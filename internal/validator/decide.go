package validator

import (
	"net/http"
	"time"

	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Results of a decision, the result label of apitoken_validator_decisions_total.
const (
	ResultAllowed         = "allowed"
	ResultUnauthenticated = "unauthenticated"
	ResultForbidden       = "forbidden"
	ResultNotFound        = "not_found"
	ResultRateLimited     = "rate_limited"
	ResultBadRequest      = "bad_request"
)

// Decision is the validator's answer to one request.
type Decision struct {
	// Status is the HTTP status of the answer: 200, 400, 401, 403, 404 (or the
	// configured tenant-mismatch status) or 429.
	Status int
	// Result is the class of the answer, Reason why.
	Result string
	Reason string
	// Description is a fixed sentence, safe to send to the client.
	Description string
	// RetryAfter is set with 429.
	RetryAfter time.Duration
	// Identity is set once the token was authenticated, also when it was then
	// refused a tenant or role.
	Identity *Identity
	// Membership is, for a token of several tenants, the membership of
	// Identity.Memberships the required tenant selected, also when it was then
	// refused a sub-tenant or role; nil when none was selected, and for a
	// single-tenant token. Acting says for whom the request was decided either way.
	Membership *validatorapi.Membership
	// Audiences are, for a TokenReview that asked for audiences, those the token holds.
	Audiences []string
	// TokenID is the token's ID when known, for the audit log.
	TokenID string
}

func (d *Decision) allowed() bool { return d.Status == http.StatusOK }

// Acting is the tenant, sub-tenant and role the request was decided for: those of a
// single-tenant token, or of the membership the requirement selected; empty when the
// token is not authenticated, or is of several tenants and none was selected.
func (d *Decision) Acting() validatorapi.Membership {
	switch id := d.Identity; {
	case id == nil:
		return validatorapi.Membership{}
	case d.Membership != nil:
		return *d.Membership
	default:
		return validatorapi.Membership{Tenant: id.Tenant, SubTenant: id.SubTenant, Role: id.Role}
	}
}

// resultOf is the result label of a requirement's reason.
func resultOf(reason string) string {
	switch reason {
	case validatorapi.ReasonAllowed:
		return ResultAllowed
	case validatorapi.ReasonInsufficientRole, validatorapi.ReasonTenantRequired:
		return ResultForbidden
	}
	return ResultNotFound
}

// decide runs a token through the authenticator, the limits and the requirement.
// wantAudiences is set by TokenReviews that name audiences.
func (s *Server) decide(tok string, req validatorapi.Requirement, wantAudiences []string, client string) Decision {
	now := s.clock.Now()
	d := s.authenticate(tok, wantAudiences, client, now)
	if d.Status != 0 {
		return d
	}
	id := d.Identity
	// Tokens exchanged from one listed token share its budget: exchanging is no way
	// around the limit.
	if wait := s.limits.token(id.ListedTokenID(), now); wait > 0 {
		d.Status, d.Result, d.Reason, d.RetryAfter = http.StatusTooManyRequests, ResultRateLimited, validatorapi.ReasonTokenRateLimited, wait
		d.Description = bearer.RetryMessage(validatorapi.Describe(d.Reason), wait)
		return d
	}
	if len(id.Memberships) == 0 {
		d.Status, d.Reason = req.Decide(id.Tenant, id.SubTenant, id.Role, id.iss.Grants, s.opts.TenantMismatchStatus)
	} else {
		// The required tenant selects the membership that decides.
		var i int
		d.Status, d.Reason, i = req.DecideMembership(id.Memberships, id.iss.Grants, s.opts.TenantMismatchStatus)
		if i >= 0 {
			d.Membership = &id.Memberships[i]
		}
	}
	d.Result = resultOf(d.Reason)
	if !d.allowed() {
		d.Description = validatorapi.Describe(d.Reason)
	} else if s.usage != nil {
		s.usage.Used(id, now)
	}
	return d
}

// Authenticate decides who tok identifies, the way every endpoint of the validator
// does before it looks at a requirement: the authenticator, then, for a token it
// refused, the failed-attempt limit of client. The token exchange service
// authenticates the tokens it is presented through it. The Decision's Status is 0
// when the token was accepted, and its Identity then set; otherwise it is the 401 or
// 429 to answer.
func (s *Server) Authenticate(tok, client string) Decision {
	return s.authenticate(tok, nil, client, s.clock.Now())
}

// authenticate checks the token first and the client's failures after: a token that
// authenticates is accepted whoever else failed from the same address, and a
// client that spent its budget learns nothing more from a wrong guess than 429.
func (s *Server) authenticate(tok string, wantAudiences []string, client string, now time.Time) Decision {
	id, refusal := s.authn.Authenticate(tok)
	var auds []string
	if refusal == nil && len(wantAudiences) > 0 {
		if auds = intersect(wantAudiences, id.Audiences); len(auds) == 0 {
			refusal = refuse(string(token.ReasonWrongAudience), id.TokenID)
		}
	}
	if refusal == nil {
		return Decision{Identity: id, TokenID: id.TokenID, Audiences: auds}
	}
	// An absent token is no guess at one.
	if refusal.Reason != validatorapi.ReasonMissing {
		if wait := s.limits.failed(client, now); wait > 0 {
			return Decision{Status: http.StatusTooManyRequests, Result: ResultRateLimited, Reason: validatorapi.ReasonClientRateLimited,
				Description: bearer.RetryMessage(validatorapi.Describe(validatorapi.ReasonClientRateLimited), wait), RetryAfter: wait,
				TokenID: refusal.TokenID}
		}
	}
	return Decision{Status: http.StatusUnauthorized, Result: ResultUnauthenticated, Reason: refusal.Reason,
		Description: refusal.Description, TokenID: refusal.TokenID}
}
