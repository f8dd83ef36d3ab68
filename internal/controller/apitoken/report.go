package apitoken

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
)

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
	// The condition names fields from the spec, as the rest of its message does.
	if w := policy.RotationWarnings(field.NewPath("rotation"), s.want.renewBefore, s.want.gracePeriod); len(w) > 0 {
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
