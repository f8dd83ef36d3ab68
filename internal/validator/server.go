// Package validator is the token validation service: it answers whether a token is
// valid, for which tenant and role, to proxies (forward auth), to the kube-apiserver
// (TokenReview webhook) and to services (JSON), from an index the cluster's
// informers keep current. It never reads Secrets: opaque tokens are checked against
// the hashes in APIToken status, JWTs against the public keys in issuer status.
package validator

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Paths of the operational endpoints; those of the protocol are in validatorapi.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// maxBody bounds the bodies of /v1/validate and TokenReviews: a token is at most
// 8 KiB, so anything much larger is not a real request.
const maxBody = 64 << 10

// Options configure a Server.
type Options struct {
	// TokenHeaders are headers whose whole value is a token (e.g. X-Api-Key), looked
	// at after Authorization: Bearer.
	TokenHeaders []string
	// IDHeader and SecretHeader, when both set, carry an opaque token in two parts:
	// "[<prefix>_]<id>" and "<secret><checksum>".
	IDHeader, SecretHeader string
	// TenantMismatchStatus answers a token of another tenant or sub-tenant. Default
	// 404, which does not tell whether the resource exists; nginx auth_request
	// understands only 2xx, 401 and 403, so set 403 behind it.
	TenantMismatchStatus int
	// Audiences, when set, are the audiences a token must carry one of.
	Audiences []string
	// CacheSize bounds the cache of verified JWTs. Default 10000; negative disables.
	CacheSize int
	// Limits are the rate limits.
	Limits RateLimits
	// ClientIPHeader names a header holding the client's address (X-Forwarded-For,
	// X-Real-IP), for the failed-attempt limit and the audit; it is believed only
	// from TrustedProxies, and read as bearer.ClientAddr does.
	ClientIPHeader string
	TrustedProxies []netip.Prefix
	// TenantHeader, SubTenantHeader and RoleHeader, when set, are headers that carry
	// a part of /authorize's requirement besides the query and the X-Required-*
	// headers, as partner APIs send a tenant (X-Tenant-Id).
	TenantHeader, SubTenantHeader, RoleHeader string
	// RequireTenant refuses, with 400, an /authorize or /v1/validate request that
	// names no tenant. TokenReviews, which never name one, are not affected.
	RequireTenant bool
	// DefaultIssuer is the issuer /.well-known/openid-configuration describes when
	// the request names none. Default "default".
	DefaultIssuer string
	// PublicURL is the validator's external base URL, for jwks_uri. Without it the
	// discovery document is built from the request's Host, when that is a plain
	// host name, and is not cached by shared caches.
	PublicURL string
	// Ready reports whether the index has seen the whole cluster; /readyz fails
	// until then. nil means ready.
	Ready func() bool
	// Usage, when set, is told about every accepted token.
	Usage *UsageReporter
	// Live, when set, is asked about validly signed JWTs the index does not know,
	// which it would otherwise refuse as unknown (see LiveLookup).
	Live *LiveLookup
	// Audit, when set, receives one line per decision: the audit trail.
	Audit *AuditStream
	// Clock is the clock of every time-dependent rule. Default: the real clock.
	Clock clock.PassiveClock
	// Log receives one line per decision at V(1), for debugging: the audit trail is
	// Audit, which cannot be flooded.
	Log logr.Logger
}

// Server answers validation requests from an index.
type Server struct {
	opts    Options
	idx     *index.Index
	authn   *Authenticator
	creds   bearer.Credentials
	sources requirementSources
	limits  *limiter
	usage   *UsageReporter
	audit   *AuditStream
	clock   clock.PassiveClock
	log     logr.Logger
}

