package bearer

import (
	"encoding/json"
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
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				Refuse(w, r, tc.status, tc.reason, tc.description, tc.retryAfter)
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
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", got)
			}

			// The same refusal, to a client that asks for JSON.
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			jresp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer jresp.Body.Close()
			if jresp.StatusCode != tc.status || jresp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("JSON: status %d, Content-Type %q", jresp.StatusCode, jresp.Header.Get("Content-Type"))
			}
			if got := jresp.Header.Values("WWW-Authenticate"); strings.Join(got, "|") != tc.challenge {
				t.Errorf("JSON: challenge %q, want %q", got, tc.challenge)
			}
			var e validatorapi.Error
			if err := json.NewDecoder(jresp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e != (validatorapi.Error{Error: tc.reason, Message: tc.body}) {
				t.Errorf("JSON body %+v, want error %q, message %q", e, tc.reason, tc.body)
			}
		})
	}
}

func TestWantsJSON(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"application/json"}, true},
		{[]string{"Application/JSON; charset=utf-8"}, true},
		{[]string{"text/html, application/json;q=0.9"}, true},
		{[]string{"text/plain", "application/json"}, true},
		{[]string{"application/json;q=0"}, false},
		{[]string{"application/json;q=nope"}, false},
		{[]string{"*/*"}, false},
		{[]string{"application/problem+json"}, false},
		{[]string{"text/plain"}, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, a := range tc.accept {
			r.Header.Add("Accept", a)
		}
		if got := WantsJSON(r); got != tc.want {
			t.Errorf("Accept %q: WantsJSON = %t, want %t", tc.accept, got, tc.want)
		}
	}
}

// TestRetryMessage: the message says the wait Retry-After says.
func TestRetryMessage(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "slow down: try again in 1 second",
		time.Second:             "slow down: try again in 1 second",
		1001 * time.Millisecond: "slow down: try again in 2 seconds",
		10 * time.Second:        "slow down: try again in 10 seconds",
	} {
		if got := RetryMessage("slow down", d); got != want {
			t.Errorf("RetryMessage(%s) = %q, want %q", d, got, want)
		}
		h := http.Header{}
		SetRetryAfter(h, d)
		if !strings.Contains(want, " "+h.Get("Retry-After")+" second") {
			t.Errorf("Retry-After %s disagrees with %q", h.Get("Retry-After"), want)
		}
	}
}
