package apitoken

import (
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// wanted is the token the spec asks for, with the issuer's defaults filled in.
type wanted struct {
	format      tokensv1.TokenFormat
	claims      tokensv1.TokenClaims
	lifetime    time.Duration
	renewBefore time.Duration // 0: a third of the token's lifetime
	gracePeriod time.Duration // 0: until the token's own expiry
	autoRotate  bool
}

// desired fills in the issuer's defaults for what spec leaves out.
func desired(spec *tokensv1.APITokenSpec, issuer *tokensv1.ClusterTokenIssuerSpec) wanted {
	w := wanted{
		format: spec.Format,
		claims: tokensv1.TokenClaims{
			Tenant:      spec.Tenant,
			SubTenant:   spec.SubTenant,
			Role:        spec.Role,
			Memberships: sortedMemberships(spec.Memberships),
			Scopes:      sortedCopy(spec.Scopes),
			Audiences:   sortedCopy(spec.Audiences),
		},
		lifetime:   spec.LifetimeOrDefault(),
		autoRotate: true,
	}
	if w.format == "" {
		w.format = issuer.DefaultFormat
	}
	if w.format == "" {
		w.format = tokensv1.FormatJWT
	}
	if len(w.claims.Audiences) == 0 {
		w.claims.Audiences = sortedCopy(issuer.Audiences)
	}
	if r := spec.Rotation; r != nil {
		w.autoRotate = r.Policy != tokensv1.RotationDisabled
		if r.RenewBefore != nil {
			w.renewBefore = r.RenewBefore.Duration
		}
		if r.GracePeriod != nil {
			w.gracePeriod = r.GracePeriod.Duration
		}
	}
	return w
}

// sortedMemberships orders memberships by tenant, which the API lets each appear only
// once: a reordered spec asks for the same token.
func sortedMemberships(ms []tokensv1.Membership) []tokensv1.Membership {
	if len(ms) == 0 {
		return nil
	}
	c := slices.Clone(ms)
	slices.SortFunc(c, func(a, b tokensv1.Membership) int { return strings.Compare(a.Tenant, b.Tenant) })
	return c
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

// renewalTime is when t is rotated: renewBefore (default a third of its lifetime)
// before it expires, brought forward by t's renewalJitter. A renewBefore the API
// should have refused falls back to the default.
func (w wanted) renewalTime(t *tokensv1.IssuedToken) time.Time {
	before := w.renewBeforeOf(t)
	return t.ExpiresAt.Add(-before - renewalJitter(t.TokenID, before))
}

// renewBeforeOf is how long before t expires it is due for rotation, jitter aside.
func (w wanted) renewBeforeOf(t *tokensv1.IssuedToken) time.Duration {
	life := t.ExpiresAt.Sub(t.IssuedAt.Time)
	if w.renewBefore <= 0 || w.renewBefore >= life {
		return life / 3
	}
	return w.renewBefore
}

// paced reports whether the rotation t asks for waits for the rotation budget: a
// scheduled one, unless its token has less than half of renewBefore left to live. A
// budget that falls behind (more tokens due than it serves) then still rotates every
// token before it expires, the last ones unpaced.
func paced(t *trigger, w wanted, cur *tokensv1.IssuedToken, now time.Time) bool {
	return t.scheduled && cur != nil && cur.ExpiresAt.Sub(now) >= w.renewBeforeOf(cur)/2
}

// renewalSpread is the share of renewBefore over which renewal times are spread.
const renewalSpread = 10

// renewalJitter is how much earlier than renewBefore before its expiry the token id
// is rotated: a value in [0, renewBefore/renewalSpread), in whole seconds (the
// precision of status times, so that a pass computes the renewalTime it reads back),
// from a hash of the ID. Tokens minted together, by a GitOps sync of thousands of
// APITokens, would otherwise all fall due in the same second, and again at every
// rotation. Earlier, not later: renewBefore stays the least time a rotated Secret
// leaves the old token to live. Deterministic, so every pass and every replica
// agrees on the time; changing the hash would move every renewal time and write every
// status, so TestRenewalJitter pins it.
func renewalJitter(id string, renewBefore time.Duration) time.Duration {
	window := renewBefore / renewalSpread
	if window < time.Second {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return time.Duration(h.Sum64()%uint64(window/time.Second)) * time.Second
}

// retireAt is when t, rotated out at now, stops being accepted: after the grace
// period, never after its own expiry.
func (w wanted) retireAt(t *tokensv1.IssuedToken, now time.Time) time.Time {
	end := t.ExpiresAt.Time
	if w.gracePeriod > 0 && now.Add(w.gracePeriod).Before(end) {
		end = now.Add(w.gracePeriod)
	}
	return end
}

// mintInput is everything the mint policies look at. It is built before they run, so
// the policies are pure functions, each table-tested without Kubernetes.
type mintInput struct {
	now        time.Time
	token      *tokensv1.APIToken
	want       wanted
	issuerURL  string
	keys       token.KeySet
	secretName string
	secret     *corev1.Secret // nil when the Secret does not exist
}

// trigger says why a token must be minted. reason is the event reason (Minted,
// Rotated, SecretRepaired); message says what happened, without token material.
type trigger struct {
	reason  string
	message string
	// explicit triggers are asked for by a person (a spec change, the rotate
	// annotation); only they re-mint a token that ran out with rotation disabled.
	explicit bool
	// fromSecret triggers are decided by the Secret's content, which the cache may
	// show older than the API server has it.
	fromSecret bool
	// scheduled triggers are rotations that fell due on their own; only they wait
	// for the rotation budget. Anything else replaces a token that is missing,
	// broken, or asked to go, and must not wait behind a storm.
	scheduled bool
}

// mintPolicy returns why a token must be (re)minted, or nil.
type mintPolicy func(*mintInput) *trigger

// mintPolicies are asked in order; the first trigger wins. signingKeyGone is asked
// before secretDoesNotHoldCurrent because a JWT whose key left the JWKS no longer
// verifies, and "key gone" is the truer reason.
var mintPolicies = []mintPolicy{
	noCurrentToken,
	secretMissing,
	signingKeyGone,
	secretDoesNotHoldCurrent,
	claimsChanged,
	rotationRequested,
	nearingRenewal,
}

// mustMint returns the first trigger of mintPolicies, or nil. When rotation is
// disabled and the current token ran out, only explicit triggers count: the token
// is meant to expire.
func mustMint(in *mintInput) *trigger {
	expired := expiredForGood(in)
	for _, p := range mintPolicies {
		if t := p(in); t != nil && (t.explicit || !expired) {
			return t
		}
	}
	return nil
}

// expiredForGood reports whether the current token ran out and rotation is disabled.
func expiredForGood(in *mintInput) bool {
	cur := in.token.Status.Current
	return !in.want.autoRotate && cur != nil && !in.now.Before(cur.ExpiresAt.Time)
}

func noCurrentToken(in *mintInput) *trigger {
	if in.token.Status.Current != nil {
		return nil
	}
	return &trigger{reason: tokensv1.ReasonMinted, message: "no token was minted yet"}
}

func secretMissing(in *mintInput) *trigger {
	if in.secret != nil {
		return nil
	}
	return &trigger{reason: tokensv1.ReasonSecretRepaired, message: fmt.Sprintf("Secret %s is missing", in.secretName), fromSecret: true}
}

func signingKeyGone(in *mintInput) *trigger {
	cur := in.token.Status.Current
	if cur == nil || cur.Format != tokensv1.FormatJWT {
		return nil
	}
	if in.keys != nil {
		if _, _, ok := in.keys.PublicKey(cur.SigningKeyID); ok {
			return nil
		}
	}
	return &trigger{reason: tokensv1.ReasonRotated, message: fmt.Sprintf("signing key %s is no longer published by the issuer", cur.SigningKeyID)}
}

func secretDoesNotHoldCurrent(in *mintInput) *trigger {
	if why := secretHolds(in); why != "" {
		return &trigger{reason: tokensv1.ReasonSecretRepaired, message: fmt.Sprintf("Secret %s does not hold the current token: %s", in.secretName, why), fromSecret: true}
	}
	return nil
}

// secretHolds returns "" when the Secret holds status.current: the same token ID and
// a value that checks out (the opaque hash, or the JWT signature and jti). Otherwise
// it says why not, without token material. Expiry is not checked here: that is
// nearingRenewal's job, and it names the reason better.
func secretHolds(in *mintInput) string {
	cur := in.token.Status.Current
	if cur == nil || in.secret == nil {
		return "nothing to compare"
	}
	if id := string(in.secret.Data[tokensv1.SecretKeyTokenID]); id != cur.TokenID {
		return fmt.Sprintf("its tokenID is %q, the current token is %s", id, cur.TokenID)
	}
	value := string(in.secret.Data[tokensv1.SecretKeyToken])
	if sum, iss, ok := controller.CachedJWT(in.secret); ok {
		return cachedJWTHolds(cur, sum, iss, in.issuerURL)
	}
	switch cur.Format {
	case tokensv1.FormatOpaque:
		id, err := token.VerifyOpaque(value, cur.TokenHash)
		if err != nil {
			return fmt.Sprintf("the token does not match the current hash (%s)", token.ReasonOf(err))
		}
		if id != cur.TokenID {
			return "the token's ID is not the current token's"
		}
	case tokensv1.FormatJWT:
		// The token is checked as of its own issue time: this asks "is this the
		// token we minted", not "is it still valid".
		issued := cur.IssuedAt.Time
		v := token.Verifier{Keys: in.keys, Issuer: in.issuerURL, Now: func() time.Time { return issued }}
		claims, err := v.Verify(value)
		if err != nil {
			return fmt.Sprintf("the token does not verify (%s)", token.ReasonOf(err))
		}
		if claims.ID != cur.TokenID {
			return "the token's jti is not the current token's"
		}
		if cur.Digest != "" && token.Digest(value) != cur.Digest {
			return "the token is not the one minted: its digest differs"
		}
	default:
		return fmt.Sprintf("unknown format %q", cur.Format)
	}
	return ""
}

// cachedJWTHolds is secretHolds for a Secret read through the cache, which keeps a
// JWT's SHA-256 and iss claim in place of the JWT (controller.CachedJWT). A digest
// equal to the status's is the very token minted, whose signature and jti were
// right when it was minted; its key is still published (signingKeyGone asks first),
// so only the issuer's URL can have changed since. A token minted before digests
// were recorded cannot be judged by its digest: the answer sends the pass past the
// cache (a fromSecret trigger), where the JWT itself is verified.
func cachedJWTHolds(cur *tokensv1.IssuedToken, sum [sha256.Size]byte, iss, issuerURL string) string {
	switch {
	case cur.Format != tokensv1.FormatJWT:
		return fmt.Sprintf("it holds a JWT, the current token is %s", cur.Format)
	case cur.Digest == "":
		return "the status records no digest to compare the cached token with"
	case cur.Digest != token.FormatDigest(sum):
		return "the token is not the one minted: its digest differs"
	case iss != issuerURL:
		return fmt.Sprintf("the token does not verify (%s)", token.ReasonWrongIssuer)
	}
	return ""
}

func claimsChanged(in *mintInput) *trigger {
	cur := in.token.Status.Current
	if cur == nil {
		return nil
	}
	what := changedFields(cur, in.want)
	if len(what) == 0 {
		return nil
	}
	return &trigger{reason: tokensv1.ReasonRotated, message: fmt.Sprintf("spec changed: %v", what), explicit: true}
}

// changedFields names what the current token carries differently from the spec.
func changedFields(cur *tokensv1.IssuedToken, w wanted) []string {
	var what []string
	c := cur.Claims
	if c.Tenant != w.claims.Tenant {
		what = append(what, "tenant")
	}
	if c.SubTenant != w.claims.SubTenant {
		what = append(what, "subTenant")
	}
	if c.Role != w.claims.Role {
		what = append(what, "role")
	}
	if !slices.Equal(sortedMemberships(c.Memberships), w.claims.Memberships) {
		what = append(what, "memberships")
	}
	if !slices.Equal(sortedCopy(c.Scopes), w.claims.Scopes) {
		what = append(what, "scopes")
	}
	if !slices.Equal(sortedCopy(c.Audiences), w.claims.Audiences) {
		what = append(what, "audiences")
	}
	if cur.Format != w.format {
		what = append(what, "format")
	}
	if cur.ExpiresAt.Sub(cur.IssuedAt.Time) != w.lifetime.Truncate(time.Second) {
		what = append(what, "lifetime")
	}
	return what
}

func rotationRequested(in *mintInput) *trigger {
	v := in.token.Annotations[tokensv1.RotateAnnotation]
	if v == "" || v == in.token.Status.LastRotateRequest {
		return nil
	}
	return &trigger{reason: tokensv1.ReasonRotated, message: fmt.Sprintf("rotation requested (%s=%q)", tokensv1.RotateAnnotation, v), explicit: true}
}

func nearingRenewal(in *mintInput) *trigger {
	cur := in.token.Status.Current
	if cur == nil || !in.want.autoRotate {
		return nil
	}
	at := in.want.renewalTime(cur)
	if in.now.Before(at) {
		return nil
	}
	return &trigger{reason: tokensv1.ReasonRotated, message: fmt.Sprintf("renewal time %s reached", at.UTC().Format(time.RFC3339)), scheduled: true}
}