// New returns a Server over idx. The index's clock and audiences should be the same as
// opts.Clock and opts.Audiences.
func New(idx *index.Index, opts Options) *Server {
	if opts.TenantMismatchStatus == 0 {
		opts.TenantMismatchStatus = http.StatusNotFound
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 10000
	}
	if opts.DefaultIssuer == "" {
		opts.DefaultIssuer = tokensv1.DefaultIssuerName
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	authn := NewAuthenticator(idx, opts.Clock, opts.Audiences, max(opts.CacheSize, 0))
	authn.live = opts.Live
	return &Server{
		opts:    opts,
		idx:     idx,
		authn:   authn,
		creds:   bearer.Credentials{Headers: opts.TokenHeaders, IDHeader: opts.IDHeader, SecretHeader: opts.SecretHeader, Prefix: authn.opaquePrefix},
		sources: newRequirementSources(&opts),
		limits:  newLimiter(opts.Limits),
		usage:   opts.Usage,
		audit:   opts.Audit,
		clock:   opts.Clock,
		log:     opts.Log,
	}
}

// Handler returns the server's routes, and /healthz and /readyz. /metrics is not
// among them: it tells whoever reaches the validator how busy it is and why it
// refuses, so it is served only by ProbeHandler, on the metrics listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(validatorapi.PathAuthorize, s.timed("authorize", s.authorize))
	mux.Handle("POST "+validatorapi.PathValidate, s.timed("validate", s.validate))
	mux.Handle("POST "+validatorapi.PathTokenReview, s.timed("tokenreview", s.tokenReview))
	mux.HandleFunc("GET "+validatorapi.PathOIDC, s.openIDConfiguration)
	mux.HandleFunc("GET "+validatorapi.PathJWKS, s.jwks)
	s.probes(mux)
	return mux
}

// ProbeHandler returns /metrics, /healthz and /readyz alone, for a separate plain-HTTP
// listener that Prometheus and the kubelet reach without TLS.
func (s *Server) ProbeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	s.probes(mux)
	return mux
}

func (s *Server) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET "+PathReadyz, s.readyz)
}

