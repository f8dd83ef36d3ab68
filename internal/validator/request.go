package validator

import (
	"net/http"
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

func (src source) values(r *http.Request, q map[string][]string) []string {
	if src.param != "" {
		return q[src.param]
	}
	return r.Header.Values(src.header)
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
			out = append(out, source{header: configured})
		}
		return out
	}
	return requirementSources{
		tenant:    with("tenant", validatorapi.HeaderRequiredTenant, o.TenantHeader),
		subTenant: with("subTenant", validatorapi.HeaderRequiredSubTenant, o.SubTenantHeader),
		role:      with("role", validatorapi.HeaderRequiredRole, o.RoleHeader),
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
	var q map[string][]string
	if r.URL.RawQuery != "" {
		q = r.URL.Query()
	}
	var req validatorapi.Requirement
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
			vs := src.values(r, q)
			if len(vs) > 1 {
				return req, requirementError("required " + f.name + " is given more than once (" + src.String() + ")")
			}
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
			if *f.dst != "" && *f.dst != vs[0] {
				return req, requirementError("required " + f.name + " differs between " + from.String() + " and " + src.String())
			}
			*f.dst, from = vs[0], src
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
	uri = r.Header.Get(validatorapi.HeaderOriginalURI)
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
