package validator

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// TestRequirementQueryAsParseQuery: readRequirementQuery reads a parameter as
// url.ParseQuery does, and refuses the queries url.ParseQuery reads only in part, for
// the queries proxies send and for 50k random ones built of the characters that
// matter to the parser (separators, escapes, the parameter names).
func TestRequirementQueryAsParseQuery(t *testing.T) {
	queries := []string{
		"", "tenant=acme", "tenant=acme&role=viewer", "role=viewer&tenant=acme&subTenant=payments",
		"tenant=acme&tenant=acme", "tenant=&tenant=globex", "tenant", "tenant=", "=acme", "&&tenant=acme&&",
		"ten%61nt=ac%6De", "tenant=a+b", "tenant=a%2Bb", "tenant=%zz&tenant=acme", "ten%zznt=x&tenant=acme",
		"tenant=acme;role=admin", "tenant=acme&x=1;y=2", "tenant=acme=extra", "Tenant=acme", "tenant=%E2%82%AC",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"tenant", "subTenant", "role", "=", "&", ";", "%", "%6", "%61", "%zz", "+", "a", "acme", " "}
	for range 50_000 {
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		queries = append(queries, b.String())
	}
	for _, raw := range queries {
		want, err := url.ParseQuery(raw)
		got, ok := readRequirementQuery(raw)
		if ok != (err == nil) {
			t.Fatalf("readRequirementQuery(%q) reads it: %t; url.ParseQuery: %v", raw, ok, err)
		}
		if !ok {
			continue
		}
		for i, name := range requirementParams {
			vs := want[name]
			if got[i].n != len(vs) || (got[i].n > 0 && got[i].first != vs[0]) {
				t.Fatalf("readRequirementQuery(%q)[%s] = %+v; url.ParseQuery gives %q", raw, name, got[i], vs)
			}
		}
	}
}

// BenchmarkRequirementQuery: reading the three requirement parameters of a typical
// /authorize query, against the url.Values map the validator built before.
func BenchmarkRequirementQuery(b *testing.B) {
	const raw = "tenant=acme&subTenant=payments&role=viewer"
	b.Run("readRequirementQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			readRequirementQuery(raw)
		}
	})
	b.Run("ParseQuery", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q, _ := url.ParseQuery(raw)
			for _, name := range requirementParams {
				_ = q[name]
			}
		}
	})
}
