package middleware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Defaults of ValidatorOptions.
const (
	DefaultCacheTTL  = 10 * time.Second
	DefaultCacheSize = 4096
)

// ValidatorOptions configure a Validator.
type ValidatorOptions struct {
	// URL is the validator's base URL, e.g.
	// https://apitoken-validator.apitoken-system.svc. Required.
	URL string
	// Client sends the requests. Default: a client with a 5s timeout.
	Client *http.Client
	// CacheTTL is how long an answer is reused: also how long a revoked token may
	// still be accepted. Default DefaultCacheTTL; negative disables the cache.
	CacheTTL time.Duration
	// CacheSize bounds the cache's entries. Default DefaultCacheSize.
	CacheSize int
	// Clock is the cache's clock. Default: the real clock.
	Clock Clock
}

// Validator is a Checker that asks the validator service. The requirement goes with
// the token, so the validator decides with the issuer's role graph.
type Validator struct {
	endpoint string
	client   *http.Client
	ttl      time.Duration
	clock    Clock
	// cache is nil when disabled.
	cache *lru[cacheKey, *cacheEntry]
}

// cacheKey holds a hash of the token, never the token: a memory dump of the cache
// gives away no credential.
type cacheKey struct {
	hash [sha256.Size]byte
	req  Requirement
}

type cacheEntry struct {
	d        Decision
	notAfter time.Time
}

// NewValidator returns a Validator.
func NewValidator(opts ValidatorOptions) (*Validator, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("middleware: validator URL %q is not an http(s) URL", opts.URL)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	v := &Validator{
		endpoint: strings.TrimSuffix(opts.URL, "/") + validatorapi.PathValidate,
		client:   opts.Client,
		ttl:      opts.CacheTTL,
		clock:    opts.Clock,
	}
	if opts.CacheTTL > 0 {
		v.cache = newLRU[cacheKey, *cacheEntry](opts.CacheSize)
	}
	return v, nil
}

// Check implements Checker.
func (v *Validator) Check(ctx context.Context, tok string, req Requirement) (Decision, error) {
	now := v.clock.Now()
	var key cacheKey
	if v.cache != nil {
		key = cacheKey{hash: sha256.Sum256([]byte(tok)), req: req}
		if e, ok := v.cache.Get(key); ok {
			if now.Before(e.notAfter) {
				return e.d, nil
			}
			v.cache.Remove(key)
		}
	}
	d, err := v.ask(ctx, tok, req)
	if err != nil {
		return Decision{}, err
	}
	// Only answers about an authenticated token are cached. A 401 may be a token the
	// validator's informers have not seen yet (just rotated), and a 429 is about now.
	if v.cache != nil && d.Identity != nil && (d.Status == http.StatusOK || d.Status == http.StatusForbidden || d.Status == http.StatusNotFound) {
		notAfter := now.Add(v.ttl)
		if exp := d.Identity.ExpiresAt; !exp.IsZero() && exp.Before(notAfter) {
			notAfter = exp
		}
		v.cache.Add(key, &cacheEntry{d: d, notAfter: notAfter})
	}
	return d, nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ask sends one request. Errors never carry the token or the response body.
func (v *Validator) ask(ctx context.Context, tok string, req Requirement) (Decision, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := json.NewEncoder(buf).Encode(validatorapi.ValidateRequest{Token: tok, Requirement: req}); err != nil {
		return Decision{}, fmt.Errorf("middleware: encoding the validate request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, v.endpoint, bytes.NewReader(buf.Bytes()))
	if err != nil {
		return Decision{}, fmt.Errorf("middleware: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if ff, ok := ctx.Value(forwardedForKey{}).(string); ok && ff != "" {
		hreq.Header.Set(validatorapi.HeaderForwardedFor, ff)
	}
	resp, err := v.client.Do(hreq)
	if err != nil {
		return Decision{}, fmt.Errorf("middleware: asking the validator: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		return Decision{}, fmt.Errorf("middleware: the validator answered %s", resp.Status)
	}
	var out validatorapi.ValidateResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return Decision{}, fmt.Errorf("middleware: reading the validator's answer: %w", err)
	}
	if out.Status == 0 || out.Allowed != (out.Status == http.StatusOK) {
		return Decision{}, fmt.Errorf("middleware: the validator's answer is inconsistent (status %d, allowed %t)", out.Status, out.Allowed)
	}
	d := Decision{Status: out.Status, Reason: out.Reason, Message: out.Message}
	if resp.StatusCode == http.StatusTooManyRequests {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			d.RetryAfter = time.Duration(s) * time.Second
		}
	}
	if id := out.Identity; id != nil {
		d.Identity = &Identity{
			TokenID: id.TokenID, Subject: id.Subject, Namespace: id.Namespace, Name: id.Name, Issuer: id.Issuer,
			Tenant: id.Tenant, SubTenant: id.SubTenant, Role: id.Role, Roles: id.Roles, Memberships: id.Memberships,
			Scopes: id.Scopes, Audiences: id.Audiences, ExpiresAt: id.ExpiresAt,
		}
	}
	return d, nil
}
