package exchange

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apitoken-operator/apitoken-operator/internal/bearer"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// Probe paths, as the validator's.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// maxBody bounds a token exchange form: a token is at most 8 KiB.
const maxBody = 64 << 10

// maxLifetimeSeconds bounds a lifetime parameter before any policy looks at it, so
// that no arithmetic on it can overflow.
const maxLifetimeSeconds = 100 * 365 * 24 * 3600

// Handler returns the exchange endpoints and the probes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+exchangeapi.PathOAuthToken, timed("oauth2_token", s.oauthToken))
	mux.Handle("GET "+exchangeapi.PathToken, timed("token", s.simpleToken))
	s.probes(mux, false)
	return mux
}

// ProbeHandler returns /metrics, /healthz and /readyz, for the plain-HTTP listener
// that Prometheus and the kubelet reach. /metrics is served only there.
func (s *Server) ProbeHandler() http.Handler {
	mux := http.NewServeMux()
	s.probes(mux, true)
	return mux
}

func (s *Server) probes(mux *http.ServeMux, withMetrics bool) {
	if withMetrics {
		mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		if s.opts.Ready != nil && !s.opts.Ready() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
}

func timed(endpoint string, h http.HandlerFunc) http.Handler {
	obs := requestDuration.WithLabelValues(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h(w, r)
		obs.Observe(time.Since(start).Seconds())
	})
}

// oauthToken is RFC 8693 token exchange.
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request) {
	form, rf := readForm(w, r)
	if rf != nil {
		s.oauthError(w, rf)
		return
	}
	tok, req, rf := oauthRequest(form)
	if rf != nil {
		s.oauthError(w, rf)
		return
	}
	out, rf := s.exchange(r.Context(), tok, s.front.ClientAddr(r), req)
	if rf != nil {
		s.oauthError(w, rf)
		return
	}
	writeJSON(w, http.StatusOK, exchangeapi.TokenExchangeResponse{
		AccessToken:     out.token,
		IssuedTokenType: exchangeapi.TokenTypeJWT,
		TokenType:       "Bearer",
		ExpiresIn:       int64(out.lifetime / time.Second),
		Scope:           strings.Join(out.claims.Scopes, " "),
	})
}

// readForm reads an application/x-www-form-urlencoded body, and only the body: RFC
// 6749 puts the parameters there, and a token in a URL ends up in access logs.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *refusal) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badParameter("the request must be a form (Content-Type: application/x-www-form-urlencoded)")
	}
	if r.URL.RawQuery != "" {
		return nil, badParameter("parameters go in the body, not the URL")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return nil, badParameter("the body is not a readable form")
	}
	return r.PostForm, nil
}

// oauthRequest reads RFC 8693's parameters and this service's extensions.
func oauthRequest(form url.Values) (string, policy.ExchangeRequest, *refusal) {
	var req policy.ExchangeRequest
	single := func(name string) (string, *refusal) {
		switch v := form[name]; len(v) {
		case 0:
			return "", nil
		case 1:
			return v[0], nil
		default:
			return "", badParameter(name + " is given more than once")
		}
	}
	gt, rf := single(exchangeapi.ParamGrantType)
	if rf != nil {
		return "", req, rf
	}
	if gt != exchangeapi.GrantTypeTokenExchange {
		rf := badParameter("grant_type must be " + exchangeapi.GrantTypeTokenExchange)
		rf.oauth = exchangeapi.OAuthUnsupportedGrantType
		return "", req, rf
	}
	if _, ok := form[exchangeapi.ParamActorToken]; ok {
		return "", req, badParameter("actor_token is not supported: the exchange issues no delegation tokens")
	}
	if _, ok := form[exchangeapi.ParamResource]; ok {
		rf := badParameter("resource is not supported: name the audience instead")
		rf.oauth = exchangeapi.OAuthInvalidTarget
		return "", req, rf
	}
	tok, rf := single(exchangeapi.ParamSubjectToken)
	if rf != nil {
		return "", req, rf
	}
	if tok == "" {
		return "", req, badParameter("subject_token is required")
	}
	tt, rf := single(exchangeapi.ParamSubjectTokenType)
	if rf != nil {
		return "", req, rf
	}
	switch tt {
	case exchangeapi.TokenTypeAccessToken:
	case exchangeapi.TokenTypeJWT:
		if !token.LooksLikeJWT(tok) {
			return "", req, badParameter("subject_token_type is " + exchangeapi.TokenTypeJWT + " but subject_token is not a JWT")
		}
	case "":
		return "", req, badParameter("subject_token_type is required")
	default:
		return "", req, badParameter("subject_token_type must be " + exchangeapi.TokenTypeAccessToken + " or " + exchangeapi.TokenTypeJWT)
	}
	rt, rf := single(exchangeapi.ParamRequestedTokenType)
	if rf != nil {
		return "", req, rf
	}
	if rt != "" && rt != exchangeapi.TokenTypeJWT && rt != exchangeapi.TokenTypeAccessToken {
		return "", req, badParameter("requested_token_type must be " + exchangeapi.TokenTypeJWT + ": the exchange issues JWTs only")
	}
	req, rf = narrowing(form, single, exchangeapi.ParamExpiresIn)
	return tok, req, rf
}

