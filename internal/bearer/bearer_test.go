package bearer

import (
	"net/http"
	"testing"
	"time"
)

func TestChallenge(t *testing.T) {
	for _, tc := range []struct {
		code, description, want string
	}{
		{"", "ignored", `Bearer realm="apitoken"`},
		{InvalidToken, "the token expired", `Bearer realm="apitoken", error="invalid_token", error_description="the token expired"`},
		{InsufficientScope, "role", `Bearer realm="apitoken", error="insufficient_scope", error_description="role"`},
		// RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
		{InvalidRequest, `role "a\b" is not valid`, `Bearer realm="apitoken", error="invalid_request", error_description="role 'a'b' is not valid"`},
		{InvalidRequest, "tenant\r\nX-Injected: 1 é", `Bearer realm="apitoken", error="invalid_request", error_description="tenant??X-Injected: 1 ?"`},
	} {
		if got := Challenge(tc.code, tc.description); got != tc.want {
			t.Errorf("Challenge(%q, %q) = %s, want %s", tc.code, tc.description, got, tc.want)
		}
	}
}

func TestSetRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", 10 * time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", time.Minute: "60"} {
		h := http.Header{}
		SetRetryAfter(h, d)
		if got := h.Get("Retry-After"); got != want {
			t.Errorf("Retry-After for %s = %s, want %s", d, got, want)
		}
	}
}
