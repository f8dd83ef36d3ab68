package validator

import (
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
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

// Reasons of decisions that are not about the token itself.
const (
	ReasonAllowed           = "Allowed"
	ReasonTenantMismatch    = "TenantMismatch"
	ReasonSubTenantMismatch = "SubTenantMismatch"
	ReasonInsufficientRole  = "InsufficientRole"
	ReasonTokenRateLimited  = "TokenRateLimited"
	ReasonClientRateLimited = "ClientRateLimited"
	ReasonBadRequirement    = "BadRequirement"
	ReasonBadRequest        = "BadRequest"
)

// Requirement is what a request must be allowed: a tenant, a sub-tenant and a role,
// each optional. An empty field requires nothing.
type Requirement struct {
	Tenant    string `json:"tenant,omitempty"`
	SubTenant string `json:"subTenant,omitempty"`
	Role      string `json:"role,omitempty"`
}

// validate checks that each field is empty or a DNS label, as the API requires of
// tenants, sub-tenants and roles: anything else can match no token and is a mistake
// in the caller's configuration, not a reason to refuse the token.
func (r Requirement) validate() error {
	for _, f := range []struct{ name, value string }{{"tenant", r.Tenant}, {"subTenant", r.SubTenant}, {"role", r.Role}} {
		if f.value == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(f.value); len(errs) > 0 {
			return fmt.Errorf("required %s is not a DNS label", f.name)
		}
	}
	return nil
}

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
	// Audiences are, for a TokenReview that asked for audiences, those the token holds.
	Audiences []string
	// TokenID is the token's ID when known, for the audit log.
	TokenID string
}

func (d *Decision) allowed() bool { return d.Status == http.StatusOK }

// decide runs a token through the limits, the authenticator and the requirement.
// wantAudiences is set by TokenReviews that name audiences.
func (s *Server) decide(tok string, req Requirement, wantAudiences []string, client string) Decision {
	now := s.clock.Now()
	d := s.authenticate(tok, wantAudiences, client, now)
	if d.Status != 0 {
		return d
	}
	id := d.Identity
	// Tokens exchanged from one listed token share its budget: exchanging is no way
	// around the limit.
	if wait := s.limits.token(id.ListedTokenID(), now); wait > 0 {
		d.Status, d.Result, d.Reason, d.RetryAfter = http.StatusTooManyRequests, ResultRateLimited, ReasonTokenRateLimited, wait
		d.Description = "too many requests with this token"
		return d
	}
	switch {
	case req.Tenant != "" && req.Tenant != id.Tenant:
		d.Status, d.Result, d.Reason = s.opts.TenantMismatchStatus, ResultNotFound, ReasonTenantMismatch
		d.Description = "not found"
	case req.SubTenant != "" && req.SubTenant != id.SubTenant:
		d.Status, d.Result, d.Reason = s.opts.TenantMismatchStatus, ResultNotFound, ReasonSubTenantMismatch
		d.Description = "not found"
	case req.Role != "" && !id.Grants(req.Role):
		d.Status, d.Result, d.Reason = http.StatusForbidden, ResultForbidden, ReasonInsufficientRole
		d.Description = "the token's role does not grant the required role"
	default:
		d.Status, d.Result, d.Reason = http.StatusOK, ResultAllowed, ReasonAllowed
		if s.usage != nil {
			s.usage.Used(id, now)
		}
	}
	return d
}

// Authenticate decides who tok identifies, the way every endpoint of the validator
// does before it looks at a requirement: the failed-attempt limit of client, then the
// authenticator. The token exchange service authenticates the tokens it is presented
// through it. The Decision's Status is 0 when the token was accepted, and its
// Identity then set; otherwise it is the 401 or 429 to answer.
func (s *Server) Authenticate(tok, client string) Decision {
	return s.authenticate(tok, nil, client, s.clock.Now())
}

func (s *Server) authenticate(tok string, wantAudiences []string, client string, now time.Time) Decision {
	if wait := s.limits.client(client, now); wait > 0 {
		return Decision{Status: http.StatusTooManyRequests, Result: ResultRateLimited, Reason: ReasonClientRateLimited,
			Description: "too many failed attempts from this client", RetryAfter: wait}
	}
	id, refusal := s.authn.Authenticate(tok)
	var auds []string
	if refusal == nil && len(wantAudiences) > 0 {
		if auds = intersect(wantAudiences, id.Audiences); len(auds) == 0 {
			refusal = refuse(string(token.ReasonWrongAudience), id.TokenID)
		}
	}
	if refusal != nil {
		// An absent token is no guess at one.
		if refusal.Reason != ReasonMissing {
			s.limits.failed(client, now)
		}
		return Decision{Status: http.StatusUnauthorized, Result: ResultUnauthenticated, Reason: refusal.Reason,
			Description: refusal.Description, TokenID: refusal.TokenID}
	}
	return Decision{Identity: id, TokenID: id.TokenID, Audiences: auds}
}
