// Package exchange is the token exchange service: a client presents a token of an
// APIToken and receives a shorter-lived JWT that may only narrow it (tenant,
// sub-tenant, role, scopes, audiences, lifetime), signed with the issuer's current
// key. Nothing is stored per exchange. The issued token names its listed parent, and
// the validator accepts it only while that parent would be accepted, so revoking,
// retiring or deleting the parent refuses every token exchanged from it.
//
// The presented token is authenticated by the validator's own code (a
// validator.Server that serves nothing), and the narrowing is decided by
// internal/policy; this package only speaks the two request styles and signs. It is a
// component of its own because it reads signing keys, which the validator must never
// be able to do.
package exchange

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"

	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// Options configure a Server.
type Options struct {
	// TenantHeader and SubTenantHeader carry the tenant and sub-tenant of a
	// PathToken request besides the query. Default exchangeapi's defaults.
	TenantHeader, SubTenantHeader string
	// RoleHeader, when set, carries the role of a PathToken request besides the query.
	RoleHeader string
	// TenantMismatchStatus answers a request for a tenant or sub-tenant the token is
	// not bound to, as the validator does. Default 404.
	TenantMismatchStatus int
	// RateLimitEntries bounds how many parent tokens' exchange budgets are tracked.
	// Default 100000.
	RateLimitEntries int
	// Clock is the clock of every time-dependent rule. Default: the real clock.
	Clock clock.PassiveClock
	// Ready reports whether the index has seen the whole cluster. nil means ready.
	Ready func() bool
	// Log receives one line per issued token, and per refusal of an authenticated
	// token, naming the APIToken and the token IDs, never a token.
	Log logr.Logger
}

// Server answers exchange requests.
type Server struct {
	opts  Options
	front *validator.Server
	idx   *index.Index
	keys  *Keys
	clock clock.PassiveClock
	log   logr.Logger

	// budgets maps a listed token ID to its *rate.Limiter of exchanges; mu makes
	// get-or-create atomic, so a token never gets two budgets.
	mu      sync.Mutex
	budgets *lru.Cache
}

