package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// requestKey is one kind of API request as kube-apiserver counts it in
// apiserver_request_total: its verb (POST, PUT, PATCH, APPLY, DELETE, GET, LIST,
// WATCH) and its resource, with the subresource after a slash (apitokens/status).
type requestKey struct {
	verb, resource string
}

func (k requestKey) String() string { return k.verb + " " + k.resource }

// counts are requests by kind.
type counts map[requestKey]float64

// sub returns c - o, dropping kinds that did not change.
func (c counts) sub(o counts) counts {
	out := counts{}
	for k, v := range c {
		if d := v - o[k]; d != 0 {
			out[k] = d
		}
	}
	for k, v := range o {
		if _, ok := c[k]; !ok && v != 0 {
			out[k] = -v
		}
	}
	return out
}

// writeVerbs change something.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// tokenResources are the resources a token's lifecycle touches; requests to others
// (the API server's own leases, the issuer's status) are reported apart.
var tokenResources = map[string]bool{"apitokens": true, "apitokens/status": true, "secrets": true}

// operatorResources are those the manager writes.
var operatorResources = map[string]bool{
	"apitokens": true, "apitokens/status": true, "secrets": true, "events": true,
	"clustertokenissuers": true, "clustertokenissuers/status": true,
}

// operatorWrites counts the writes in c to resources the manager writes.
func operatorWrites(c counts) float64 {
	var n float64
	for k, v := range c {
		if writeVerbs[k.verb] && operatorResources[k.resource] {
			n += v
		}
	}
	return n
}

// perToken is what the requests of a phase cost each of n APITokens.
type perToken struct {
	Writes float64 `json:"writes"`
	// Reads are GETs and LISTs: past the cache, since a cached client sends none.
	Reads  float64 `json:"reads"`
	Events float64 `json:"events"`
	// Webhook is how many admission reviews the API server sent the webhook.
	Webhook float64 `json:"webhookCalls"`
	// Detail lists every kind of request on the token resources and events, in all.
	Detail map[string]float64 `json:"detail"`
	// Other lists requests to other resources, in all.
	Other map[string]float64 `json:"other,omitempty"`
}

// classify divides the requests of a phase by n.
func classify(c counts, webhookCalls float64, n int) perToken {
	p := perToken{Detail: map[string]float64{}, Other: map[string]float64{}, Webhook: webhookCalls / float64(n)}
	for k, v := range c {
		switch {
		case k.resource == "events":
			if writeVerbs[k.verb] {
				p.Events += v
			}
			p.Detail[k.String()] += v
		case tokenResources[k.resource]:
			p.Detail[k.String()] += v
			switch {
			case writeVerbs[k.verb]:
				p.Writes += v
			case k.verb == "GET" || k.verb == "LIST":
				p.Reads += v
			}
		default:
			p.Other[k.String()] += v
		}
	}
	p.Writes /= float64(n)
	p.Reads /= float64(n)
	p.Events /= float64(n)
	return p
}

// snapshot is what kube-apiserver has counted so far.
type snapshot struct {
	requests counts
	// webhook counts admission reviews sent to the operator's webhook.
	webhook float64
}

// webhookName is the operator's admission webhook (config/webhook).
const webhookName = "vapitoken.apitoken.dev"

// parseMetrics reads apiserver_request_total and the operator's webhook calls from
// kube-apiserver's /metrics.
func parseMetrics(r io.Reader) (snapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{requests: counts{}}
	if f, ok := families["apiserver_request_total"]; ok {
		for _, m := range f.GetMetric() {
			l := labels(m.GetLabel())
			if l["resource"] == "" {
				continue // non-resource URLs: /metrics, /healthz
			}
			res := l["resource"]
			if sub := l["subresource"]; sub != "" {
				res += "/" + sub
			}
			s.requests[requestKey{verb: l["verb"], resource: res}] += m.GetCounter().GetValue()
		}
	}
	if f, ok := families["apiserver_admission_webhook_admission_duration_seconds"]; ok {
		for _, m := range f.GetMetric() {
			if labels(m.GetLabel())["name"] == webhookName {
				s.webhook += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return s, nil
}

func labels[L interface {
	GetName() string
	GetValue() string
}](pairs []L) map[string]string {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		out[p.GetName()] = p.GetValue()
	}
	return out
}

// apiServer scrapes kube-apiserver's metrics.
type apiServer struct {
	rc rest.Interface
}

func (a *apiServer) snapshot(ctx context.Context) (snapshot, error) {
	raw, err := a.rc.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return snapshot{}, fmt.Errorf("reading kube-apiserver's metrics: %w", err)
	}
	return parseMetrics(strings.NewReader(string(raw)))
}

// ownRequests counts the harness's own requests in kube-apiserver's terms, so that a
// phase's figures are the operator's alone.
type ownRequests struct {
	mu sync.Mutex
	c  counts
}

func (o *ownRequests) take() counts {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.c
	o.c = counts{}
	return out
}

type countingTransport struct {
	next http.RoundTripper
	own  *ownRequests
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if k, ok := keyOf(req); ok {
		t.own.mu.Lock()
		if t.own.c == nil {
			t.own.c = counts{}
		}
		t.own.c[k]++
		t.own.mu.Unlock()
	}
	return t.next.RoundTrip(req)
}

// keyOf names a client request as kube-apiserver's metrics do; false for
// non-resource requests.
func keyOf(req *http.Request) (requestKey, bool) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// /api/v1/... or /apis/group/version/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return requestKey{}, false
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return requestKey{}, false
	}
	resource, named := parts[0], len(parts) >= 2
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	verb := req.Method
	switch {
	case verb == http.MethodGet && req.URL.Query().Get("watch") == "true":
		verb = "WATCH"
	case verb == http.MethodGet && !named:
		verb = "LIST"
	case verb == http.MethodPatch && req.Header.Get("Content-Type") == "application/apply-patch+yaml":
		verb = "APPLY"
	case verb == http.MethodDelete && !named:
		verb = "DELETECOLLECTION"
	}
	return requestKey{verb: verb, resource: resource}, true
}

// sortedKeys lists the keys of m in order.
func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
