package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apitoken-operator/apitoken-operator/internal/policy/roles"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Defaults of OfflineOptions.
const (
	// DefaultMinRefreshInterval is the floor on JWKS fetches: a flood of tokens with
	// made-up kids costs the JWKS endpoint at most one request per interval.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultMaxKeyAge is how long fetched keys are trusted: they are fetched again
	// when older, so that keys the issuer stopped publishing stop verifying, and no
	// longer used when that fails.
	DefaultMaxKeyAge = 5 * time.Minute
)

// OfflineOptions configure an Offline checker.
type OfflineOptions struct {
	// JWKSURL is where the keys are published, e.g. the validator's
	// https://apitoken-validator.apitoken-system.svc/.well-known/jwks.json?issuer=default.
	// Required, and https unless AllowInsecureHTTP.
	JWKSURL string
	// AllowInsecureHTTP accepts an http:// JWKSURL. Whoever can answer for that URL
	// decides which tokens are valid, so this is for tests and a loopback endpoint
	// only.
	AllowInsecureHTTP bool
	// Issuer is the iss a token must carry, the issuer's spec.issuer. Required: the
	// JWKS of every issuer may be served from one URL.
	Issuer string
	// Audiences, when set, are the audiences a token must carry one of.
	Audiences []string
	// RoleIncludes is the issuer's role graph: each role and the roles it includes,
	// as in the ClusterTokenIssuer's spec.roles (e.g. {"admin": {"editor"},
	// "editor": {"viewer"}}). Offline verification cannot read the issuer, so without
	// it a role grants only itself.
	RoleIncludes map[string][]string
	// TenantMismatchStatus answers a token of another tenant or sub-tenant. Default
	// 404, as the validator: it does not tell whether the resource exists.
	TenantMismatchStatus int
	// MinRefreshInterval is the floor between two JWKS fetches. Default
	// DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// MaxKeyAge is how long fetched keys are trusted. Older keys are fetched again;
	// while that fails, every token is refused with an error (the middleware answers
	// 503) rather than checked against keys the issuer may have withdrawn. Default
	// DefaultMaxKeyAge.
	MaxKeyAge time.Duration
	// Leeway is the clock skew allowed on exp and nbf: 0 means the token package's
	// default, negative none.
	Leeway time.Duration
	// Client fetches the JWKS. Default: a client with a 5s timeout.
	Client *http.Client
	// Clock is the clock of expiry and of the refresh rules. Default: the real clock.
	Clock Clock
}

// Offline is a Checker that verifies JWTs against a JWKS fetched from a URL. It sees
// neither revocation nor retirement: a revoked JWT stays valid here until it expires.
type Offline struct {
	opts OfflineOptions
	// roles is nil without RoleIncludes: then a role grants only itself.
	roles *roles.Roles

	keys atomic.Pointer[keySet]
	// fetchMu serialises fetches; lastFetch and lastErr, the error of the last
	// fetch, are guarded by it.
	fetchMu   sync.Mutex
	lastFetch time.Time
	lastErr   error
	fetches   atomic.Int64
}

// keySet is one fetched JWKS.
type keySet struct {
	keys      token.KeySet
	kids      map[string]bool
	fetchedAt time.Time
}

// NewOffline returns an Offline checker. Keys are fetched on first use; call Refresh
// to fetch them at start-up.
func NewOffline(opts OfflineOptions) (*Offline, error) {
	u, err := url.Parse(opts.JWKSURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("middleware: JWKS URL %q is not an http(s) URL", opts.JWKSURL)
	case u.Scheme == "http" && !opts.AllowInsecureHTTP:
		return nil, fmt.Errorf("middleware: JWKS URL %q is not https: whoever can answer for it decides which tokens are valid (AllowInsecureHTTP is for tests)", opts.JWKSURL)
	case opts.Issuer == "":
		return nil, errors.New("middleware: Issuer is required: the spec.issuer URL of the ClusterTokenIssuer whose tokens are accepted")
	}
	if opts.TenantMismatchStatus == 0 {
		opts.TenantMismatchStatus = http.StatusNotFound
	}
	if opts.MinRefreshInterval == 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.MaxKeyAge == 0 {
		opts.MaxKeyAge = DefaultMaxKeyAge
	}
	if opts.MaxKeyAge < opts.MinRefreshInterval {
		// Keys would go stale while no fetch is allowed, refusing every token.
		return nil, fmt.Errorf("middleware: MaxKeyAge %s is shorter than MinRefreshInterval %s", opts.MaxKeyAge, opts.MinRefreshInterval)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	o := &Offline{opts: opts}
	if len(opts.RoleIncludes) > 0 {
		if o.roles, err = roles.FromIncludes(opts.RoleIncludes); err != nil {
			return nil, fmt.Errorf("middleware: RoleIncludes: %w", err)
		}
	}
	return o, nil
}

// Refresh fetches the keys now, unless a fetch happened less than MinRefreshInterval
// ago.
func (o *Offline) Refresh(ctx context.Context) error {
	return o.refresh(ctx, o.keys.Load())
}

// Fetches returns how many times the JWKS was fetched, successfully or not.
func (o *Offline) Fetches() int64 { return o.fetches.Load() }

// refresh fetches the keys unless the floor forbids it. stale is the key set the
// caller found wanting: when another caller replaced it meanwhile, there is nothing
// to do.
func (o *Offline) refresh(ctx context.Context, stale *keySet) error {
	o.fetchMu.Lock()
	defer o.fetchMu.Unlock()
	if o.keys.Load() != stale {
		return nil
	}
	now := o.opts.Clock.Now()
	if !o.lastFetch.IsZero() && now.Sub(o.lastFetch) < o.opts.MinRefreshInterval {
		return nil
	}
	o.lastFetch = now
	o.fetches.Add(1)
	ks, err := o.fetch(ctx)
	o.lastErr = err
	if err != nil {
		return err
	}
	ks.fetchedAt = now
	o.keys.Store(ks)
	return nil
}

func (o *Offline) fetch(ctx context.Context) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.opts.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("middleware: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("middleware: fetching the JWKS: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("middleware: fetching the JWKS: %s", resp.Status)
	}
	var jwks token.JWKS
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&jwks); err != nil {
		return nil, fmt.Errorf("middleware: reading the JWKS: %w", err)
	}
	set, err := token.NewKeySet(jwks)
	if err != nil {
		return nil, fmt.Errorf("middleware: the JWKS is invalid: %w", err)
	}
	ks := &keySet{keys: set, kids: map[string]bool{}}
	for _, k := range jwks.Keys {
		kid := k.Kid
		if kid == "" {
			// NewKeySet named it by its thumbprint.
			if pub, err := k.PublicKey(); err == nil {
				kid, _ = token.Thumbprint(pub)
			}
		}
		if _, _, ok := set.PublicKey(kid); ok {
			ks.kids[kid] = true
		}
	}
	return ks, nil
}

