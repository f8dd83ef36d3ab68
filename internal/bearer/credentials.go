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

// Token returns the request's token, or "" when it carries none.
func (c *Credentials) Token(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	for _, name := range c.Headers {
		if v := r.Header.Get(name); v != "" {
			return strings.TrimSpace(v)
		}
	}
	if c.IDHeader != "" && c.SecretHeader != "" {
		return c.reassemble(strings.TrimSpace(r.Header.Get(c.IDHeader)), strings.TrimSpace(r.Header.Get(c.SecretHeader)))
	}
	return ""
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
