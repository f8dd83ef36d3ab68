package validator

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

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
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, OpenIDConfiguration{
		Issuer:                           iss.URL,
		JWKSURI:                          s.baseURL(r) + validatorapi.PathJWKS + "?issuer=" + url.QueryEscape(iss.Name),
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

func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimSuffix(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