// keysFor returns keys that know kid if any fetch allowed now can find them: it
// fetches when there are no keys yet, when they are older than MaxKeyAge, or when
// they do not hold kid, always within the refresh floor. A failed fetch keeps the
// keys already held until they are MaxKeyAge old; older keys are an error.
func (o *Offline) keysFor(ctx context.Context, kid string) (*keySet, error) {
	ks := o.keys.Load()
	if ks != nil && ks.kids[kid] && o.fresh(ks) {
		return ks, nil
	}
	err := o.refresh(ctx, ks)
	switch ks = o.keys.Load(); {
	case ks == nil:
		if err == nil {
			err = errors.New("middleware: no JWKS fetched yet")
		}
		return nil, err
	case !o.fresh(ks):
		// Within the floor refresh fetched nothing: the last fetch is the one that
		// failed.
		if err == nil {
			o.fetchMu.Lock()
			err = o.lastErr
			o.fetchMu.Unlock()
		}
		if err == nil {
			err = errors.New("no fetch allowed yet")
		}
		return nil, fmt.Errorf("middleware: the JWKS fetched at %s is older than MaxKeyAge (%s) and could not be refreshed: %w",
			ks.fetchedAt.UTC().Format(time.RFC3339), o.opts.MaxKeyAge, err)
	}
	return ks, nil
}

// fresh reports whether ks is younger than MaxKeyAge.
func (o *Offline) fresh(ks *keySet) bool {
	return o.opts.Clock.Now().Sub(ks.fetchedAt) < o.opts.MaxKeyAge
}

// Check implements Checker.
func (o *Offline) Check(ctx context.Context, tok string, req Requirement) (Decision, error) {
	if !token.LooksLikeJWT(tok) {
		return Decision{Status: http.StatusUnauthorized, Reason: validatorapi.ReasonMalformed, Message: "only JWTs can be verified offline"}, nil
	}
	kid, _, err := token.ParseUnverified(tok)
	if err != nil {
		return refusal(err), nil
	}
	ks, err := o.keysFor(ctx, kid)
	if err != nil {
		return Decision{}, err
	}
	v := token.Verifier{Keys: ks.keys, Issuer: o.opts.Issuer, Audiences: o.opts.Audiences, Leeway: o.opts.Leeway, Now: o.opts.Clock.Now}
	c, err := v.Verify(tok)
	if err != nil {
		return refusal(err), nil
	}
	id := &Identity{
		TokenID: c.ID, Subject: c.Subject, Issuer: c.Issuer, Tenant: c.Tenant, SubTenant: c.SubTenant, Role: c.Role,
		Roles: o.roles.Expand(c.Role), Scopes: c.Scopes, Audiences: c.Audience, ExpiresAt: c.ExpiresAt,
	}
	if ns, name, ok := token.ParseSubject(c.Subject); ok {
		id.Namespace, id.Name = ns, name
	}
	d := Decision{Identity: id}
	if len(c.Memberships) == 0 {
		d.Status, d.Reason = req.Decide(id.Tenant, id.SubTenant, id.Role, o.roles.Grants, o.opts.TenantMismatchStatus)
	} else {
		// The required tenant selects the membership that decides, as at the validator.
		id.Roles = nil
		for _, m := range c.Memberships {
			id.Memberships = append(id.Memberships, validatorapi.Membership(m))
		}
		var i int
		d.Status, d.Reason, i = req.DecideMembership(id.Memberships, o.roles.Grants, o.opts.TenantMismatchStatus)
		if i >= 0 {
			m := id.Memberships[i]
			id.Tenant, id.SubTenant, id.Role, id.Roles = m.Tenant, m.SubTenant, m.Role, o.roles.Expand(m.Role)
		}
	}
	if !d.Allowed() {
		d.Message = validatorapi.Describe(d.Reason)
	}
	return d, nil
}

// refusal is the decision for a token the token package refused.
func refusal(err error) Decision {
	r := string(token.ReasonOf(err))
	return Decision{Status: http.StatusUnauthorized, Reason: r, Message: validatorapi.Describe(r)}
}
