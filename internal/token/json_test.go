package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseClaims(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		ok   bool
	}{
		{"empty object", `{}`, true},
		{"whitespace", " \t\r\n{ \"iss\" : \"a\" , \"exp\" : 1 } \n", true},
		{"unknown members of every type", `{"x":{"a":[1,2.5e3,-0,true,false,null,"s",{}],"b":[]},"y":null}`, true},
		{"escapes", `{"iss":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800"}`, true},
		{"null claims", `{"iss":null,"aud":null,"exp":null,"scope":null}`, true},
		{"empty aud array", `{"aud":[]}`, true},
		{"not an object", `[]`, false},
		{"top-level null", `null`, false},
		{"trailing data", `{}x`, false},
		{"two objects", `{}{}`, false},
		{"trailing comma", `{"iss":"a",}`, false},
		{"missing colon", `{"iss" "a"}`, false},
		{"single quotes", `{'iss':'a'}`, false},
		{"duplicate known member", `{"iss":"a","iss":"b"}`, false},
		{"duplicate unknown member", `{"x":1,"x":2}`, true},
		{"iss not a string", `{"iss":1}`, false},
		{"aud of numbers", `{"aud":[1]}`, false},
		{"aud with null", `{"aud":["a",null]}`, false},
		{"exp a string", `{"exp":"1"}`, false},
		{"exp out of range", `{"exp":1e400}`, false},
		{"exp beyond 2^53", `{"exp":9007199254740993}`, false},
		{"exp float beyond 2^53", `{"exp":1e16}`, false},
		{"leading zero", `{"exp":01}`, false},
		{"bare minus", `{"exp":-}`, false},
		{"dot without digits", `{"exp":1.}`, false},
		{"control character", "{\"iss\":\"a\x01\"}", false},
		{"invalid UTF-8", "{\"iss\":\"\xff\"}", false},
		{"bad escape", `{"iss":"\x"}`, false},
		{"short unicode escape", `{"iss":"\u00e"}`, false},
		{"unterminated string", `{"iss":"a`, false},
		{"unterminated object", `{"iss":"a"`, false},
		{"too deep", `{"x":` + strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2) + `}`, false},
		{"deep enough", `{"x":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`, true},
		{"bad literal", `{"x":nul}`, false},
		{"parent and depth", `{"parent":"01J","depth":2}`, true},
		{"depth null", `{"depth":null}`, true},
		{"depth a fraction", `{"depth":1.0}`, false},
		{"depth negative", `{"depth":-1}`, false},
		{"depth above MaxDepth", `{"depth":9}`, false},
		{"depth a string", `{"depth":"1"}`, false},
		{"parent not a string", `{"parent":1}`, false},
		{"memberships", `{"memberships":[{"tenant":"acme","role":"editor"},{"tenant":"globex","sub_tenant":"eu","role":"viewer","x":[{}]}]}`, true},
		{"memberships null", `{"memberships":null}`, true},
		{"memberships empty", `{"memberships":[]}`, true},
		{"membership empty", `{"memberships":[{}]}`, true},
		{"membership nulls", `{"memberships":[{"tenant":null,"sub_tenant":null,"role":null}]}`, true},
		{"memberships an object", `{"memberships":{"tenant":"acme"}}`, false},
		{"membership null", `{"memberships":[null]}`, false},
		{"membership a string", `{"memberships":["acme"]}`, false},
		{"membership tenant a number", `{"memberships":[{"tenant":1}]}`, false},
		{"membership tenant twice", `{"memberships":[{"tenant":"a","tenant":"b"}]}`, false},
		{"membership trailing comma", `{"memberships":[{"tenant":"a",}]}`, false},
		{"memberships trailing comma", `{"memberships":[{"tenant":"a"},]}`, false},
		{"membership unterminated", `{"memberships":[{"tenant":"a"`, false},
		{"memberships twice", `{"memberships":[],"memberships":[]}`, false},
		{"membership too deep", `{"memberships":[{"x":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}]}`, false},
	} {
		var w wireClaims
		err := parseClaims(tc.json, &w)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok && !json.Valid([]byte(tc.json)) {
			t.Errorf("%s: accepted invalid JSON", tc.name)
		}
	}
	var w wireClaims
	if err := parseClaims((`{"iss":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800"}`), &w); err != nil {
		t.Fatal(err)
	}
	if want := "\"\\/\b\f\n\r\té😀\uFFFD"; w.Issuer != want {
		t.Errorf("unescaped %q, want %q", w.Issuer, want)
	}
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		json, alg, kid, forbidden string
		ok                        bool
	}{
		{`{"alg":"ES256","kid":"k","typ":"JWT"}`, "ES256", "k", "", true},
		{`{"\u0061lg":"ES256"}`, "ES256", "", "", true},
		{`{"ALG":"none","alg":"ES256"}`, "ES256", "", "", true}, // names are case-sensitive
		{`{"alg":"ES256","alg":"none"}`, "", "", "", false},
		{`{"alg":"ES256","x5c":["a"],"crit":["b"]}`, "ES256", "", "x5c", true},
		{`{"jwk":null}`, "", "", "jwk", true},
		{`{"alg":["ES256"]}`, "", "", "", false},
	} {
		var h header
		err := parseHeader(tc.json, &h)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.json, err, tc.ok)
			continue
		}
		if tc.ok && (h.alg != tc.alg || h.kid != tc.kid || h.forbidden != tc.forbidden) {
			t.Errorf("%s: got %+v", tc.json, h)
		}
	}
}

