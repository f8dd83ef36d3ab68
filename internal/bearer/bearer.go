// Package bearer is the HTTP side of bearer tokens that the validator, the exchange
// and pkg/middleware share: where a request carries its token, which client sent it,
// and how a refusal is answered (RFC 6750's WWW-Authenticate challenge, RFC 9110's
// Retry-After, plain text or JSON as the client asks). It imports no Kubernetes
// package, since pkg/middleware uses it.
package bearer

import (
	"encoding/json"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Realm is the realm of every challenge.
const Realm = "apitoken"

// Error codes of RFC 6750 §3.1.
const (
	InvalidRequest    = "invalid_request"
	InvalidToken      = "invalid_token"
	InsufficientScope = "insufficient_scope"
)

// Challenge is the WWW-Authenticate value for an error code and its description. An
// empty code gives the bare challenge that RFC 6750 §3.1 asks for when the request
// carried no credentials.
func Challenge(code, description string) string {
	if code == "" {
		return `Bearer realm="` + Realm + `"`
	}
	return `Bearer realm="` + Realm + `", error="` + code + `", error_description="` + quote(description) + `"`
}

// Refuse answers a refused request r with status and description, never cached. The
// challenge follows RFC 6750 §3.1: invalid_request for a malformed request,
// invalid_token for a bad token, the bare challenge for a request without one,
// insufficient_scope for a role too low (and none for another tenant's token, which
// is not a scope problem); a rate-limited request learns when to retry. The body is
// the description as plain text, or a validatorapi.Error naming reason when the
// client asks for JSON (WantsJSON). An empty description is the status text.
func Refuse(w http.ResponseWriter, r *http.Request, status int, reason, description string, retryAfter time.Duration) {
	if description == "" {
		description = http.StatusText(status)
	}
	h := w.Header()
	SetRefusal(h, status, reason, description, retryAfter)
	if !WantsJSON(r) {
		http.Error(w, description, status)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(validatorapi.Error{Error: reason, Message: description})
}

// WantsJSON reports whether r's Accept header names application/json (with a
// non-zero quality): partner APIs' clients parse error bodies, browsers and curl read
// them.
func WantsJSON(r *http.Request) bool {
	for _, line := range r.Header.Values("Accept") {
		for _, part := range strings.Split(line, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "application/json" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// RetryMessage is the message of a 429: what was refused, and how long to wait, in
// the whole seconds Retry-After says.
func RetryMessage(what string, wait time.Duration) string {
	secs := retrySeconds(wait)
	unit := "seconds"
	if secs == 1 {
		unit = "second"
	}
	return what + ": try again in " + strconv.Itoa(secs) + " " + unit
}

// SetRefusal sets the headers Refuse answers with, for a caller that writes its own
// body (the exchange answers JSON).
func SetRefusal(h http.Header, status int, reason, description string, retryAfter time.Duration) {
	h.Set("Cache-Control", "no-store")
	switch status {
	case http.StatusBadRequest:
		SetChallenge(h, InvalidRequest, description)
	case http.StatusUnauthorized:
		if reason == validatorapi.ReasonMissing {
			SetChallenge(h, "", "")
		} else {
			SetChallenge(h, InvalidToken, description)
		}
	case http.StatusForbidden:
		if reason == validatorapi.ReasonInsufficientRole {
			SetChallenge(h, InsufficientScope, description)
		}
	case http.StatusTooManyRequests:
		SetRetryAfter(h, retryAfter)
	}
}

// SetChallenge sets the WWW-Authenticate header of h.
func SetChallenge(h http.Header, code, description string) {
	h.Set("WWW-Authenticate", Challenge(code, description))
}

// SetRetryAfter sets the Retry-After header of h to d in whole seconds, rounded up and
// at least 1: a client told 0 would retry at once.
func SetRetryAfter(h http.Header, d time.Duration) {
	h.Set("Retry-After", strconv.Itoa(retrySeconds(d)))
}

func retrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// quote escapes s for a quoted-string (RFC 9110 §5.6.4), and drops the control
// characters a header value may not hold. RFC 6750 restricts error_description to
// printable ASCII without '"' and '\'; descriptions that quote user input (a malformed
// requirement) could hold either.
func quote(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 || r >= 0x7f }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\'')
		case r < 0x20 || r >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
