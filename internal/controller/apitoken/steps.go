package apitoken

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// maxPreviousTokens is the API's bound on status.previousTokens.
const maxPreviousTokens = 16

// loadIssuer reads the issuer and asks the policy whether the spec may be minted.
// A refusal sets Ready=False and Stalled=True with reason IssuerNotFound,
// IssuerNotReady or PolicyViolation (the message names the rule) and returns a
// terminal error: nothing is retried until the APIToken or the issuer changes.
func (r *Reconciler) loadIssuer(ctx context.Context, s *scope) error {
	name := issuerName(s.token)
	iss := &tokensv1.ClusterTokenIssuer{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return r.stall(s, tokensv1.ReasonIssuerNotFound, fmt.Sprintf("ClusterTokenIssuer %s does not exist", name))
		}
		return fmt.Errorf("reading ClusterTokenIssuer %s: %w", name, err)
	}
	if !meta.IsStatusConditionTrue(iss.Status.Conditions, tokensv1.ConditionReady) {
		return r.stall(s, tokensv1.ReasonIssuerNotReady, fmt.Sprintf("ClusterTokenIssuer %s is not Ready", name))
	}
	p, err := policy.ForIssuer(&iss.Spec)
	if err != nil {
		return r.stall(s, tokensv1.ReasonPolicyViolation, fmt.Sprintf("ClusterTokenIssuer %s has an invalid policy: %v", name, err))
	}
	s.want = desired(&s.token.Spec, &iss.Spec)
	err = p.CheckMint(policy.Request{Namespace: s.token.Namespace, Tenant: s.want.claims.Tenant, Role: s.want.claims.Role, Lifetime: s.want.lifetime})
	if v := (*policy.Violation)(nil); errors.As(err, &v) {
		return r.stall(s, tokensv1.ReasonPolicyViolation, fmt.Sprintf("policy rule %s: %s", v.Rule, v.Message))
	} else if err != nil {
		return err
	}
	keys, err := token.NewKeySet(jwksOf(iss))
	if err != nil {
		return r.stall(s, tokensv1.ReasonIssuerNotReady, fmt.Sprintf("ClusterTokenIssuer %s publishes an unusable JWKS: %v", name, err))
	}
	if s.want.format == tokensv1.FormatJWT && iss.Status.CurrentKeyID == "" {
		return r.stall(s, tokensv1.ReasonIssuerNotReady, fmt.Sprintf("ClusterTokenIssuer %s has no current signing key", name))
	}
	s.issuer, s.keys = iss, keys
	return nil
}

// jwksOf converts the issuer's published keys for the token package.
func jwksOf(iss *tokensv1.ClusterTokenIssuer) token.JWKS {
	out := token.JWKS{Keys: []token.JWK{}}
	if iss.Status.JWKS == nil {
		return out
	}
	for _, k := range iss.Status.JWKS.Keys {
		out.Keys = append(out.Keys, token.JWK{Kty: k.Kty, Crv: k.Crv, X: k.X, Y: k.Y, N: k.N, E: k.E, Kid: k.Kid, Alg: k.Alg, Use: k.Use})
	}
	return out
}

// loadSecret finds the token Secret. A Secret of that name that is not this
// APIToken's sets Ready=False and Stalled=True (SecretConflict) and returns a
// terminal error: it is never written.
func (r *Reconciler) loadSecret(ctx context.Context, s *scope) error {
	s.secretName = secretName(s.token)
	sec, err := r.getSecret(ctx, s.token.Namespace, s.secretName)
	if err != nil {
		return err
	}
	if sec != nil && !ownedBy(sec, s.token) {
		return r.stall(s, tokensv1.ReasonSecretConflict, fmt.Sprintf("Secret %s already exists and is not managed by this APIToken; it is left alone", s.secretName))
	}
	s.secret = sec
	return nil
}

// getSecret reads a Secret through the cache and, when the cache does not have it,
// from the API server: the cache holds only labelled Secrets, and a Secret someone
// else made must be found before one of ours is written over it. Nil means missing.
func (r *Reconciler) getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		err = r.apiReader().Get(ctx, key, sec)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return sec, nil
}

