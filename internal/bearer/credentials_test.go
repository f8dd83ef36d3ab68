package bearer

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCredentials covers every place a token may come from, over a real listener so
// that header names arrive as a client spells them.
func TestCredentials(t *testing.T) {
	creds := &Credentials{
		Headers:  []string{"X-Api-Key", "X-Other-Key"},
		IDHeader: "X-Api-Key-Id", SecretHeader: "X-Api-Key-Secret",
		Prefix: func(id string) string {
			if id == "known" {
				return "acme"
			}
			return ""
		},
	}
	noPrefix := &Credentials{IDHeader: "X-Api-Key-Id", SecretHeader: "X-Api-Key-Secret"}
	headersOnly := &Credentials{Headers: []string{"X-Api-Key"}}

	for _, tc := range []struct {
		name    string
		creds   *Credentials
		headers map[string]string
		want    string
	}{
		{"nothing", creds, nil, ""},
		{"bearer", creds, map[string]string{"Authorization": "Bearer abc"}, "abc"},
		{"scheme is case-insensitive", creds, map[string]string{"Authorization": "bEaReR abc"}, "abc"},
		{"spaces trimmed", creds, map[string]string{"Authorization": "Bearer   abc  "}, "abc"},
		{"another scheme is no token", creds, map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, ""},
		{"a scheme without a token", creds, map[string]string{"Authorization": "Bearer"}, ""},
		{"another scheme, then a token header", creds, map[string]string{"Authorization": "Basic x", "X-Api-Key": "k"}, "k"},
		{"bearer comes first", creds, map[string]string{"Authorization": "Bearer b", "X-Api-Key": "k"}, "b"},
		{"token header", creds, map[string]string{"x-api-key": " k "}, "k"},
		{"token headers in order", creds, map[string]string{"X-Other-Key": "o", "X-Api-Key": "k"}, "k"},
		{"second token header", creds, map[string]string{"X-Other-Key": "o"}, "o"},
		{"token header before ID and secret", creds, map[string]string{"X-Api-Key": "k", "X-Api-Key-Id": "apt_id", "X-Api-Key-Secret": "s"}, "k"},
		{"ID with its prefix", creds, map[string]string{"X-Api-Key-Id": "xyz_id", "X-Api-Key-Secret": "s"}, "xyz_id_s"},
		{"ID whose issuer's prefix is known", creds, map[string]string{"X-Api-Key-Id": "known", "X-Api-Key-Secret": "s"}, "acme_known_s"},
		{"ID of an unknown issuer", creds, map[string]string{"X-Api-Key-Id": "other", "X-Api-Key-Secret": "s"}, "apt_other_s"},
		{"no prefix lookup", noPrefix, map[string]string{"X-Api-Key-Id": "other", "X-Api-Key-Secret": "s"}, "apt_other_s"},
		{"ID alone", creds, map[string]string{"X-Api-Key-Id": "apt_id"}, ""},
		{"secret alone", creds, map[string]string{"X-Api-Key-Secret": "s"}, ""},
		{"ID and secret not configured", headersOnly, map[string]string{"X-Api-Key-Id": "apt_id", "X-Api-Key-Secret": "s"}, ""},
		{"unconfigured header", headersOnly, map[string]string{"X-Token": "t"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tok, err := tc.creds.Token(r)
				if err != nil {
					t.Errorf("unexpected error %v", err)
				}
				_, _ = io.WriteString(w, tok)
			}))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != tc.want {
				t.Errorf("token %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRepeatedCredentials: a header a token may come from, given twice, is an error
// naming the header, whether the values agree or not; headers the token does not come
// from may repeat.
func TestRepeatedCredentials(t *testing.T) {
	creds := &Credentials{Headers: []string{"X-Api-Key"}, IDHeader: "X-Api-Key-Id", SecretHeader: "X-Api-Key-Secret"}
	for _, tc := range []struct {
		name    string
		headers [][2]string
		want    string // the header named by the error; "" means none
	}{
		{"two Authorization headers", [][2]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}}, "Authorization"},
		{"the same Authorization twice", [][2]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer a"}}, "Authorization"},
		{"Basic and Bearer", [][2]string{{"Authorization", "Basic x"}, {"Authorization", "Bearer a"}}, "Authorization"},
		{"two token headers", [][2]string{{"x-api-key", "a"}, {"X-Api-Key", "b"}}, "X-Api-Key"},
		{"two ID headers", [][2]string{{"X-Api-Key-Id", "apt_a"}, {"X-Api-Key-Id", "apt_b"}, {"X-Api-Key-Secret", "s"}}, "X-Api-Key-Id"},
		{"two secret headers", [][2]string{{"X-Api-Key-Id", "apt_a"}, {"X-Api-Key-Secret", "s"}, {"X-Api-Key-Secret", "t"}}, "X-Api-Key-Secret"},
		{"other headers repeat freely", [][2]string{{"Authorization", "Bearer a"}, {"Accept", "a"}, {"Accept", "b"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tok, err := creds.Token(r)
				var rh *RepeatedHeader
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("unexpected error %v", err)
				case tc.want != "" && (!errors.As(err, &rh) || rh.Name != tc.want || tok != ""):
					t.Errorf("got %q, %v; want a repeated %s", tok, err, tc.want)
				case tc.want != "" && err.Error() != "the request carries more than one "+tc.want+" header":
					t.Errorf("message %q", err)
				}
			}))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.headers {
				req.Header.Add(h[0], h[1])
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		})
	}
}
