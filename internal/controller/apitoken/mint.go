package apitoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// ensureToken makes the Secret hold a valid token listed in the status: it mints one
// when a mint policy asks (see mint), or rewrites the Secret around the token it
// holds when only its metadata or side keys drifted. It drops previous tokens whose
// retireAt passed. A scheduled rotation the rotation budget cannot serve yet waits
// (s.budgetWait). It sets no condition; report does.
func (r *Reconciler) ensureToken(ctx context.Context, s *scope) error {
	st := &s.token.Status
	st.PreviousTokens = dropUnpublished(dropRetired(st.PreviousTokens, s.now), s.keys)
	in := &mintInput{now: s.now, token: s.token, want: s.want, issuerURL: s.issuer.Spec.Issuer, keys: s.keys, secretName: s.secretName, secret: s.secret}
	t := mustMint(in)
	if t != nil && t.fromSecret {
		// A Secret that seems to need a new token may only look so in a cache that
		// lags behind the API server (after a restart of either, or a watch that
		// broke): minting on it would replace a token the Secret already holds.
		// One read past the cache, on the repair path only, settles it.
		if err := r.confirmSecret(ctx, s, in); err != nil {
			return err
		}
		t = mustMint(in)
	}
	key := client.ObjectKeyFromObject(s.token)
	if t != nil {
		if err := r.checkFresh(ctx, s); err != nil {
			return err
		}
		if paced(t, s.want, st.Current, s.now) {
			if d := r.Rotations.wait(key, r.Clock.Now()); d > 0 {
				s.budgetWait = d
				return nil
			}
		} else {
			r.Rotations.forget(key)
		}
		return r.mint(ctx, s, t, secretHolds(in) == "")
	}
	if expiredForGood(in) {
		s.expired = true
		return nil
	}
	st.SecretName = s.secretName
	bindDigest(st.Current, s.secret)
	drifted := !secretUpToDate(s.secret, s.token, st.Current)
	if !drifted && s.token.Generation == s.observedBefore {
		return nil
	}
	// The Secret holds the current token, so it can be rewritten around it.
	value, err := r.tokenValue(ctx, s, in)
	if err != nil {
		return err
	}
	// A spec change re-applies even an up-to-date Secret: labels and annotations
	// dropped from the template leave it only through server-side apply.
	if err := r.writeSecret(ctx, s, value, st.Current); err != nil {
		return err
	}
	if drifted {
		s.action = tokensv1.ReasonSecretRepaired
		msg := fmt.Sprintf("Rewrote Secret %s around token %s after it was edited", s.secretName, st.Current.TokenID)
		r.event(s.token, corev1.EventTypeNormal, tokensv1.ReasonSecretRepaired, "Repair", msg)
		logging.Audit(s.log).Info("Repaired the token Secret", "secret", s.secretName, "tokenID", st.Current.TokenID)
	}
	return nil
}

// bindDigest records the digest of a current JWT minted before digests were
// recorded, once the pass has verified the Secret's JWT (secretHolds, past the
// cache, where the JWT itself is kept): the validator then binds it by its digest, as
// it does every JWT minted since, and the cache can judge it by its digest.
func bindDigest(cur *tokensv1.IssuedToken, sec *corev1.Secret) {
	if cur.Format != tokensv1.FormatJWT || cur.Digest != "" {
		return
	}
	if v, ok := sec.Data[tokensv1.SecretKeyToken]; ok {
		cur.Digest = token.Digest(string(v))
	}
}

