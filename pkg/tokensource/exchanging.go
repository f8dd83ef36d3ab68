package tokensource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// ExchangeOptions say where to exchange a token and what to ask for. Every narrowing
// field left empty keeps the parent token's value; the exchange refuses, never
// clamps, a request above a bound (a role the parent does not include, a lifetime
// beyond the issuer's maximum or the parent's remaining life).
type ExchangeOptions struct {
	// URL is the exchange service's base URL, such as
	// https://apitoken-exchange.apitoken-system.svc. Required.
	URL string
	// Client sends the exchanges. Default http.DefaultClient. Give it the CA of the
	// service's certificate and a timeout.
	Client *http.Client
	// Lifetime of each exchanged token, in whole seconds. Zero: the issuer's
	// default (600s unless the issuer says otherwise).
	Lifetime time.Duration
	// Tenant and SubTenant the token is for; the parent's when empty. An issuer that
	// requires them refuses an exchange that names none.
	Tenant, SubTenant string
	// Role of the exchanged token: the parent's or one it includes.
	Role string
	// Scopes, a subset of the parent's.
	Scopes []string
	// Audiences, a subset of the parent's or of the issuer's exchange audiences.
	Audiences []string
	// RefreshBefore is how long before an exchanged token expires a new one is
	// fetched. Default (and whenever it is not shorter than the lifetime the
	// exchange granted): a third of that lifetime.
	RefreshBefore time.Duration
	// Now is the clock of the refresh schedule and of Retry-After dates. Default
	// time.Now.
	Now func() time.Time
}

// ExchangeError is an exchange the service refused. Its fields are the answer's
// status, the service's error code and message, and for 429 how long to wait; none
// of them holds a token.
type ExchangeError struct {
	// StatusCode is the HTTP status: 400, 401, 403, 404, 429, 503...
	StatusCode int
	// Code is exchangeapi.Error's code: a validator refusal reason (Expired,
	// Revoked, Unknown...), a policy rule (RoleNarrowing, ExchangeLifetime...) or one
	// of exchangeapi's Code constants. Empty when the answer was not the service's
	// JSON (a proxy's error page, say).
	Code string
	// Message says what is wrong, as the service put it.
	Message string
	// RetryAfter is the Retry-After of a 429, zero otherwise.
	RetryAfter time.Duration
}

