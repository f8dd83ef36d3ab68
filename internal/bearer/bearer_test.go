package bearer

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
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

// TestRefuse maps each refusal to its challenge, over a real listener.
func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      int
		reason      string
		description string
		retryAfter  time.Duration
		challenge   string // "" means none
		retry       string
		body        string
	}{
		{"bad request", 400, validatorapi.ReasonBadRequirement, "required tenant is not a DNS label", 0,
			`Bearer realm="apitoken", error="invalid_request", error_description="required tenant is not a DNS label"`, "", "required tenant is not a DNS label"},
		{"no token", 401, validatorapi.ReasonMissing, "no token in the request", 0, `Bearer realm="apitoken"`, "", "no token in the request"},
		{"bad token", 401, validatorapi.ReasonExpired, "the token expired", 0,
			`Bearer realm="apitoken", error="invalid_token", error_description="the token expired"`, "", "the token expired"},
		{"role too low", 403, validatorapi.ReasonInsufficientRole, "the token's role does not grant the required role", 0,
			`Bearer realm="apitoken", error="insufficient_scope", error_description="the token's role does not grant the required role"`, "", "the token's role does not grant the required role"},
		{"another tenant, answered 403", 403, validatorapi.ReasonTenantMismatch, "not found", 0, "", "", "not found"},
		{"another tenant", 404, validatorapi.ReasonTenantMismatch, "not found", 0, "", "", "not found"},
		{"rate limited", 429, validatorapi.ReasonTokenRateLimited, "too many requests with this token", 1500 * time.Millisecond, "", "2", "too many requests with this token"},
		{"no description", 401, "NoIdentity", "", 0, `Bearer realm="apitoken", error="invalid_token", error_description="Unauthorized"`, "", "Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				Refuse(w, tc.status, tc.reason, tc.description, tc.retryAfter)
			}))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Values("WWW-Authenticate"); strings.Join(got, "|") != tc.challenge {
				t.Errorf("challenge %q, want %q", got, tc.challenge)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retry {
				t.Errorf("Retry-After %q, want %q", got, tc.retry)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			if got := strings.TrimSuffix(string(body), "\n"); got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
		})
	}
}
