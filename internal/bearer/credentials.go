package bearer

import (
	"net/http"
	"strings"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Credentials say where a request may carry its token. Authorization: Bearer always
// counts and comes first: a request that has one is judged by it alone.
type Credentials struct {
	// Headers are headers whose whole value is a token (e.g. X-Api-Key), looked at
	// in order after Authorization: Bearer.
	Headers []string
	// IDHeader and SecretHeader, when both are set, carry an opaque token in two
	// parts, looked at last: "[<prefix>_]<id>" and "<secret><checksum>".
	IDHeader, SecretHeader string
	// Prefix, when set, returns the opaque prefix of the issuer of the token with
	// the given ID, or "" when it does not know one; an ID header without a prefix
	// then gets token.DefaultOpaquePrefix.
	Prefix func(id string) string
}

// RepeatedHeader is the error of a request that carries a credential header more
// than once: which of the values is the token is a guess, and proxies and services
// guessing differently is how a request gets judged by one token and served as
// another.
type RepeatedHeader struct {
	// Name is the header, as configured (or "Authorization").
	Name string
}

func (e *RepeatedHeader) Error() string {
	return "the request carries more than one " + e.Name + " header"
}

// Token returns the request's token, or "" when it carries none. A credential header
// given more than once is a *RepeatedHeader error, whatever the values.
func (c *Credentials) Token(r *http.Request) (string, error) {
	if err := c.single(r); err != nil {
		return "", err
	}
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), nil
		}
	}
	for _, name := range c.Headers {
		if v := r.Header.Get(name); v != "" {
			return strings.TrimSpace(v), nil
		}
	}
	if c.IDHeader != "" && c.SecretHeader != "" {
		return c.reassemble(strings.TrimSpace(r.Header.Get(c.IDHeader)), strings.TrimSpace(r.Header.Get(c.SecretHeader))), nil
	}
	return "", nil
}

// single checks that no header a token may come from is repeated.
func (c *Credentials) single(r *http.Request) error {
	if len(r.Header.Values("Authorization")) > 1 {
		return &RepeatedHeader{Name: "Authorization"}
	}
	for _, name := range c.Headers {
		if len(r.Header.Values(name)) > 1 {
			return &RepeatedHeader{Name: name}
		}
	}
	if c.IDHeader != "" && c.SecretHeader != "" {
		for _, name := range []string{c.IDHeader, c.SecretHeader} {
			if len(r.Header.Values(name)) > 1 {
				return &RepeatedHeader{Name: name}
			}
		}
	}
	return nil
}

// reassemble rebuilds an opaque token sent as an ID and a secret. The ID may carry the
// prefix ("apt_01J...") or not; the checksum catches a wrong guess at it.
func (c *Credentials) reassemble(id, secret string) string {
	if id == "" || secret == "" {
		return ""
	}
	if strings.Contains(id, "_") {
		return id + "_" + secret
	}
	prefix := ""
	if c.Prefix != nil {
		prefix = c.Prefix(id)
	}
	if prefix == "" {
		prefix = token.DefaultOpaquePrefix
	}
	return prefix + "_" + id + "_" + secret
}