// timed observes how long h takes. It reads the real clock, not s.clock: it measures
// the validator, it decides nothing.
func (s *Server) timed(endpoint string, h http.HandlerFunc) http.Handler {
	obs := requestDuration.WithLabelValues(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h(w, r)
		obs.Observe(time.Since(start).Seconds())
	})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil && !s.opts.Ready() {
		http.Error(w, "caches not synced", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// authorize is forward auth: any method, since nginx auth_request and Envoy keep
// the original request's.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Cache-Control"] = noStore
	client := s.ClientAddr(r)
	req, err := s.requirementOf(r)
	var tok string
	if err == nil {
		tok, err = s.Credentials(r)
	}
	var d Decision
	if err != nil {
		d = badRequest(err)
	} else {
		d = s.decide(tok, req, nil, client)
	}
	s.record(r, "authorize", &d, req, client)
	if !d.allowed() {
		bearer.Refuse(w, r, d.Status, d.Reason, d.Description, d.RetryAfter)
		return
	}
	// Shared, read-only values: net/http only reads them.
	for k, v := range d.Identity.Header(d.Membership) {
		h[k] = v
	}
	w.WriteHeader(http.StatusOK)
}

// noStore is the Cache-Control of every answer about a token, one slice for all:
// net/http only reads a handler's header values.
var noStore = []string{"no-store"}

// badRequest is the decision on a request that cannot be judged: a requirement that
// cannot be read, or credentials given twice.
func badRequest(err error) Decision {
	reason := validatorapi.ReasonBadRequirement
	if rh := (*bearer.RepeatedHeader)(nil); errors.As(err, &rh) {
		reason = validatorapi.ReasonBadRequest
	}
	return Decision{Status: http.StatusBadRequest, Result: ResultBadRequest, Reason: reason, Description: err.Error()}
}

// Credentials finds the token of a request where the validator reads one:
// Authorization: Bearer, then the token headers, then the ID and secret headers. A
// request that carries one of them twice is an error (a *bearer.RepeatedHeader), to
// be answered 400.
func (s *Server) Credentials(r *http.Request) (string, error) {
	return s.creds.Token(r)
}

// ClientAddr is the address the failed-attempt limit counts against and the audit
// records: the peer, or, when the peer is a trusted proxy, the right-most untrusted
// address of every ClientIPHeader line (bearer.ClientAddr).
func (s *Server) ClientAddr(r *http.Request) string {
	return bearer.ClientAddr(r, s.opts.ClientIPHeader, s.opts.TrustedProxies)
}

// record counts the decision and writes it to the audit stream, and at V(1) to the
// log. Never the token.
func (s *Server) record(r *http.Request, endpoint string, d *Decision, req validatorapi.Requirement, client string) {
	if d.Reason == validatorapi.ReasonAllowed {
		allowedTotal.Inc() // the common case, without a label lookup
	} else {
		decisionsTotal.WithLabelValues(d.Result, d.Reason).Inc()
	}
	if s.audit != nil {
		l := validatorapi.AuditLine{
			Time: s.clock.Now(), Decision: validatorapi.AuditRefused, Endpoint: endpoint,
			Status: d.Status, Result: d.Result, Reason: d.Reason, TokenID: d.TokenID, Required: req, Client: client,
		}
		if d.allowed() {
			l.Decision = validatorapi.AuditAllowed
		}
		if id := d.Identity; id != nil {
			m := d.Acting()
			l.APIToken, l.Tenant, l.SubTenant, l.Role, l.ParentTokenID = id.Namespace+"/"+id.Name, m.Tenant, m.SubTenant, m.Role, id.ParentTokenID
			l.CreatedBy = id.Creator
		}
		l.Method, l.URI = originalRequest(r)
		s.audit.Record(&l)
	}
	log := s.log.V(1)
	if !log.Enabled() {
		return
	}
	kv := []any{"endpoint", endpoint, "result", d.Result, "reason", d.Reason, "status", d.Status,
		"tokenID", d.TokenID, "remoteAddr", r.RemoteAddr, "client", client}
	if id := d.Identity; id != nil {
		m := d.Acting()
		kv = append(kv, "apiToken", id.Namespace+"/"+id.Name, "tenant", m.Tenant, "subTenant", m.SubTenant, "role", m.Role)
	}
	if req != (validatorapi.Requirement{}) {
		kv = append(kv, "requiredTenant", req.Tenant, "requiredSubTenant", req.SubTenant, "requiredRole", req.Role)
	}
	if d.allowed() {
		log.Info("Token accepted", kv...)
	} else {
		log.Info("Token refused", kv...)
	}
}

// validate answers with HTTP 200 and the decision in the body, whatever the decision,
// except for requests it cannot read (400) and rate limits (429 with Retry-After, so
// that HTTP clients back off on their own).
func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	w.Header()["Cache-Control"] = noStore
	client := s.ClientAddr(r)
	in, why := readValidateRequest(http.MaxBytesReader(w, r.Body, maxBody))
	if why != "" {
		d := Decision{Status: http.StatusBadRequest, Result: ResultBadRequest, Reason: validatorapi.ReasonBadRequest, Description: why}
		s.record(r, "validate", &d, validatorapi.Requirement{}, client)
		writeJSON(w, http.StatusBadRequest, validatorapi.ValidateResponse{Status: d.Status, Reason: d.Reason, Message: d.Description})
		return
	}
	var d Decision
	switch err := in.Validate(); {
	case err != nil:
		d = badRequest(err)
	case s.opts.RequireTenant && in.Tenant == "":
		d = badRequest(requirementError(`the request names no tenant: set "tenant" in the body`))
	default:
		d = s.decide(in.Token, in.Requirement, nil, client)
	}
	s.record(r, "validate", &d, in.Requirement, client)
	out := validatorapi.ValidateResponse{Allowed: d.allowed(), Status: d.Status, Reason: d.Reason, Message: d.Description}
	if d.allowed() {
		out.Message = ""
	}
	if id := d.Identity; id != nil {
		acting := d.Acting()
		out.Identity = &validatorapi.IdentityResponse{
			TokenID: id.TokenID, Format: string(id.Format), Namespace: id.Namespace, Name: id.Name, UID: string(id.UID),
			Subject: id.Subject, Issuer: id.Issuer, Tenant: acting.Tenant, SubTenant: acting.SubTenant, Role: acting.Role,
			Roles: id.RolesOf(acting.Role), Memberships: id.Memberships, Scopes: id.Scopes, Audiences: id.Audiences,
			ExpiresAt: id.ExpiresAt, ParentTokenID: id.ParentTokenID, CreatedBy: id.Creator,
		}
	}
	status := http.StatusOK
	if d.Status == http.StatusTooManyRequests {
		status = d.Status
		bearer.SetRetryAfter(w.Header(), d.RetryAfter)
	}
	writeJSON(w, status, out)
}

