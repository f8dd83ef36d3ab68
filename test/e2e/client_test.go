package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// endpoint is one of the three ways to ask the validator about a token.
type endpoint int

const (
	authorizeEndpoint endpoint = iota
	validateEndpoint
	tokenReviewEndpoint
	endpoints
)

func (e endpoint) String() string {
	return [...]string{"authorize", "validate", "tokenreview"}[e]
}

// verdict is the validator's answer to one question.
type verdict struct {
	// status is the HTTP status of /authorize; for /v1/validate the decision's
	// status; for a TokenReview 200 when authenticated, 401 when not (or the HTTP
	// status when it is not 200).
	status  int
	allowed bool
	// tokenID is the ID of the token the validator accepted.
	tokenID string
	reason  string
	// echo says the answer holds the token it was asked about (in its body or its
	// WWW-Authenticate header), which it never should.
	echo bool
	// err is a transport error; status is 0 then.
	err error
}

// ask asks the validator at base whether tok is valid for tenant and role (a
// TokenReview asks only whether it is valid).
func ask(ctx context.Context, hc *http.Client, base string, ep endpoint, tok, tenant, role string) verdict {
	var req *http.Request
	var err error
	switch ep {
	case authorizeEndpoint:
		q := url.Values{}
		if tenant != "" {
			q.Set("tenant", tenant)
		}
		if role != "" {
			q.Set("role", role)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+validatorapi.PathAuthorize+"?"+q.Encode(), nil)
		if err == nil && tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	case validateEndpoint:
		body, _ := json.Marshal(validatorapi.ValidateRequest{Token: tok, Requirement: validatorapi.Requirement{Tenant: tenant, Role: role}})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+validatorapi.PathValidate, bytes.NewReader(body))
	case tokenReviewEndpoint:
		body, _ := json.Marshal(authnv1.TokenReview{
			TypeMeta: metav1.TypeMeta{Kind: "TokenReview", APIVersion: authnv1.SchemeGroupVersion.String()},
			Spec:     authnv1.TokenReviewSpec{Token: tok},
		})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+validatorapi.PathTokenReview, bytes.NewReader(body))
	}
	if err != nil {
		return verdict{err: err}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return verdict{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return verdict{err: err}
	}
	return readVerdict(ep, resp, raw, tok)
}

// readVerdict reads the answer of ep to a question about tok.
func readVerdict(ep endpoint, resp *http.Response, raw []byte, tok string) verdict {
	v := verdict{status: resp.StatusCode}
	// Short strings can occur by chance; a token of 16 characters or more cannot.
	if len(tok) >= 16 && (bytes.Contains(raw, []byte(tok)) || strings.Contains(resp.Header.Get("WWW-Authenticate"), tok)) {
		v.echo = true
	}
	switch {
	case ep == authorizeEndpoint || resp.StatusCode != http.StatusOK:
		v.allowed = resp.StatusCode == http.StatusOK
		v.tokenID = resp.Header.Get(validatorapi.HeaderTokenID)
		v.reason = strings.TrimSpace(string(raw))
		if a := resp.Header.Get("WWW-Authenticate"); a != "" {
			v.reason = a
		}
	case ep == validateEndpoint:
		var out validatorapi.ValidateResponse
		if err := json.Unmarshal(raw, &out); err != nil {
			v.err = fmt.Errorf("decoding a validate response: %w", err)
			return v
		}
		v.status, v.allowed, v.reason = out.Status, out.Allowed, out.Reason
		if out.Identity != nil {
			v.tokenID = out.Identity.TokenID
		}
	case ep == tokenReviewEndpoint:
		var out authnv1.TokenReview
		if err := json.Unmarshal(raw, &out); err != nil {
			v.err = fmt.Errorf("decoding a TokenReview: %w", err)
			return v
		}
		v.allowed, v.reason = out.Status.Authenticated, out.Status.Error
		v.status = http.StatusUnauthorized
		if v.allowed {
			v.status = http.StatusOK
			if ids := out.Status.User.Extra[validatorapi.ExtraTokenID]; len(ids) > 0 {
				v.tokenID = ids[0]
			}
		}
	}
	return v
}