// ensureToken makes the Secret hold a valid token listed in the status: it mints one
// when a mint policy asks (see mint), or rewrites the Secret around the token it
// holds when only its metadata or side keys drifted. It drops previous tokens whose
// retireAt passed. It sets no condition; report does.
func (r *Reconciler) ensureToken(ctx context.Context, s *scope) error {
	st := &s.token.Status
	st.PreviousTokens = dropRetired(st.PreviousTokens, s.now)
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
	if t != nil {
		if err := r.checkFresh(ctx, s); err != nil {
			return err
		}
		return r.mint(ctx, s, t, secretHolds(in) == "")
	}
	if expiredForGood(in) {
		s.expired = true
		return nil
	}
	st.SecretName = s.secretName
	// The Secret holds the current token, so its value is known and can be rewritten.
	value := string(s.secret.Data[tokensv1.SecretKeyToken])
	drifted := !secretUpToDate(s.secret, s.token, st.Current, value)
	if !drifted && s.token.Generation == s.observedBefore {
		return nil
	}
	// A spec change re-applies even an up-to-date Secret: labels and annotations
	// dropped from the template leave it only through server-side apply.
	if err := r.applySecret(ctx, s.token, s.secretName, value, st.Current); err != nil {
		return err
	}
	if drifted {
		s.action = tokensv1.ReasonSecretRepaired
		msg := fmt.Sprintf("Rewrote Secret %s around token %s after it was edited", s.secretName, st.Current.TokenID)
		r.event(s.token, corev1.EventTypeNormal, tokensv1.ReasonSecretRepaired, "Repair", msg)
		s.log.Info("Repaired the token Secret", "secret", s.secretName, "tokenID", st.Current.TokenID)
	}
	return nil
}

// confirmSecret replaces the cached Secret of the pass with the API server's.
func (r *Reconciler) confirmSecret(ctx context.Context, s *scope, in *mintInput) error {
	sec := &corev1.Secret{}
	err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: s.token.Namespace, Name: s.secretName}, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", s.secretName, err)
	case !ownedBy(sec, s.token):
		return r.stall(s, tokensv1.ReasonSecretConflict, fmt.Sprintf("Secret %s already exists and is not managed by this APIToken; it is left alone", s.secretName))
	}
	s.secret, in.secret = sec, sec
	return nil
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

// listed reports whether tok's status lists the token id.
func listed(tok *tokensv1.APIToken, id string) bool {
	if c := tok.Status.Current; c != nil && c.TokenID == id {
		return true
	}
	for _, p := range tok.Status.PreviousTokens {
		if p.TokenID == id {
			return true
		}
	}
	return false
}

