package apitoken

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
)

// report sets the conditions of a served APIToken: Ready=True alone, or, once a token
// with rotation disabled ran out, Ready=False and Expired=True; renewalTime and
// observedGeneration; and returns when to come back: the renewal, the next retireAt
// of a previous token, or the expiry. It writes nothing.
func (r *Reconciler) report(s *scope) ctrl.Result {
	st := &s.token.Status
	cur := st.Current
	// Stalled, Revoked and Expired are present only while True: a healthy APIToken
	// carries Ready alone. Besides being what kstatus expects of abnormal conditions,
	// it is cheaper: each condition costs kube-apiserver about 0.6 ms on every status
	// write (docs/performance.md, "What an APIToken write costs").
	defer keepLegacyFalse(s)
	meta.RemoveStatusCondition(&st.Conditions, tokensv1.ConditionStalled)
	meta.RemoveStatusCondition(&st.Conditions, tokensv1.ConditionRevoked)
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

	meta.RemoveStatusCondition(&st.Conditions, tokensv1.ConditionExpired)
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

// keepLegacyFalse puts back the Revoked=False and Expired=False conditions that
// earlier versions wrote on every APIToken, when dropping them is all the pass
// would write: they go with the next status write the pass makes for a reason of its
// own (a rotation, a spec change), so that an upgrade over 100k APITokens writes
// nothing. Nothing reads a False one: the health checks and kstatus look for True.
func keepLegacyFalse(s *scope) {
	written := s.written.Status.Conditions
	legacy := func(c metav1.Condition) bool {
		return (c.Type == tokensv1.ConditionRevoked || c.Type == tokensv1.ConditionExpired) && c.Status == metav1.ConditionFalse
	}
	if !slices.ContainsFunc(written, legacy) {
		return
	}
	now := s.token.Status.Conditions
	kept := make([]metav1.Condition, 0, len(written))
	for _, c := range written {
		if n := meta.FindStatusCondition(now, c.Type); n != nil {
			kept = append(kept, *n)
		} else if legacy(c) {
			kept = append(kept, c)
		}
	}
	for _, c := range now {
		if meta.FindStatusCondition(written, c.Type) == nil {
			kept = append(kept, c)
		}
	}
	trial := s.token.Status.DeepCopy()
	trial.Conditions = kept
	if equality.Semantic.DeepEqual(*trial, s.written.Status) {
		s.token.Status = *trial
	}
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