// tokenValue returns the current token as the pass's Secret holds it, to rewrite the
// Secret around it. The cache keeps a JWT's digest only (controller.CachedJWT), so
// such a Secret is read again past the cache, on the paths that rewrite a Secret
// whose token is right (a repair of its other keys, a spec change): one read where
// a write follows anyway. A Secret that no longer holds the current token by then
// changed since the cache saw it; the pass comes back when the cache did.
func (r *Reconciler) tokenValue(ctx context.Context, s *scope, in *mintInput) (string, error) {
	if _, _, cached := controller.CachedJWT(s.secret); !cached {
		return string(s.secret.Data[tokensv1.SecretKeyToken]), nil
	}
	if err := r.confirmSecret(ctx, s, in); err != nil {
		return "", err
	}
	if s.secret == nil || secretHolds(in) != "" {
		return "", errStaleView
	}
	return string(s.secret.Data[tokensv1.SecretKeyToken]), nil
}

// confirmSecret replaces the cached Secret of the pass with the API server's.
func (r *Reconciler) confirmSecret(ctx context.Context, s *scope, in *mintInput) error {
	sec := &corev1.Secret{}
	err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: s.token.Namespace, Name: s.secretName}, sec)
	switch {
	case apierrors.IsNotFound(err), err == nil && ownedByNamesake(sec, s.token):
		// A deleted APIToken's Secret counts as missing: writeSecret replaces it.
		sec = nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", s.secretName, err)
	case !ownedBy(sec, s.token):
		return r.stall(s, tokensv1.ReasonSecretConflict, conflictMessage(s.secretName))
	}
	s.secret, in.secret = sec, sec
	return nil
}

// conflictMessage is the Stalled message of a Secret that is not this APIToken's.
func conflictMessage(name string) string {
	return fmt.Sprintf("Secret %s already exists and is not managed by this APIToken; it is left alone", name)
}

// checkFresh returns errStaleView when the Secret holds a token the status does not
// list and the API server has a newer APIToken than the cache gave this pass. Since no
// Secret is written before its token is listed, that is the mark of a stale read,
// typically a pass woken by the Secret write of the previous pass before the cache
// saw its status write. Minting on it would only lose the optimistic-lock race.
func (r *Reconciler) checkFresh(ctx context.Context, s *scope) error {
	if s.secret == nil || listed(s.token, string(s.secret.Data[tokensv1.SecretKeyTokenID])) {
		return nil
	}
	fresh := &tokensv1.APIToken{}
	if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(s.token), fresh); err != nil {
		return fmt.Errorf("reading the APIToken: %w", err)
	}
	if fresh.ResourceVersion != s.token.ResourceVersion {
		return errStaleView
	}
	return nil
}

