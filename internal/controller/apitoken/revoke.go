package apitoken

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
)

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
		logging.Audit(s.log).Info("Revoked every token", "secret", secretName(s.token))
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
	if err := controller.PatchMetadata(ctx, r.Client, s.written, s.token); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the finalizer: %w", err)
	}
	s.gone = true
	forgetMetrics(s.token.Namespace, s.token.Name)
	logging.Audit(s.log).Info("Released the deleted APIToken", "secret", secretName(s.token))
	return nil
}

// clearTokens empties the token list of the status and reports whether it held any.
func (r *Reconciler) clearTokens(s *scope) bool {
	st := &s.token.Status
	had := st.Current != nil || len(st.PreviousTokens) > 0
	st.Current, st.PreviousTokens, st.RenewalTime = nil, nil, nil
	return had
}