// narrowing reads what both request styles share: tenant, sub-tenant, role, scope,
// audience and the lifetime, under lifetimeParam.
func narrowing(q url.Values, single func(string) (string, *refusal), lifetimeParam string) (policy.ExchangeRequest, *refusal) {
	var req policy.ExchangeRequest
	for _, f := range []struct {
		name string
		dst  *string
	}{{exchangeapi.ParamTenant, &req.Tenant}, {exchangeapi.ParamSubTenant, &req.SubTenant}, {exchangeapi.ParamRole, &req.Role}} {
		v, rf := single(f.name)
		if rf != nil {
			return req, rf
		}
		if v != "" && len(validation.IsDNS1123Label(v)) > 0 {
			return req, badParameter(f.name + " is not a DNS label (lowercase letters, digits and '-', at most 63)")
		}
		*f.dst = v
	}
	scope, rf := single(exchangeapi.ParamScope)
	if rf != nil {
		return req, rf
	}
	_, hasScope := q[exchangeapi.ParamScope]
	req.Scopes = splitScopes(scope, hasScope && scope != "")
	if auds, ok := q[exchangeapi.ParamAudience]; ok {
		for _, a := range auds {
			if a == "" {
				return req, badParameter("audience may not be empty")
			}
		}
		req.Audiences = auds
	}
	life, rf := single(lifetimeParam)
	if rf != nil {
		return req, rf
	}
	if life != "" {
		n, err := strconv.ParseInt(life, 10, 64)
		if err != nil || n <= 0 || n > maxLifetimeSeconds {
			return req, badParameter(lifetimeParam + " must be a positive whole number of seconds")
		}
		req.Lifetime = time.Duration(n) * time.Second
	}
	return req, nil
}

func (s *Server) oauthError(w http.ResponseWriter, rf *refusal) {
	exchangesRefused.WithLabelValues(rf.code).Inc()
	h := w.Header()
	status := rf.status
	if rf.status == http.StatusTooManyRequests {
		bearer.SetRetryAfter(h, rf.retryAfter)
	}
	// RFC 6749 §5.2 answers 400 for every error but a failed client authentication;
	// a bad subject token is answered 401, so clients tell "log in again" apart from
	// "ask for less", and throttling 429, so they back off.
	if status != http.StatusUnauthorized && status != http.StatusTooManyRequests && status < 500 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, exchangeapi.OAuthError{Error: rf.oauth, Description: rf.message})
}

// simpleToken is GET /v1/token: the token where the validator reads it, the
// narrowing in the query, and tenant and sub-tenant also in headers.
func (s *Server) simpleToken(w http.ResponseWriter, r *http.Request) {
	// r.URL.Query() would skip a pair it cannot read, and a tenant skipped is a token
	// narrowed to no tenant.
	q, err := url.ParseQuery(r.URL.RawQuery)
	single := func(name string) (string, *refusal) {
		v := q[name]
		if len(v) > 1 {
			return "", badParameter(name + " is given more than once")
		}
		hv := s.headerFor(name, r)
		if len(hv) > 1 {
			return "", badParameter("header " + s.headerName(name) + " is given more than once")
		}
		switch {
		case len(v) == 1 && len(hv) == 1 && v[0] != hv[0]:
			return "", badParameter(name + " differs between the query and header " + s.headerName(name))
		case len(v) == 1:
			return v[0], nil
		case len(hv) == 1:
			return hv[0], nil
		}
		return "", nil
	}
	var req policy.ExchangeRequest
	var rf *refusal
	if err != nil {
		rf = badParameter("the query cannot be read: a parameter is badly escaped or separated by ';', or there are more than 10000")
	} else {
		req, rf = narrowing(q, single, exchangeapi.ParamExpiration)
	}
	var tok string
	if rf == nil {
		var err error
		if tok, err = s.front.Credentials(r); err != nil {
			rf = badParameter(err.Error())
		}
	}
	if rf == nil {
		var out *issued
		if out, rf = s.exchange(r.Context(), tok, s.front.ClientAddr(r), req); rf == nil {
			writeJSON(w, http.StatusOK, exchangeapi.TokenResponse{
				Token: out.token, TokenID: out.claims.ID, ExpiresAt: out.claims.ExpiresAt.UTC(),
				ExpiresIn: int64(out.lifetime / time.Second),
			})
			return
		}
	}
	exchangesRefused.WithLabelValues(rf.code).Inc()
	bearer.SetRefusal(w.Header(), rf.status, rf.code, rf.message, rf.retryAfter)
	writeJSON(w, rf.status, exchangeapi.Error{Error: rf.code, Message: rf.message})
}

// headerFor returns the values of the header that may carry parameter name.
func (s *Server) headerFor(name string, r *http.Request) []string {
	if h := s.headerName(name); h != "" {
		return r.Header.Values(h)
	}
	return nil
}

func (s *Server) headerName(name string) string {
	switch name {
	case exchangeapi.ParamTenant:
		return s.opts.TenantHeader
	case exchangeapi.ParamSubTenant:
		return s.opts.SubTenantHeader
	case exchangeapi.ParamRole:
		return s.opts.RoleHeader
	}
	return ""
}

// writeJSON answers v. Every answer holds or refuses a credential: none is cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