// mint makes a new token in memory, lists it in the status as current (the old
// current moves to previousTokens) and writes the status, then writes the Secret.
// The status is the write-ahead log: a crash between the two writes leaves a listed
// token nobody holds, while the Secret still holds a token that is listed as well;
// the next pass sees that the Secret does not hold the current token and mints again.
// secretValid says the Secret holds the current token, which then stays listed and
// valid through both writes, so Ready can go out with the first one.
func (r *Reconciler) mint(ctx context.Context, s *scope, t *trigger, secretValid bool) error {
	issued, value, err := r.newToken(ctx, s)
	if err != nil {
		return err
	}
	if err := r.step(s, stepMinted); err != nil {
		return err
	}

	st := &s.token.Status
	oldSecretName := st.SecretName
	retireNow, rotated := false, st.Current != nil
	if old := st.Current; old != nil {
		retireNow = rotationRequested(&mintInput{token: s.token}) != nil && s.token.Annotations[tokensv1.RetirePreviousAnnotation] == "true"
		if retireNow {
			// A leaked token: every previous one goes now, without grace.
			st.PreviousTokens = nil
		} else if at := s.want.retireAt(old, s.now); at.After(s.now) {
			prev := *old.DeepCopy()
			prev.RetireAt = &metav1.Time{Time: at}
			st.PreviousTokens = append(st.PreviousTokens, prev)
		}
		if n := len(st.PreviousTokens); n > maxPreviousTokens {
			st.PreviousTokens = st.PreviousTokens[n-maxPreviousTokens:]
		}
		st.Rotations++
	}
	st.Current = issued
	st.SecretName = s.secretName
	if v := s.token.Annotations[tokensv1.RotateAnnotation]; v != "" {
		st.LastRotateRequest = v
	}
	s.action = t.reason
	s.secretWritten = true
	if secretValid && !retireNow && meta.IsStatusConditionTrue(st.Conditions, tokensv1.ConditionReady) {
		r.report(s)
	}
	// The pass may have been paused since it began (see Reconciler.Leading).
	if err := r.leading(); err != nil {
		return err
	}
	if err := r.writeStatus(ctx, s); err != nil {
		return err
	}
	if err := r.step(s, stepStatusWritten); err != nil {
		return err
	}

	if err := r.leading(); err != nil {
		// The token is listed but no Secret holds it: the leader repairs that.
		return err
	}
	if err := r.applySecret(ctx, s.token, s.secretName, value, issued); err != nil {
		return err
	}
	if err := r.step(s, stepSecretWritten); err != nil {
		return err
	}
	if rotated {
		rotationsTotal.WithLabelValues(s.token.Namespace, s.token.Name).Inc()
	}
	msg := fmt.Sprintf("Wrote token %s to Secret %s: %s", issued.TokenID, s.secretName, t.message)
	r.event(s.token, corev1.EventTypeNormal, t.reason, "Mint", msg)
	s.log.Info("Minted a token", "tokenID", issued.TokenID, "secret", s.secretName, "reason", t.reason, "why", t.message)

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
		prefix := s.issuer.Spec.OpaquePrefix
		if prefix == "" {
			prefix = "apt"
		}
		o, err := token.MintOpaque(prefix, id)
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
	value, err := token.MintJWT(key, token.Claims{
		Issuer:    s.issuer.Spec.Issuer,
		Subject:   token.Subject(s.token.Namespace, s.token.Name),
		Audience:  c.Audiences,
		IssuedAt:  s.now,
		NotBefore: s.now,
		ExpiresAt: exp,
		ID:        id,
		Tenant:    c.Tenant,
		SubTenant: c.SubTenant,
		Role:      c.Role,
		Scopes:    c.Scopes,
	})
	if err != nil {
		return nil, "", err
	}
	issued.SigningKeyID = key.ID
	return issued, value, nil
}

// dropRetired keeps the previous tokens whose retireAt is still ahead.
func dropRetired(prev []tokensv1.IssuedToken, now time.Time) []tokensv1.IssuedToken {
	var out []tokensv1.IssuedToken
	for _, p := range prev {
		if p.RetireAt != nil && now.Before(p.RetireAt.Time) {
			out = append(out, p)
		}
	}
	return out
}

// report sets the conditions of a served APIToken: Ready=True, or, once a token with
// rotation disabled ran out, Ready=False and Expired=True; Revoked=False, no
// Stalled; renewalTime, observedGeneration; and returns when to come back: the
// renewal, the next retireAt of a previous token, or the expiry. It writes nothing.
func (r *Reconciler) report(s *scope) ctrl.Result {
	st := &s.token.Status
	cur := st.Current
	meta.RemoveStatusCondition(&st.Conditions, tokensv1.ConditionStalled)
	s.setCondition(tokensv1.ConditionRevoked, metav1.ConditionFalse, tokensv1.ReasonNotRevoked, "The tokens of this APIToken are not revoked")
	st.ObservedGeneration = s.token.Generation
	st.RenewalTime = nil

	var next []time.Time
	for _, p := range st.PreviousTokens {
		next = append(next, p.RetireAt.Time)
	}
	if s.expired {
		msg := fmt.Sprintf("Token %s expired at %s and rotation is disabled", cur.TokenID, cur.ExpiresAt.UTC().Format(time.RFC3339))
		s.setCondition(tokensv1.ConditionExpired, metav1.ConditionTrue, tokensv1.ReasonExpired, msg)
		s.setCondition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonExpired, msg)
		return requeueAt(r.Clock.Now(), next)
	}

	s.setCondition(tokensv1.ConditionExpired, metav1.ConditionFalse, tokensv1.ReasonNotExpired, "The current token has not expired")
	reason := s.action
	if old := meta.FindStatusCondition(st.Conditions, tokensv1.ConditionReady); reason == "" && old != nil && old.Status == metav1.ConditionTrue {
		// Nothing happened: keep the reason, or every quiet pass would write.
		reason = old.Reason
	}
	if reason == "" {
		reason = tokensv1.ReasonActive
	}
	msg := fmt.Sprintf("Secret %s holds token %s, valid until %s", s.secretName, cur.TokenID, cur.ExpiresAt.UTC().Format(time.RFC3339))
	if w := s.want.warnings(); len(w) > 0 {
		msg += "; warning: " + strings.Join(w, "; ")
		if s.token.Generation != s.observedBefore && !s.warned {
			s.warned = true
			r.event(s.token, corev1.EventTypeWarning, tokensv1.ReasonShortGracePeriod, "Reconcile", strings.Join(w, "; "))
		}
	}
	s.setCondition(tokensv1.ConditionReady, metav1.ConditionTrue, reason, msg)
	next = append(next, cur.ExpiresAt.Time)
	if s.want.autoRotate {
		at := s.want.renewalTime(cur)
		st.RenewalTime = &metav1.Time{Time: at}
		next = append(next, at)
	}
	return requeueAt(r.Clock.Now(), next)
}

