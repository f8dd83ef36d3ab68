package tokensource

import (
	"context"
	"errors"
	"net/http"
)

// TokenGetter is what Transport needs of a Source: the current token, without
// blocking. *Source implements it.
type TokenGetter interface {
	Token() (string, error)
}

// ContextTokenGetter is a source that may have to ask a server for its token first,
// within the request's context. *Exchanging implements it.
type ContextTokenGetter interface {
	Token(ctx context.Context) (string, error)
}

// Transport is an http.RoundTripper that sends every request with
// "Authorization: Bearer <token>" from Source (or ContextSource), the token of the
// moment: a rotation the kubelet delivered, or a refresh the exchange made, is used
// from the next request on.
type Transport struct {
	// Source gives the token. Set it or ContextSource, not both.
	Source TokenGetter
	// ContextSource gives the token, called with each request's context.
	ContextSource ContextTokenGetter
	// Base sends the request. Default http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper. Without a token it fails rather than send
// an unauthenticated request. It does not modify req, as RoundTrippers must not.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var tok string
	var err error
	switch {
	case t.Source != nil && t.ContextSource != nil:
		err = errors.New("tokensource: Transport has both a Source and a ContextSource")
	case t.Source != nil:
		tok, err = t.Source.Token()
	case t.ContextSource != nil:
		tok, err = t.ContextSource.Token(req.Context())
	default:
		err = errors.New("tokensource: Transport has no Source")
	}
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

// NewContextClient returns an *http.Client whose requests carry the token of src,
// such as an *Exchanging.
func NewContextClient(src ContextTokenGetter) *http.Client {
	return &http.Client{Transport: &Transport{ContextSource: src}}
}
