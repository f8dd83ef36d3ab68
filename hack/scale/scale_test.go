package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestKeyOf(t *testing.T) {
	for _, tc := range []struct {
		method, path, query, contentType string
		want                             string
		ok                               bool
	}{
		{"POST", "/apis/tokens.apitoken.dev/v1alpha1/namespaces/bench/apitokens", "", "", "POST apitokens", true},
		{"PATCH", "/apis/tokens.apitoken.dev/v1alpha1/namespaces/bench/apitokens/tok-1/status", "", "application/merge-patch+json", "PATCH apitokens/status", true},
		{"PATCH", "/api/v1/namespaces/bench/secrets/tok-1", "", "application/apply-patch+yaml", "APPLY secrets", true},
		{"GET", "/api/v1/namespaces/bench/secrets/tok-1", "", "", "GET secrets", true},
		{"GET", "/api/v1/namespaces/bench/secrets", "", "", "LIST secrets", true},
		{"GET", "/apis/tokens.apitoken.dev/v1alpha1/apitokens", "watch=true", "", "WATCH apitokens", true},
		{"DELETE", "/api/v1/namespaces/bench/secrets", "", "", "DELETECOLLECTION secrets", true},
		{"POST", "/api/v1/namespaces", "", "", "POST namespaces", true},
		{"GET", "/api/v1/namespaces/bench", "", "", "GET namespaces", true},
		{"GET", "/metrics", "", "", "", false},
		{"GET", "/healthz", "", "", "", false},
	} {
		req := &http.Request{Method: tc.method, URL: &url.URL{Path: tc.path, RawQuery: tc.query}, Header: http.Header{}}
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		got, ok := keyOf(req)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("%s %s?%s: %q, %v; want %q, %v", tc.method, tc.path, tc.query, got.String(), ok, tc.want, tc.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	c := counts{
		{"PATCH", "apitokens/status"}: 200,
		{"POST", "secrets"}:           100,
		{"GET", "secrets"}:            10,
		{"LIST", "apitokens"}:         1,
		{"WATCH", "apitokens"}:        2,
		{"POST", "events"}:            100,
		{"PUT", "leases"}:             3,
	}
	p := classify(c, 100, 100)
	if p.Writes != 3 || p.Reads != 0.11 || p.Events != 1 || p.Webhook != 1 {
		t.Errorf("classify = %+v", p)
	}
	if p.Other["PUT leases"] != 3 || p.Detail["POST events"] != 100 {
		t.Errorf("classify detail = %v, other = %v", p.Detail, p.Other)
	}
	if w := operatorWrites(c); w != 400 {
		t.Errorf("operatorWrites = %v, want 400 (leases are the API server's)", w)
	}
	d := counts{{"POST", "secrets"}: 150, {"GET", "secrets"}: 10}.sub(counts{{"POST", "secrets"}: 100, {"GET", "secrets"}: 10, {"PUT", "leases"}: 1})
	if len(d) != 2 || d[requestKey{"POST", "secrets"}] != 50 || d[requestKey{"PUT", "leases"}] != -1 {
		t.Errorf("sub = %v", d)
	}
}

func TestParseMetrics(t *testing.T) {
	page := `# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 7
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="tokens.apitoken.dev",resource="apitokens",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 9
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vapitoken.apitoken.dev",operation="CREATE",rejected="false",type="validating",le="+Inf"} 4
apiserver_admission_webhook_admission_duration_seconds_sum{name="vapitoken.apitoken.dev",operation="CREATE",rejected="false",type="validating"} 0.1
apiserver_admission_webhook_admission_duration_seconds_count{name="vapitoken.apitoken.dev",operation="CREATE",rejected="false",type="validating"} 4
apiserver_admission_webhook_admission_duration_seconds_count{name="other.example.com",operation="CREATE",rejected="false",type="validating"} 3
`
	s, err := parseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if s.requests[requestKey{"POST", "secrets"}] != 9 || s.requests[requestKey{"PATCH", "apitokens/status"}] != 5 || len(s.requests) != 2 {
		t.Errorf("requests = %v", s.requests)
	}
	if s.webhook != 4 {
		t.Errorf("webhook = %v, want 4", s.webhook)
	}
	n, err := reconcileTotal(strings.NewReader(`# TYPE controller_runtime_reconcile_total counter
controller_runtime_reconcile_total{controller="apitoken",result="success"} 10
controller_runtime_reconcile_total{controller="apitoken",result="requeue_after"} 5
controller_runtime_reconcile_total{controller="clustertokenissuer",result="success"} 2
`), "apitoken")
	if err != nil || n != 15 {
		t.Errorf("reconcileTotal = %v, %v; want 15", n, err)
	}
}

func TestProcFiles(t *testing.T) {
	cpu, err := parseStatCPU("1234 (kube apiserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 0 0")
	if err != nil || cpu != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3s (300 ticks)", cpu, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU accepted garbage")
	}
	status := "Name:\tmanager\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\n"
	if v, err := parseStatusKiB(status, "VmHWM"); err != nil || v != 512 {
		t.Errorf("VmHWM = %v, %v; want 512 MiB", v, err)
	}
	if v, err := parseStatusKiB(status, "VmRSS"); err != nil || v != 256 {
		t.Errorf("VmRSS = %v, %v; want 256 MiB", v, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Error("a missing field read as a value")
	}
}

func TestHistogram(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		lo, hi float64
		bins   int
		want   []int
	}{
		{[]float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 10, 5, []int{2, 2, 2, 2, 3}},
		{[]float64{5, 5, 5}, 5, 5, 3, []int{3, 0, 0}},
		{[]float64{-1, 11}, 0, 10, 2, []int{1, 1}},
		{nil, 0, 1, 0, []int{}},
	} {
		got := histogram(tc.values, tc.lo, tc.hi, tc.bins)
		if len(got) != len(tc.want) {
			t.Errorf("histogram(%v) = %v, want %v", tc.values, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("histogram(%v) = %v, want %v", tc.values, got, tc.want)
				break
			}
		}
	}
}

// TestLoadOf: tokens minted together fall due together without jitter, and spread
// with it; the nominal time is renewBefore (a third of the lifetime by default) before
// expiry.
func TestLoadOf(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var states []tokenState
	for i := range 10 {
		states = append(states, tokenState{
			issuedAt: t0, expiresAt: t0.Add(30 * time.Hour),
			renewal: t0.Add(20*time.Hour - time.Duration(i)*6*time.Minute),
		})
	}
	states = append(states, tokenState{}) // not minted yet: left out
	l := loadOf(states, 5)
	if got := nominalRenewal(states[0]); !got.Equal(t0.Add(20 * time.Hour)) {
		t.Errorf("nominalRenewal = %s", got)
	}
	if l.Nominal[4] != 10 || l.Jitter[0] < 1 {
		t.Errorf("loadOf = %+v", l)
	}
	sum := 0
	for _, c := range l.Jitter {
		sum += c
	}
	if sum != 10 {
		t.Errorf("loadOf counted %d tokens, want 10", sum)
	}
	if s := (tokenState{issuedAt: t0, expiresAt: t0.Add(30 * time.Hour), renewLater: time.Hour}); !nominalRenewal(s).Equal(t0.Add(29 * time.Hour)) {
		t.Errorf("nominalRenewal with renewBefore = %s", nominalRenewal(s))
	}
}