// requeueAt returns a result that comes back at the earliest of times still ahead.
func requeueAt(now time.Time, times []time.Time) ctrl.Result {
	var d time.Duration
	for _, t := range times {
		if dt := t.Sub(now); dt > 0 && (d == 0 || dt < d) {
			d = dt
		}
	}
	if d > 0 && d < time.Second {
		d = time.Second
	}
	return ctrl.Result{RequeueAfter: d}
}

// revoke serves spec.revoked: it clears status.current and previousTokens, so the
// validator refuses every token of this APIToken, before it deletes the Secret (or,
// with deletionPolicy Retain, empties it of its token). It sets Revoked=True,
// Ready=False (Revoked) and removes Stalled.
func (r *Reconciler) revoke(ctx context.Context, s *scope) error {
	had := r.clearTokens(s)
	msg := "All tokens of this APIToken are revoked"
	s.setCondition(tokensv1.ConditionRevoked, metav1.ConditionTrue, tokensv1.ReasonRevoked, msg)
	s.setCondition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonRevoked, msg)
	meta.RemoveStatusCondition(&s.token.Status.Conditions, tokensv1.ConditionStalled)
	s.token.Status.ObservedGeneration = s.token.Generation
	if err := r.writeStatus(ctx, s); err != nil {
		return err
	}
	released, err := r.releaseSecret(ctx, s.token, secretName(s.token), false)
	if err != nil {
		return err
	}
	if had || released {
		r.event(s.token, corev1.EventTypeNormal, tokensv1.ReasonRevoked, "Revoke", "Revoked every token of this APIToken and released Secret "+secretName(s.token))
		s.log.Info("Revoked every token", "secret", secretName(s.token))
	}
	return nil
}

// finalize revokes a deleted APIToken like revoke does, then removes the finalizer.
func (r *Reconciler) finalize(ctx context.Context, s *scope) error {
	if !controllerutil.ContainsFinalizer(s.token, Finalizer) {
		s.gone = true
		return nil
	}
	had := r.clearTokens(s)
	if err := r.writeStatus(ctx, s); err != nil {
		return err
	}
	released, err := r.releaseSecret(ctx, s.token, secretName(s.token), true)
	if err != nil {
		return err
	}
	if had || released {
		r.event(s.token, corev1.EventTypeNormal, tokensv1.ReasonRevoked, "Revoke", "Revoked every token of the deleted APIToken and released Secret "+secretName(s.token))
	}
	controllerutil.RemoveFinalizer(s.token, Finalizer)
	patch := client.MergeFromWithOptions(s.written, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Patch(ctx, s.token, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the finalizer: %w", err)
	}
	s.gone = true
	forgetMetrics(s.token.Namespace, s.token.Name)
	s.log.Info("Released the deleted APIToken", "secret", secretName(s.token))
	return nil
}

// clearTokens empties the token list of the status and reports whether it held any.
func (r *Reconciler) clearTokens(s *scope) bool {
	st := &s.token.Status
	had := st.Current != nil || len(st.PreviousTokens) > 0
	st.Current, st.PreviousTokens, st.RenewalTime = nil, nil, nil
	return had
}