// mint makes a new token in memory, lists it in the status as current (listMinted:
// the old current moves to previousTokens) and writes the status, then the Secret.
// The status is the write-ahead log: a crash between the two writes leaves a listed
// token nobody holds, while the Secret still holds a token that is listed as well;
// the next pass sees that the Secret does not hold the current token and mints again.
//
// Ready goes out with the status write when the token is the APIToken's first (no
// token was listed: nobody can hold one, and the Secret is about to be created), or
// when secretValid says the Secret holds the current token, which then stays listed
// and valid through both writes. The Secret's write then ends the pass's writes. A
// first token's Ready is early by one request, or, after a crash between the writes,
// until the next pass (at the restart) mints again: the same window in which a pod
// that mounts the Secret waits for it to exist, as it would for any Secret not yet
// written.
func (r *Reconciler) mint(ctx context.Context, s *scope, t *trigger, secretValid bool) error {
	issued, value, err := r.newToken(ctx, s)
	if err != nil {
		return err
	}
	if err := r.step(s, stepMinted); err != nil {
		return err
	}

	st := &s.token.Status
	unlisted := st.DeepCopy()
	first := st.Current == nil
	oldSecretName := st.SecretName
	rotated, retireNow := listMinted(s.token, issued, s.want, s.secretName, s.now)
	// A token re-minted because its key left the JWKS verifies nowhere any more.
	st.PreviousTokens = dropUnpublished(st.PreviousTokens, s.keys)
	s.action = t.reason
	s.secretWritten = true
	if first || (secretValid && !retireNow && meta.IsStatusConditionTrue(st.Conditions, tokensv1.ConditionReady)) {
		r.report(s)
	}
	// The pass may have been paused since it began (see Reconciler.Leading).
	if err := controller.Fence(r.Leading); err != nil {
		return err
	}
	if err := r.writeStatus(ctx, s); err != nil {
		return err
	}
	if err := r.step(s, stepStatusWritten); err != nil {
		return err
	}

	if err := controller.Fence(r.Leading); err != nil {
		// The token is listed but no Secret holds it: the leader repairs that.
		return err
	}
	if err := r.writeSecret(ctx, s, value, issued); err != nil {
		if errors.Is(err, errForeignSecret) {
			// Someone else's Secret has the name. The token was never written
			// anywhere, so it leaves the log again, and the pass stalls as it would
			// have had the cache shown that Secret.
			s.token.Status = *unlisted
			s.secretWritten = false
			return r.stall(s, tokensv1.ReasonSecretConflict, conflictMessage(s.secretName))
		}
		return err
	}
	if err := r.step(s, stepSecretWritten); err != nil {
		return err
	}
	if rotated {
		countRotation(s.token)
	}
	msg := fmt.Sprintf("Wrote token %s to Secret %s: %s", issued.TokenID, s.secretName, t.message)
	r.event(s.token, corev1.EventTypeNormal, t.reason, "Mint", msg)
	logging.Audit(s.log).Info("Minted a token", "tokenID", issued.TokenID, "secret", s.secretName, "reason", t.reason, "why", t.message)

	if oldSecretName != "" && oldSecretName != s.secretName {
		// spec.secret.name changed: the old Secret's token is still listed until it
		// retires, but nothing will keep that Secret current any more.
		if _, err := r.releaseSecret(ctx, s.token, oldSecretName, false); err != nil {
			return err
		}
	}
	return nil
}

// newToken mints a token of the wanted format and claims. The value lives in memory
// only until it is written to the Secret.
func (r *Reconciler) newToken(ctx context.Context, s *scope) (*tokensv1.IssuedToken, string, error) {
	id := token.NewTokenID()
	exp := s.now.Add(s.want.lifetime).Truncate(time.Second)
	issued := &tokensv1.IssuedToken{
		TokenID:   id,
		Format:    s.want.format,
		Claims:    *s.want.claims.DeepCopy(),
		IssuedAt:  metav1.NewTime(s.now),
		ExpiresAt: metav1.NewTime(exp),
	}
	if s.want.format == tokensv1.FormatOpaque {
		o, err := token.MintOpaque(s.issuer.Spec.OpaquePrefixOrDefault(), id)
		if err != nil {
			return nil, "", fmt.Errorf("minting an opaque token: %w", err)
		}
		issued.TokenHash = o.Hash
		return issued, o.Token, nil
	}
	key, err := keystore.Load(ctx, r.Client, r.Namespace, s.issuer, s.issuer.Status.CurrentKeyID)
	if err != nil {
		return nil, "", fmt.Errorf("loading the current signing key of ClusterTokenIssuer %s: %w", s.issuer.Name, err)
	}
	c := s.want.claims
	var ms []token.Membership
	for _, m := range c.Memberships {
		ms = append(ms, token.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role})
	}
	value, err := token.MintJWT(key, token.Claims{
		Issuer:      s.issuer.Spec.Issuer,
		Subject:     token.Subject(s.token.Namespace, s.token.Name),
		Audience:    c.Audiences,
		IssuedAt:    s.now,
		NotBefore:   s.now,
		ExpiresAt:   exp,
		ID:          id,
		Tenant:      c.Tenant,
		SubTenant:   c.SubTenant,
		Role:        c.Role,
		Memberships: ms,
		Scopes:      c.Scopes,
	})
	if err != nil {
		return nil, "", err
	}
	issued.SigningKeyID = key.ID
	issued.Digest = token.Digest(value)
	return issued, value, nil
}