func (e *ExchangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tokensource: the token exchange refused (%d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	b.WriteString(")")
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// maxAnswer bounds what is read of an answer: a token is at most 8 KiB.
const maxAnswer = 64 << 10

// maxMessage bounds the service's message quoted in an ExchangeError.
const maxMessage = 512

// failureBackoff is how long an Exchanging waits after a failed exchange before it
// tries again with the same parent, when no Retry-After said otherwise: callers
// that retry at once (every request of a Transport) cost the service one exchange
// a second, not one per request.
const failureBackoff = time.Second

// Exchange exchanges parent once at GET exchangeapi.PathToken and returns the
// service's answer. RefreshBefore plays no part. A refusal is an *ExchangeError; no
// error holds parent or the issued token.
func Exchange(ctx context.Context, parent string, opts ExchangeOptions) (*exchangeapi.TokenResponse, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return exchangeOnce(ctx, parent, &opts, now)
}

func exchangeOnce(ctx context.Context, parent string, opts *ExchangeOptions, now func() time.Time) (*exchangeapi.TokenResponse, error) {
	u, err := tokenURL(opts)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("tokensource: exchange request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+parent)
	req.Header.Set("Accept", "application/json")
	c := opts.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		// net/http errors name the URL, which holds no credential: the token went in
		// a header.
		return nil, fmt.Errorf("tokensource: exchanging the token: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("tokensource: reading the exchange's answer (%d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, refusal(resp, body, parent, now())
	}
	var out exchangeapi.TokenResponse
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" || out.ExpiresIn <= 0 {
		return nil, errors.New("tokensource: the exchange answered 200 without a token and its lifetime")
	}
	return &out, nil
}

// tokenURL is the GET exchangeapi.PathToken request opts describe.
func tokenURL(opts *ExchangeOptions) (string, error) {
	if opts.URL == "" {
		return "", errors.New("tokensource: ExchangeOptions.URL is required")
	}
	base, err := url.Parse(opts.URL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return "", fmt.Errorf("tokensource: the exchange URL %q is not an http(s) URL", opts.URL)
	}
	if opts.Lifetime < 0 || opts.Lifetime%time.Second != 0 {
		return "", fmt.Errorf("tokensource: the exchange lifetime %s is not a positive whole number of seconds", opts.Lifetime)
	}
	q := url.Values{}
	if opts.Lifetime > 0 {
		q.Set(exchangeapi.ParamExpiration, strconv.FormatInt(int64(opts.Lifetime/time.Second), 10))
	}
	for name, v := range map[string]string{exchangeapi.ParamTenant: opts.Tenant, exchangeapi.ParamSubTenant: opts.SubTenant, exchangeapi.ParamRole: opts.Role} {
		if v != "" {
			q.Set(name, v)
		}
	}
	if len(opts.Scopes) > 0 {
		q.Set(exchangeapi.ParamScope, strings.Join(opts.Scopes, " "))
	}
	for _, a := range opts.Audiences {
		q.Add(exchangeapi.ParamAudience, a)
	}
	u := base.JoinPath(exchangeapi.PathToken)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// refusal reads a non-200 answer. The message is the service's, and said to be safe
// to show; parent is blotted out of it all the same, in case something between the
// client and the service echoes requests.
func refusal(resp *http.Response, body []byte, parent string, now time.Time) *ExchangeError {
	e := &ExchangeError{StatusCode: resp.StatusCode}
	var ans exchangeapi.Error
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/json" && json.Unmarshal(body, &ans) == nil && ans.Error != "" {
		e.Code, e.Message = ans.Error, ans.Message
	} else {
		e.Message = "the answer is not the exchange service's: " + http.StatusText(resp.StatusCode)
	}
	if parent != "" {
		e.Message = strings.ReplaceAll(e.Message, parent, "[token]")
	}
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "..."
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32); err == nil {
		return max(0, time.Duration(n)*time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}

// Exchanging is a token source that exchanges the token of a mounted Secret (its
// parent) for short-lived ones at the apitoken-exchange service, and refreshes them:
// before they expire, and as soon as the parent rotates. A workload holding a
// long-lived token then sends only tokens that live minutes, and revoking the parent
// APIToken refuses them all at once.
//
// Exchanging does its work inside Token: no goroutine, nothing to close. Concurrent
// callers that find the token due share one exchange. It is safe for concurrent use.
type Exchanging struct {
	parent *Source
	opts   ExchangeOptions
	state  atomic.Pointer[exchangeState]
	// sem is held by the one caller exchanging; others wait for its result or their
	// context, whichever comes first.
	sem chan struct{}
}

// exchangeState is what an Exchanging knows. It is immutable; each exchange, good or
// failed, stores a new one.
type exchangeState struct {
	// cur is the last exchanged token, nil before the first success; its ReadAt is
	// when it was received.
	cur *Token
	// parentID is the ID of the parent token cur was exchanged from.
	parentID string
	// expires and refresh are, by the Exchanging's clock, when cur expires (its
	// granted lifetime after it was received, so a skewed server clock does not
	// matter) and when to replace it.
	expires, refresh time.Time

	// err is the last exchange's error, nil after a success.
	err error
	// failedParent is the parent ID the last failure was for, and retryAt when to
	// try it again.
	failedParent string
	retryAt      time.Time
}

// NewExchanging returns a source of tokens exchanged from parent's, as opts say.
// It exchanges nothing yet: the first Token does. It fails only on options that
// cannot work.
func NewExchanging(parent *Source, opts ExchangeOptions) (*Exchanging, error) {
	if parent == nil {
		return nil, errors.New("tokensource: NewExchanging needs a parent Source")
	}
	if _, err := tokenURL(&opts); err != nil {
		return nil, err
	}
	if opts.RefreshBefore < 0 {
		return nil, fmt.Errorf("tokensource: RefreshBefore %s is negative", opts.RefreshBefore)
	}
	if opts.Lifetime > 0 && opts.RefreshBefore >= opts.Lifetime {
		return nil, fmt.Errorf("tokensource: RefreshBefore %s is not shorter than the lifetime %s: every call would exchange", opts.RefreshBefore, opts.Lifetime)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Exchanging{parent: parent, opts: opts, sem: make(chan struct{}, 1)}
	e.state.Store(&exchangeState{})
	return e, nil
}

// Token returns the current exchanged token, exchanging the parent's first when
// there is none yet, when it is due for refresh, or when the parent rotated. When a
// refresh fails while the current token has not expired, Token returns it and Err
// says why the refresh failed; the next call after a short backoff (or the 429's
// Retry-After) tries again. Otherwise the error is the exchange's: an
// *ExchangeError for a refusal, ErrNoToken before the parent Source has a token.
// ctx bounds the exchange and the wait for another caller's.
func (e *Exchanging) Token(ctx context.Context) (string, error) {
	p := e.parent.Current()
	if p == nil {
		return "", ErrNoToken
	}
	if st := e.state.Load(); st.fresh(p.ID, e.opts.Now()) {
		return st.cur.Value, nil
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-e.sem }()
	// Another caller may have exchanged while this one waited.
	now := e.opts.Now()
	st := e.state.Load()
	if st.fresh(p.ID, now) {
		return st.cur.Value, nil
	}
	if st.err != nil && st.failedParent == p.ID && now.Before(st.retryAt) {
		return st.fallback(now)
	}
	resp, err := exchangeOnce(ctx, p.Value, &e.opts, e.opts.Now)
	now = e.opts.Now()
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; that says nothing of the service.
			return "", err
		}
		next := *st
		next.err, next.failedParent, next.retryAt = err, p.ID, now.Add(failureBackoff)
		var xe *ExchangeError
		if errors.As(err, &xe) && xe.RetryAfter > 0 {
			next.retryAt = now.Add(xe.RetryAfter)
		}
		e.state.Store(&next)
		return next.fallback(now)
	}
	life := time.Duration(resp.ExpiresIn) * time.Second
	before := e.opts.RefreshBefore
	if before <= 0 || before >= life {
		before = life / 3
	}
	tok := &Token{Value: resp.Token, ID: resp.TokenID, ExpiresAt: resp.ExpiresAt, ReadAt: now}
	e.state.Store(&exchangeState{cur: tok, parentID: p.ID, expires: now.Add(life), refresh: now.Add(life - before)})
	return tok.Value, nil
}

// fresh reports whether cur is the token to use at now without exchanging: it was
// exchanged from the parent of the moment and is not due for refresh.
func (st *exchangeState) fresh(parentID string, now time.Time) bool {
	return st.cur != nil && st.parentID == parentID && now.Before(st.refresh)
}

// fallback is what Token returns after a failed or deferred exchange: the current
// token while it lives, since the service accepts it until then (an old parent stays
// valid through its grace period), or else the failure.
func (st *exchangeState) fallback(now time.Time) (string, error) {
	if st.cur != nil && now.Before(st.expires) {
		return st.cur.Value, nil
	}
	return "", st.err
}

// Current returns the last exchanged token, or nil before the first exchange. It may
// be due for refresh or expired: Token is the call that refreshes.
func (e *Exchanging) Current() *Token { return e.state.Load().cur }

// Err returns the error of the last exchange, or nil if it succeeded.
func (e *Exchanging) Err() error { return e.state.Load().err }
