package validator

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// source is one place a part of the requirement may come from.
type source struct {
	// param is a query parameter, header a header; one of them is set.
	param, header string
}

func (src source) String() string {
	if src.param != "" {
		return "query parameter " + src.param
	}
	return "header " + src.header
}

// lookup returns the first value src gives in r, whose requirement parameters q
// holds, and how many it gives.
func (src source) lookup(r *http.Request, q *[len(requirementParams)]paramValue) (first string, n int) {
	if src.param != "" {
		v := q[slices.Index(requirementParams[:], src.param)]
		return v.first, v.n
	}
	vs := r.Header.Values(src.header)
	if len(vs) == 0 {
		return "", 0
	}
	return vs[0], len(vs)
}

// requirementParams are the query parameters of a requirement.
var requirementParams = [...]string{"tenant", "subTenant", "role"}

// paramValue is what a query gives for one parameter: its first value, and how many.
type paramValue struct {
	first string
	n     int
}

// readRequirementQuery reads requirementParams out of raw as url.ParseQuery does
// (pairs split on '&', keys and values unescaped), in one pass and without the map of
// every parameter: a value that needs no unescaping is a part of raw, not a copy.
// Where url.ParseQuery would skip a pair it cannot read (one holding ';', or a bad
// escape) and go on, ok is false: the skipped pair may be the requirement, and a
// request judged without it would be judged as naming none. Unlike url.ParseQuery,
// it reads a query of any number of parameters.
func readRequirementQuery(raw string) (out [len(requirementParams)]paramValue, ok bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return out, false
		}
		k, v, _ := strings.Cut(pair, "=")
		k, kok := queryUnescape(k)
		v, vok := queryUnescape(v)
		if !kok || !vok {
			return out, false
		}
		i := slices.Index(requirementParams[:], k)
		if i < 0 {
			continue
		}
		if out[i].n == 0 {
			out[i].first = v
		}
		out[i].n++
	}
	return out, true
}

// queryUnescape is url.QueryUnescape for a string that needs it, and s itself for
// one that does not.
func queryUnescape(s string) (string, bool) {
	for i := range len(s) {
		if s[i] == '%' || s[i] == '+' {
			u, err := url.QueryUnescape(s)
			return u, err == nil
		}
	}
	return s, true
}

// requirementSources are where each part of the requirement may come from: the query,
// the X-Required-* headers and the configured partner-style headers (X-Tenant-Id by
// default).
type requirementSources struct {
	tenant, subTenant, role []source
}

func newRequirementSources(o *Options) requirementSources {
	with := func(param, required, configured string) []source {
		out := []source{{param: param}, {header: required}}
		if configured != "" && !strings.EqualFold(configured, required) {
			// Canonical, so that reading it allocates nothing per request.
			out = append(out, source{header: http.CanonicalHeaderKey(configured)})
		}
		return out
	}
	return requirementSources{
		tenant:    with(requirementParams[0], validatorapi.HeaderRequiredTenant, o.TenantHeader),
		subTenant: with(requirementParams[1], validatorapi.HeaderRequiredSubTenant, o.SubTenantHeader),
		role:      with(requirementParams[2], validatorapi.HeaderRequiredRole, o.RoleHeader),
	}
}

// requirementError is a request whose requirement cannot be read; its message names
// parameters and headers, never their values, so it is safe to send back.
type requirementError string

func (e requirementError) Error() string { return string(e) }

// requirementOf reads the requirement of an /authorize request. Each part may come
// from any of its sources, but all that are given must agree, and each at most once:
// a proxy that sets a part twice or two ways differently is misconfigured (or passes
// on what its client sent), and guessing which value it meant could let a request
// through. An empty value is no value. With requireTenant, a request that names no
// tenant is refused too.
func (s *Server) requirementOf(r *http.Request) (validatorapi.Requirement, error) {
	var req validatorapi.Requirement
	q, ok := readRequirementQuery(r.URL.RawQuery)
	if !ok {
		return req, requirementError("the query cannot be read: a parameter is badly escaped or separated by ';'")
	}
	for _, f := range []struct {
		name    string
		sources []source
		dst     *string
	}{
		{"tenant", s.sources.tenant, &req.Tenant},
		{"subTenant", s.sources.subTenant, &req.SubTenant},
		{"role", s.sources.role, &req.Role},
	} {
		var from source
		for _, src := range f.sources {
			v, n := src.lookup(r, &q)
			if n > 1 {
				return req, requirementError("required " + f.name + " is given more than once (" + src.String() + ")")
			}
			if v == "" {
				continue
			}
			if *f.dst != "" && *f.dst != v {
				return req, requirementError("required " + f.name + " differs between " + from.String() + " and " + src.String())
			}
			*f.dst, from = v, src
		}
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	if s.opts.RequireTenant && req.Tenant == "" {
		names := make([]string, len(s.sources.tenant))
		for i, src := range s.sources.tenant {
			names[i] = src.String()
		}
		return req, requirementError("the request names no tenant: set " + strings.Join(names, " or "))
	}
	return req, nil
}

// originalURIHeader is X-Original-URI in canonical form: Header.Get canonicalizes its
// key on every call, and allocates for one that is not.
var originalURIHeader = http.CanonicalHeaderKey(validatorapi.HeaderOriginalURI)

// maxAuditURI bounds the original URI the audit records: a path longer than this is
// cut, since the audit line must not grow with what a client chooses to send.
const maxAuditURI = 1024

// originalRequest is the method and path of the request a proxy asks about, as it
// passed them (X-Original-* from nginx, X-Forwarded-* from Traefik and Caddy). The
// query is dropped: it may hold an API key.
func originalRequest(r *http.Request) (method, uri string) {
	method = r.Header.Get(validatorapi.HeaderOriginalMethod)
	if method == "" {
		method = r.Header.Get(validatorapi.HeaderForwardedMethod)
	}
	uri = r.Header.Get(originalURIHeader)
	if uri == "" {
		uri = r.Header.Get(validatorapi.HeaderForwardedURI)
	}
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if len(uri) > maxAuditURI {
		uri = uri[:maxAuditURI]
	}
	if len(method) > 16 {
		method = method[:16]
	}
	return method, uri
}
