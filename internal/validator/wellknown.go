package validator

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// OpenIDConfiguration is the subset of OpenID Connect discovery metadata that offline
// JWT verifiers read.
type OpenIDConfiguration struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// JWKSResponse is the body of /.well-known/jwks.json.
type JWKSResponse struct {
	Keys []tokensv1.JSONWebKey `json:"keys"`
}

// readyIssuer returns the Ready issuer named (or whose URL is) ref, or nil.
func (s *Server) readyIssuer(ref string) *index.Issuer {
	for _, iss := range s.idx.Issuers() {
		if iss.Ready && (iss.Name == ref || iss.URL == ref) {
			return iss
		}
	}
	return nil
}

// openIDConfiguration describes the issuer named by ?issuer= (a name or an issuer
// URL), else the default issuer, else the only Ready issuer.
func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	var iss *index.Issuer
	if ref := r.URL.Query().Get("issuer"); ref != "" {
		iss = s.readyIssuer(ref)
	} else if iss = s.readyIssuer(s.opts.DefaultIssuer); iss == nil {
		var ready []*index.Issuer
		for _, i := range s.idx.Issuers() {
			if i.Ready {
				ready = append(ready, i)
			}
		}
		if len(ready) == 1 {
			iss = ready[0]
		}
	}
	if iss == nil {
		http.Error(w, "no such ready issuer", http.StatusNotFound)
		return
	}
	base, fromRequest, ok := s.baseURL(r)
	if !ok {
		http.Error(w, "the Host header is not a host name, and the validator has no --public-url to name its keys' URL by", http.StatusBadRequest)
		return
	}
	if fromRequest {
		// Another Host gets another document: a shared cache must not answer one
		// client with what another client's Host made.
		w.Header().Set("Cache-Control", "private, max-age=60")
		w.Header().Set("Vary", "Host")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=60")
	}
	writeJSON(w, http.StatusOK, OpenIDConfiguration{
		Issuer:                           iss.URL,
		JWKSURI:                          base + validatorapi.PathJWKS + "?issuer=" + url.QueryEscape(iss.Name),
		IDTokenSigningAlgValuesSupported: nonNil(iss.Algorithms()),
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		ClaimsSupported:                  []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant", "sub_tenant", "role", "scope"},
	})
}

// jwks publishes the keys of the issuer named by ?issuer=, or of every Ready issuer.
// A key published by two issuers appears once.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	var issuers []*index.Issuer
	if ref := r.URL.Query().Get("issuer"); ref != "" {
		iss := s.readyIssuer(ref)
		if iss == nil {
			http.Error(w, "no such ready issuer", http.StatusNotFound)
			return
		}
		issuers = []*index.Issuer{iss}
	} else {
		for _, iss := range s.idx.Issuers() {
			if iss.Ready {
				issuers = append(issuers, iss)
			}
		}
	}
	out := JWKSResponse{Keys: []tokensv1.JSONWebKey{}}
	for _, iss := range issuers {
		for _, k := range iss.JWKS {
			if !slices.ContainsFunc(out.Keys, func(o tokensv1.JSONWebKey) bool { return o.Kid == k.Kid }) {
				out.Keys = append(out.Keys, k)
			}
		}
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, out)
}

// baseURL is where the validator is served: --public-url, or else the request's
// scheme and Host (fromRequest), which must then be a plain host name or address with
// an optional port; ok is false when it is not.
func (s *Server) baseURL(r *http.Request) (base string, fromRequest, ok bool) {
	if s.opts.PublicURL != "" {
		return strings.TrimSuffix(s.opts.PublicURL, "/"), false, true
	}
	if !plainHost(r.Host) {
		return "", true, false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host, true, true
}

// plainHost reports whether hostport is a DNS name or an IP address, with an optional
// numeric port: nothing a URL could be bent by.
func plainHost(hostport string) bool {
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
		host = h
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if strings.HasPrefix(hostport, "[") {
		return false // brackets hold an IPv6 address or nothing
	}
	return len(validation.IsDNS1123Subdomain(strings.ToLower(host))) == 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