// readValidateRequest decodes the body of a validate request, or says why it is not
// one. A field it does not know is refused, not ignored: a requirement under a
// mistyped name ("tennant") would otherwise be a request that requires nothing. So is
// anything after the object, a second requirement included. The reason names no value
// from the body.
func readValidateRequest(body io.Reader) (validatorapi.ValidateRequest, string) {
	var in validatorapi.ValidateRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	switch {
	case err != nil && strings.HasPrefix(err.Error(), "json: unknown field "):
		return in, "the body is not a validate request: its fields are token, tenant, subTenant and role, and it has another"
	case err != nil:
		return in, "the body is not a validate request"
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, "the body is not a validate request: something follows its JSON object"
	}
	return in, ""
}

// tokenReview is the kube-apiserver webhook token authenticator's protocol:
// authentication.k8s.io/v1 TokenReview in, the same with status out.
func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) {
	w.Header()["Cache-Control"] = noStore
	client := s.ClientAddr(r)
	var in authnv1.TokenReview
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in)
	if err == nil && (in.APIVersion != authnv1.SchemeGroupVersion.String() || in.Kind != "TokenReview") {
		err = errors.New("not an authentication.k8s.io/v1 TokenReview")
	}
	if err != nil {
		d := Decision{Status: http.StatusBadRequest, Result: ResultBadRequest, Reason: validatorapi.ReasonBadRequest, Description: "the body is not an authentication.k8s.io/v1 TokenReview"}
		s.record(r, "tokenreview", &d, validatorapi.Requirement{}, client)
		http.Error(w, d.Description, d.Status)
		return
	}
	d := s.decide(in.Spec.Token, validatorapi.Requirement{}, in.Spec.Audiences, client)
	s.record(r, "tokenreview", &d, validatorapi.Requirement{}, client)
	// The answer never echoes the spec: it holds the token.
	out := authnv1.TokenReview{TypeMeta: in.TypeMeta, ObjectMeta: metav1.ObjectMeta{UID: in.UID}}
	if d.allowed() {
		id := d.Identity
		groups := groupsOf(id)
		extra := map[string]authnv1.ExtraValue{validatorapi.ExtraTokenID: {id.TokenID}}
		if id.SubTenant != "" {
			extra[validatorapi.ExtraSubTenant] = authnv1.ExtraValue{id.SubTenant}
		}
		if len(id.Memberships) > 0 {
			ms := make(authnv1.ExtraValue, len(id.Memberships))
			for i, m := range id.Memberships {
				ms[i] = m.String()
			}
			extra[validatorapi.ExtraMemberships] = ms
		}
		if len(id.Scopes) > 0 {
			extra[validatorapi.ExtraScopes] = authnv1.ExtraValue(id.Scopes)
		}
		if id.ParentTokenID != "" {
			extra[validatorapi.ExtraParentTokenID] = authnv1.ExtraValue{id.ParentTokenID}
		}
		out.Status = authnv1.TokenReviewStatus{
			Authenticated: true,
			User:          authnv1.UserInfo{Username: id.Subject, UID: string(id.UID), Groups: groups, Extra: extra},
			Audiences:     d.Audiences,
		}
	} else {
		out.Status = authnv1.TokenReviewStatus{Error: d.Reason + ": " + d.Description}
	}
	status := http.StatusOK
	if d.Status == http.StatusTooManyRequests {
		status = d.Status
		bearer.SetRetryAfter(w.Header(), d.RetryAfter)
	}
	writeJSON(w, status, &out)
}

// groupsOf is the groups a TokenReview answers for id. A single-tenant token gets its
// tenant's group and one group per role it grants. A token of several tenants gets,
// for each membership, the tenant's group and one group per role granted in that
// tenant, which names the tenant too: a role group alone would not say where the
// token holds it, and RBAC bound by it would grant the role in every tenant.
func groupsOf(id *Identity) []string {
	if len(id.Memberships) == 0 {
		groups := []string{validatorapi.GroupTenantPrefix + id.Tenant}
		for _, role := range id.Roles() {
			groups = append(groups, validatorapi.GroupRolePrefix+role)
		}
		return groups
	}
	var groups []string
	for _, m := range id.Memberships {
		groups = append(groups, validatorapi.GroupTenantPrefix+m.Tenant)
		for _, role := range id.RolesOf(m.Role) {
			groups = append(groups, validatorapi.GroupTenantRole(m.Tenant, role))
		}
	}
	return groups
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
