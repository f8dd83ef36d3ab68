package issuer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
)

// remintPoll is how often the tokens still to re-mint after a withdrawal are counted.
// The APIToken controller does the re-minting (a JWT whose key left the JWKS is
// minted again, as for lost keys); the issuer only reports how far it came.
const remintPoll = 2 * time.Second

// trackRemint records a withdrawal and how far the re-minting of its tokens has come.
// The pass that withdraws keys counts the APITokens holding a JWT signed with them,
// before any of them can see the withdrawal, and sets KeysWithdrawn=True with reason
// Reminting (Reminted when there are none), with a warning event; later passes count
// again until none is left, then set reason Reminted with an event. The condition
// clears (False, KeysIntact) at the first rotation after the re-minting ended.
func (r *Reconciler) trackRemint(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := &s.issuer.Status
	s.remaining = -1
	switch {
	case len(s.plan.withdrawn) > 0:
		n, err := r.signedWith(ctx, s, s.plan.withdrawn)
		if err != nil {
			return ctrl.Result{}, err
		}
		st.LastWithdrawal = &tokensv1.KeyWithdrawal{KeyIDs: s.plan.withdrawn, WithdrawnAt: metav1.NewTime(s.now), Tokens: n, Remaining: n}
		s.remaining = n
		w := st.LastWithdrawal
		msg := fmt.Sprintf("Withdrew the compromised signing keys %s: they left the JWKS and the key Secret, and key %s signs at once. "+
			"%d APITokens hold a JWT signed with them; each is re-minted.", strings.Join(w.KeyIDs, ", "), s.plan.current.KeyID, n)
		r.Recorder.Eventf(s.issuer, nil, corev1.EventTypeWarning, tokensv1.ReasonKeysWithdrawn, "WithdrawKeys", "%s", msg)
		s.reportRemint()
	case st.LastWithdrawal != nil && st.LastWithdrawal.Remaining > 0:
		w := st.LastWithdrawal
		n, err := r.signedWith(ctx, s, w.KeyIDs)
		if err != nil {
			return ctrl.Result{}, err
		}
		// Tokens are only ever re-minted away from a withdrawn key, never onto one.
		n = min(n, w.Remaining)
		s.remaining = n
		if n == w.Remaining {
			return ctrl.Result{}, nil
		}
		w.Remaining = n
		s.reportRemint()
		if n == 0 {
			r.Recorder.Eventf(s.issuer, nil, corev1.EventTypeNormal, tokensv1.ReasonReminted, "Remint",
				"All %d APITokens that held a JWT signed with the withdrawn keys %s were re-minted.", w.Tokens, strings.Join(w.KeyIDs, ", "))
			ctrl.LoggerFrom(ctx).Info("Re-minted every token signed with the withdrawn keys", "keyIDs", w.KeyIDs, "tokens", w.Tokens)
		}
	case s.plan.activated == reasonNextKeyDue && meta.IsStatusConditionTrue(st.Conditions, tokensv1.ConditionKeysWithdrawn):
		s.setCondition(tokensv1.ConditionKeysWithdrawn, metav1.ConditionFalse, tokensv1.ReasonKeysIntact,
			fmt.Sprintf("The signing key rotated to %s after the withdrawal.", s.plan.current.KeyID))
	}
	return ctrl.Result{}, nil
}

// reportRemint sets KeysWithdrawn from status.lastWithdrawal.
func (s *scope) reportRemint() {
	w := s.issuer.Status.LastWithdrawal
	head := fmt.Sprintf("The compromised signing keys %s were withdrawn at %s", strings.Join(w.KeyIDs, ", "), w.WithdrawnAt.UTC().Format(time.RFC3339))
	if w.Remaining == 0 {
		s.setCondition(tokensv1.ConditionKeysWithdrawn, metav1.ConditionTrue, tokensv1.ReasonReminted,
			fmt.Sprintf("%s; all %d APITokens that held a JWT signed with them were re-minted.", head, w.Tokens))
		return
	}
	s.setCondition(tokensv1.ConditionKeysWithdrawn, metav1.ConditionTrue, tokensv1.ReasonReminting,
		fmt.Sprintf("%s; %d of %d APITokens that held a JWT signed with them were re-minted, %d to go.", head, w.Tokens-w.Remaining, w.Tokens, w.Remaining))
}

// signedWith counts the APITokens of the issuer whose current token is a JWT signed
// with one of keys and that the APIToken controller will re-mint: not revoked or
// being deleted, not stalled, and not run out with rotation disabled.
func (r *Reconciler) signedWith(ctx context.Context, s *scope, keys []string) (int32, error) {
	tokens := r.tokens
	if tokens == nil {
		tokens = controller.TokensListedBy(r.Client)
	}
	var n int32
	// Every remintPoll until the re-minting ends: one APIToken copied at a time, not
	// a list of all of them (controller.TokensByIssuer).
	err := tokens.Each(ctx, s.issuer.Name, func(t *tokensv1.APIToken) error {
		c := t.Status.Current
		switch {
		case t.Spec.Revoked, t.DeletionTimestamp != nil,
			c == nil, c.Format != tokensv1.FormatJWT, !slices.Contains(keys, c.SigningKeyID),
			meta.IsStatusConditionTrue(t.Status.Conditions, tokensv1.ConditionStalled),
			!s.now.Before(c.ExpiresAt.Time) && t.Spec.Rotation != nil && t.Spec.Rotation.Policy == tokensv1.RotationDisabled:
			return nil
		}
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading the APITokens of issuer %s: %w", s.issuer.Name, err)
	}
	return n, nil
}
