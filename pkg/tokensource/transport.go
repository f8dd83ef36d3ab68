package tokensource

import (
	"errors"
	"net/http"
)

// TokenGetter is what Transport needs of a Source: the current token, without
// blocking. *Source implements it.
type TokenGetter interface {
	Token() (string, error)
}

// Transport is an http.RoundTripper that sends every request with
// "Authorization: Bearer <token>" from Source, the token of the moment: a rotation
// the kubelet delivered is used from the next request on.
type Transport struct {
	// Source gives the token.
	Source TokenGetter
	// Base sends the request. Default http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper. Without a token it fails rather than send
// an unauthenticated request. It does not modify req, as RoundTrippers must not.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		return nil, errors.New("tokensource: Transport has no Source")
	}
	tok, err := t.Source.Token()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// NewClient returns an *http.Client whose requests carry the token of src.
func NewClient(src TokenGetter) *http.Client {
	return &http.Client{Transport: &Transport{Source: src}}
}
