package apitoken

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// loadIssuer reads the issuer and asks the policy whether the spec may be minted.
// A refusal sets Ready=False and Stalled=True with reason IssuerNotFound,
// IssuerNotReady or PolicyViolation (the message names the rule) and returns a
// terminal error: nothing is retried until the APIToken or the issuer changes.
func (r *Reconciler) loadIssuer(ctx context.Context, s *scope) error {
	name := s.token.Spec.IssuerName()
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
	c := &s.want.claims
	err = p.CheckMintOf(policy.Request{Namespace: s.token.Namespace, Tenant: c.Tenant, Role: c.Role, Lifetime: s.want.lifetime},
		policy.Memberships(c.Memberships))
	if v := (*policy.Violation)(nil); errors.As(err, &v) {
		// err, not v: for a membership, it says which one.
		return r.stall(s, tokensv1.ReasonPolicyViolation, fmt.Sprintf("policy rule %s: %s", v.Rule, err))
	} else if err != nil {
		return err
	}
	keys, err := token.NewKeySet(jwk.ToToken(iss.Status.JWKS))
	if err != nil {
		return r.stall(s, tokensv1.ReasonIssuerNotReady, fmt.Sprintf("ClusterTokenIssuer %s publishes an unusable JWKS: %v", name, err))
	}
	if s.want.format == tokensv1.FormatJWT && iss.Status.CurrentKeyID == "" {
		return r.stall(s, tokensv1.ReasonIssuerNotReady, fmt.Sprintf("ClusterTokenIssuer %s has no current signing key", name))
	}
	s.issuer, s.keys = iss, keys
	return nil
}

// loadSecret finds the token Secret in the cache. A Secret of that name that is not
// this APIToken's sets Ready=False and Stalled=True (SecretConflict) and returns a
// terminal error: it is never written. The cache shows only labelled Secrets; a
// Secret it does not show is looked for past it only when one is needed: by a
// repair (confirmSecret), or by a create that finds the name taken (createSecret).
func (r *Reconciler) loadSecret(ctx context.Context, s *scope) error {
	s.secretName = secretName(s.token)
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.token.Namespace, Name: s.secretName}, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", s.secretName, err)
	}
	if c := meta.FindStatusCondition(s.token.Status.Conditions, tokensv1.ConditionStalled); sec == nil && c != nil && c.Status == metav1.ConditionTrue && c.Reason == tokensv1.ReasonSecretConflict {
		// An earlier pass found someone else's Secret under the name, which the cache
		// does not show: look past it, rather than list a token only to take it out.
		if sec, err = r.getSecret(ctx, s.token.Namespace, s.secretName); err != nil {
			return err
		}
	}
	if sec != nil && ownedByNamesake(sec, s.token) {
		// The Secret of a deleted APIToken of this name: writeSecret replaces it.
		sec = nil
	}
	if sec != nil && !ownedBy(sec, s.token) {
		return r.stall(s, tokensv1.ReasonSecretConflict, conflictMessage(s.secretName))
	}
	s.secret = sec
	return nil
}

// getSecret reads a Secret through the cache and, when the cache does not have it,
// from the API server: the cache holds only labelled Secrets, and a Secret someone
// else made must be found before one of ours is written over it. Nil means missing.
func (r *Reconciler) getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return r.liveSecret(ctx, namespace, name)
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return sec, nil
}