// Claims that need escaping survive minting (encoding/json via golang-jwt)
// and verifying (our reader).
func TestClaimsWithEscapesRoundTrip(t *testing.T) {
	v := testVerifier(t)
	c := testClaims()
	c.Subject = "apitoken:<ns>:\"name\" & \\ \u2028 é 😀 \x7f"
	c.Tenant = "\t\n"
	tok, err := MintJWT(testKey(t, EdDSA, false), c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != c.Subject || got.Tenant != c.Tenant {
		t.Errorf("got %q %q", got.Subject, got.Tenant)
	}
}

// The memberships claim survives minting and verifying, in order.
func TestMembershipsRoundTrip(t *testing.T) {
	v := testVerifier(t)
	c := testClaims()
	c.Tenant, c.SubTenant, c.Role = "", "", ""
	c.Memberships = []Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
	tok, err := MintJWT(testKey(t, ES256, false), c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Memberships, c.Memberships) || got.Tenant != "" || got.Role != "" {
		t.Errorf("got memberships %+v, tenant %q, role %q", got.Memberships, got.Tenant, got.Role)
	}
	one, err := MintJWT(testKey(t, ES256, false), testClaims())
	if err != nil {
		t.Fatal(err)
	}
	single, err := v.Verify(one)
	if err != nil {
		t.Fatal(err)
	}
	if single.Memberships != nil {
		t.Errorf("a single-tenant token has memberships %+v", single.Memberships)
	}
}

func TestMintRefusesAmbiguousMemberships(t *testing.T) {
	key := testKey(t, ES256, false)
	for name, change := range map[string]func(*Claims){
		"beside a tenant":     func(c *Claims) { c.Tenant = "acme" },
		"beside a sub-tenant": func(c *Claims) { c.SubTenant = "eu" },
		"beside a role":       func(c *Claims) { c.Role = "admin" },
		"without a role":      func(c *Claims) { c.Memberships[1].Role = "" },
		"without a tenant":    func(c *Claims) { c.Memberships[0].Tenant = "" },
		"a tenant twice":      func(c *Claims) { c.Memberships[1].Tenant = "acme" },
	} {
		c := testClaims()
		c.Tenant, c.SubTenant, c.Role = "", "", ""
		c.Memberships = []Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", Role: "viewer"}}
		if _, err := MintJWT(key, c); err != nil {
			t.Fatalf("the base claims: %v", err)
		}
		change(&c)
		if _, err := MintJWT(key, c); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
}

// FuzzJSON checks the claims and header readers against encoding/json: what
// they accept must be valid JSON, and the values they read must be the ones
// encoding/json reads (with exact, case-sensitive member names).
func FuzzJSON(f *testing.F) {
	tok, err := MintJWT(testKey(f, ES256, false), testClaims())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range strings.Split(tok, ".")[:2] {
		b, _ := base64.RawURLEncoding.DecodeString(s)
		f.Add(b)
	}
	for _, s := range []string{`{}`, `{"aud":"a","exp":1.5,"x":[{"y":null}]}`, `{"iss":"\ud83d\ude00\u00e9\n"}`,
		`{"exp":-1e3,"nbf":0,"iat":9007199254740992}`, `{"alg":"ES256","jku":"x","kid":"k"}`,
		`{"memberships":[{"tenant":"a","role":"r"},{"sub_tenant":null,"x":{"y":[1]}}],"memberships":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w wireClaims
		errC := parseClaims(string(data), &w)
		var h header
		errH := parseHeader(string(data), &h)
		if errC != nil && errH != nil {
			return // stricter than encoding/json is allowed
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil || m == nil {
			t.Fatalf("accepted %q, encoding/json: %v", data, err)
		}
		str := func(k string) string {
			switch v := m[k].(type) {
			case nil:
				return ""
			case string:
				return v
			}
			t.Fatalf("accepted %s of type %T in %q", k, m[k], data)
			return ""
		}
		if errH == nil {
			if h.alg != str("alg") || h.kid != str("kid") {
				t.Fatalf("header %+v from %q", h, data)
			}
			_, present := m[h.forbidden]
			anyForbidden := false
			for _, k := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
				_, ok := m[k]
				anyForbidden = anyForbidden || ok
			}
			if anyForbidden != (h.forbidden != "") || h.forbidden != "" && !present {
				t.Fatalf("forbidden %q from %q", h.forbidden, data)
			}
		}
		if errC != nil {
			return
		}
		if w.Issuer != str("iss") || w.Subject != str("sub") || w.ID != str("jti") || w.Tenant != str("tenant") ||
			w.SubTenant != str("sub_tenant") || w.Role != str("role") || w.Scope != str("scope") || w.Parent != str("parent") {
			t.Fatalf("claims %+v from %q", w, data)
		}
		var aud []string
		switch v := m["aud"].(type) {
		case nil:
		case string:
			aud = []string{v}
		case []any:
			aud = []string{}
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					t.Fatalf("accepted aud %v", v)
				}
				aud = append(aud, s)
			}
		default:
			t.Fatalf("accepted aud %v", v)
		}
		if !slices.Equal(aud, w.Audience) || (aud == nil) != (w.Audience == nil) {
			t.Fatalf("aud %q, encoding/json %q", w.Audience, aud)
		}
		var ms []wireMembership
		switch v := m["memberships"].(type) {
		case nil:
		case []any:
			ms = []wireMembership{}
			for _, e := range v {
				o, ok := e.(map[string]any)
				if !ok {
					t.Fatalf("accepted membership %v in %q", e, data)
				}
				field := func(k string) string {
					switch s := o[k].(type) {
					case nil:
						return ""
					case string:
						return s
					}
					t.Fatalf("accepted membership %s of type %T in %q", k, o[k], data)
					return ""
				}
				ms = append(ms, wireMembership{Tenant: field("tenant"), SubTenant: field("sub_tenant"), Role: field("role")})
			}
		default:
			t.Fatalf("accepted memberships %v", v)
		}
		if !slices.Equal(ms, w.Memberships) || (ms == nil) != (w.Memberships == nil) {
			t.Fatalf("memberships %+v, encoding/json %+v, from %q", w.Memberships, ms, data)
		}
		switch n := m["depth"].(type) {
		case nil:
			if w.Depth != 0 {
				t.Fatalf("depth %d from %q", w.Depth, data)
			}
		case json.Number:
			if want, err := strconv.Atoi(string(n)); err != nil || want != w.Depth {
				t.Fatalf("depth %d, encoding/json %s", w.Depth, n)
			}
		default:
			t.Fatalf("accepted depth %v", n)
		}
		for k, d := range map[string]numericDate{"exp": w.ExpiresAt, "iat": w.IssuedAt, "nbf": w.NotBefore} {
			n, _ := m[k].(json.Number)
			if m[k] != nil && n == "" {
				t.Fatalf("accepted %s %v", k, m[k])
			}
			if n == "" {
				if d.set {
					t.Fatalf("%s set from %q", k, data)
				}
				continue
			}
			want, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				f, _ := strconv.ParseFloat(string(n), 64)
				want = int64(math.Floor(f))
			}
			if !d.set || d.sec != want {
				t.Fatalf("%s = %+v, want %d", k, d, want)
			}
		}
	})
}