// New returns a Server that authenticates with front (built over idx, with the
// validator's options for credentials, client addresses and failed attempts) and
// signs with keys.
func New(front *validator.Server, idx *index.Index, keys *Keys, opts Options) *Server {
	if opts.TenantHeader == "" {
		opts.TenantHeader = exchangeapi.DefaultTenantHeader
	}
	if opts.SubTenantHeader == "" {
		opts.SubTenantHeader = exchangeapi.DefaultSubTenantHeader
	}
	if opts.TenantMismatchStatus == 0 {
		opts.TenantMismatchStatus = http.StatusNotFound
	}
	if opts.RateLimitEntries <= 0 {
		opts.RateLimitEntries = 100000
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Server{opts: opts, front: front, idx: idx, keys: keys, clock: opts.Clock, log: opts.Log,
		budgets: lru.New(opts.RateLimitEntries)}
}

// issued is a token the exchange signed.
type issued struct {
	token  string
	claims token.Claims
	// lifetime is from issuance to expiry, the expires_in of the answer.
	lifetime time.Duration
}

// refusal is why an exchange was refused, in both request styles' terms.
type refusal struct {
	status int
	// code is PathToken's error code, oauth PathOAuthToken's.
	code, oauth string
	// message is safe to send: it holds parameter names and bounds, never a token.
	message    string
	retryAfter time.Duration
	// tokenID is the presented token's ID, when known, for the log.
	tokenID string
}

func badParameter(msg string) *refusal {
	return &refusal{status: http.StatusBadRequest, code: exchangeapi.CodeInvalidParameter, oauth: exchangeapi.OAuthInvalidRequest, message: msg}
}

// exchange authenticates tok and issues the narrowing req asks for, or says why not.
func (s *Server) exchange(ctx context.Context, tok, client string, req policy.ExchangeRequest) (*issued, *refusal) {
	d := s.front.Authenticate(tok, client)
	if d.Status != 0 {
		r := &refusal{status: d.Status, code: d.Reason, oauth: exchangeapi.OAuthInvalidGrant, message: d.Description, tokenID: d.TokenID}
		if d.Status == http.StatusTooManyRequests {
			r.oauth, r.retryAfter = exchangeapi.OAuthSlowDown, d.RetryAfter
		}
		return nil, r
	}
	id := d.Identity
	out, r := s.issue(ctx, id, req)
	if r != nil {
		r.tokenID = id.TokenID
		s.log.Info("Token exchange refused", "apiToken", id.Namespace+"/"+id.Name, "tokenID", id.TokenID,
			"listedTokenID", id.ListedTokenID(), "reason", r.code, "status", r.status, "client", client)
		return nil, r
	}
	exchangesIssued.WithLabelValues(id.Issuer).Inc()
	s.log.Info("Exchanged a token", "apiToken", id.Namespace+"/"+id.Name, "tokenID", out.claims.ID,
		"subjectTokenID", id.TokenID, "listedTokenID", out.claims.Parent, "depth", out.claims.Depth,
		"tenant", out.claims.Tenant, "subTenant", out.claims.SubTenant, "role", out.claims.Role,
		"expiresAt", out.claims.ExpiresAt.UTC().Format(time.RFC3339), "client", client)
	return out, nil
}

// issue narrows an authenticated token's grant by req and signs the result.
func (s *Server) issue(ctx context.Context, id *validator.Identity, req policy.ExchangeRequest) (*issued, *refusal) {
	iss := s.idx.Issuer(id.Issuer)
	if iss == nil || iss.Policy == nil {
		return nil, &refusal{status: http.StatusServiceUnavailable, code: exchangeapi.CodeUnavailable, oauth: exchangeapi.OAuthTemporarilyUnavail,
			message: "the token's issuer has no policy the exchange can serve"}
	}
	p := iss.Policy
	now := s.clock.Now()
	// Every attempt of an authenticated token spends its budget, refused ones too:
	// probing the policy is no cheaper than exchanging.
	if wait := s.spend(id.ListedTokenID(), p.ExchangePolicy().RatePerMinute, now); wait > 0 {
		return nil, &refusal{status: http.StatusTooManyRequests, code: exchangeapi.CodeRateLimited, oauth: exchangeapi.OAuthSlowDown,
			message: bearer.RetryMessage("too many exchanges with this token", wait), retryAfter: wait}
	}
	child, err := p.Exchange(id.Grant(), req, now)
	if err != nil {
		return nil, s.violation(err)
	}
	key, err := s.keys.Current(ctx, iss)
	if err != nil {
		s.log.Error(err, "Cannot sign an exchanged token", "issuer", iss.Name)
		return nil, &refusal{status: http.StatusServiceUnavailable, code: exchangeapi.CodeUnavailable, oauth: exchangeapi.OAuthTemporarilyUnavail,
			message: "the issuer's signing key is not available to the exchange"}
	}
	c := token.Claims{
		Issuer:    iss.URL,
		Subject:   id.Subject,
		Audience:  child.Audiences,
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: child.NotAfter,
		ID:        token.NewTokenID(),
		Tenant:    child.Tenant,
		SubTenant: child.SubTenant,
		Role:      child.Role,
		Scopes:    child.Scopes,
		Parent:    id.ListedTokenID(),
		Depth:     child.Depth,
	}
	tok, err := token.MintJWT(key, c)
	if err != nil {
		s.log.Error(err, "Cannot sign an exchanged token", "issuer", iss.Name, "keyID", key.ID)
		return nil, &refusal{status: http.StatusInternalServerError, code: exchangeapi.CodeUnavailable, oauth: exchangeapi.OAuthServerError,
			message: "the exchanged token could not be signed"}
	}
	// JWT times are whole seconds: report the life the token really has.
	life := c.ExpiresAt.Truncate(time.Second).Sub(now.Truncate(time.Second))
	return &issued{token: tok, claims: c, lifetime: life}, nil
}

// violation maps a policy refusal to both request styles' answers.
func (s *Server) violation(err error) *refusal {
	var v *policy.Violation
	if !errors.As(err, &v) {
		return &refusal{status: http.StatusInternalServerError, code: exchangeapi.CodeUnavailable, oauth: exchangeapi.OAuthServerError, message: "the exchange failed"}
	}
	r := &refusal{code: string(v.Rule), message: v.Message}
	switch v.Rule {
	case policy.RuleTenantRequired, policy.RuleSubTenantRequired, policy.RuleExchangeLifetime:
		r.status, r.oauth = http.StatusBadRequest, exchangeapi.OAuthInvalidRequest
	case policy.RuleTenantNarrowing, policy.RuleSubTenantNarrowing:
		r.status, r.oauth = s.opts.TenantMismatchStatus, exchangeapi.OAuthInvalidTarget
	case policy.RuleAudienceNarrowing:
		r.status, r.oauth = http.StatusForbidden, exchangeapi.OAuthInvalidTarget
	case policy.RuleRoleNarrowing, policy.RuleScopeNarrowing:
		r.status, r.oauth = http.StatusForbidden, exchangeapi.OAuthInvalidScope
	case policy.RuleExchangeDisabled:
		r.status, r.oauth = http.StatusForbidden, exchangeapi.OAuthUnauthorizedClient
	default: // RuleExchangeDepth and any rule added later
		r.status, r.oauth = http.StatusForbidden, exchangeapi.OAuthInvalidGrant
	}
	return r
}

// spend takes one exchange from the budget of a listed token and returns 0, or how
// long to wait when the budget is spent. The budget refills at perMinute per minute
// and holds at most a minute's worth; perMinute 0 means no limit. A policy change
// applies to budgets already tracked.
func (s *Server) spend(listedID string, perMinute int, now time.Time) time.Duration {
	if perMinute <= 0 {
		return 0
	}
	limit := rate.Limit(float64(perMinute) / 60)
	s.mu.Lock()
	defer s.mu.Unlock()
	var lim *rate.Limiter
	if v, ok := s.budgets.Get(listedID); ok {
		lim = v.(*rate.Limiter)
		if lim.Limit() != limit || lim.Burst() != perMinute {
			lim.SetLimitAt(now, limit)
			lim.SetBurstAt(now, perMinute)
		}
	} else {
		lim = rate.NewLimiter(limit, perMinute)
		s.budgets.Add(listedID, lim)
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// splitScopes reads a space-separated scope parameter; nil when absent.
func splitScopes(v string, present bool) []string {
	if !present {
		return nil
	}
	return strings.Fields(v)
}