// held is a token the client read from a Secret and still presents.
type held struct {
	id, value string
	firstRead time.Time
}

// observation is one question asked about a token read from a Secret.
type observation struct {
	apiToken string
	tokenID  string
	endpoint endpoint
	// current says the Secret held the token at the read just before.
	current   bool
	req, resp time.Time
	v         verdict
}

// secretRead is one read of a token Secret.
type secretRead struct {
	apiToken, tokenID string
	at                time.Time
}

// prober is the client of the chaos: like a pod that mounts a token Secret, it keeps
// reading each APIToken's Secret (straight from the API server), and like the
// workload that receives those tokens, it keeps asking the validator about every
// token it read, the current one and those it read before, until they are long
// expired. What it saw is judged against the history at the end.
type prober struct {
	ns        string
	targets   []string
	url       string
	hc        *http.Client
	keep      time.Duration
	limiter   *rate.Limiter
	workers   int
	tenant    string
	role      string
	endpoints []endpoint

	mu         sync.Mutex
	obs        []observation
	reads      []secretRead
	readErrors int
	missing    int
}

// newProber makes a prober for the APITokens targets of ns: readRate Secret reads per
// second in all, each token presented until keep after it was first read.
func newProber(ns string, targets []string, validatorURL string, readRate float64, keep time.Duration) *prober {
	workers := min(8, len(targets))
	return &prober{
		ns: ns, targets: targets, url: validatorURL, keep: keep, workers: workers,
		tenant: ns, role: "viewer",
		limiter:   rate.NewLimiter(rate.Limit(readRate), 1),
		hc:        &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}},
		endpoints: []endpoint{authorizeEndpoint, validateEndpoint, tokenReviewEndpoint},
	}
}

// run probes until ctx is done.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	for w := range p.workers {
		var mine []string
		for i := w; i < len(p.targets); i += p.workers {
			mine = append(mine, p.targets[i])
		}
		wg.Go(func() { p.work(ctx, mine) })
	}
	wg.Wait()
	p.hc.CloseIdleConnections()
}

func (p *prober) work(ctx context.Context, names []string) {
	holds := map[string][]held{}
	n := 0
	for {
		for _, name := range names {
			if err := p.limiter.Wait(ctx); err != nil {
				return
			}
			now := time.Now()
			id, value, err := secretToken(ctx, p.ns, name)
			current := ""
			switch {
			case err == nil:
				current = id
				p.mu.Lock()
				p.reads = append(p.reads, secretRead{apiToken: name, tokenID: id, at: now})
				p.mu.Unlock()
				hs := holds[name]
				if len(hs) == 0 || hs[len(hs)-1].id != id {
					holds[name] = append(hs, held{id: id, value: value, firstRead: now})
				}
			case ctx.Err() != nil:
				return
			case apierrors.IsNotFound(err):
				p.mu.Lock()
				p.missing++
				p.mu.Unlock()
			default:
				// The API server may be down: present what was read before.
				p.mu.Lock()
				p.readErrors++
				p.mu.Unlock()
			}
			var kept []held
			for _, h := range holds[name] {
				if time.Since(h.firstRead) > p.keep {
					continue
				}
				kept = append(kept, h)
				ep := p.endpoints[n%len(p.endpoints)]
				n++
				req := time.Now()
				v := ask(ctx, p.hc, p.url, ep, h.value, p.tenant, p.role)
				resp := time.Now()
				if ctx.Err() != nil {
					return
				}
				p.mu.Lock()
				p.obs = append(p.obs, observation{apiToken: name, tokenID: h.id, endpoint: ep, current: h.id == current, req: req, resp: resp, v: v})
				p.mu.Unlock()
			}
			holds[name] = kept
		}
	}
}

// results returns what the prober saw.
func (p *prober) results() ([]observation, []secretRead) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]observation(nil), p.obs...), append([]secretRead(nil), p.reads...)
}

// tokenIDs are the IDs of every token the prober read.
func (p *prober) tokenIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, r := range p.reads {
		if !seen[r.tokenID] {
			seen[r.tokenID] = true
			out = append(out, r.tokenID)
		}
	}
	return out
}
