package apitoken

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TestNoTokenMaterialLeaks runs every path that mints, rotates, repairs, refuses or
// revokes with a logger that keeps every line, then scans the logs, the returned
// errors, the events and the conditions for the token values and the opaque secrets.
func TestNoTokenMaterialLeaks(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	logger, logs := bufferLogger()
	h.ctx = ctrl.LoggerInto(ctx, logger)

	values := map[string]bool{}
	var errs []string
	pass := func(tok *tokensv1.APIToken) {
		t.Helper()
		if _, err := h.reconcile(tok); err != nil {
			errs = append(errs, err.Error())
		}
		if sec := getSecret(t, ns, secretName(tok)); sec != nil && len(sec.Data[tokensv1.SecretKeyToken]) > 0 {
			values[string(sec.Data[tokensv1.SecretKeyToken])] = true
		}
	}

	for _, format := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
		tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
			a.Spec.Format = format
			a.Spec.Rotation = &tokensv1.RotationSpec{GracePeriod: &metav1.Duration{Duration: time.Minute}}
		})
		pass(tok) // mint
		h.clock.Step(2 * time.Hour)
		pass(tok) // rotate

		// A hand edit that keeps a valid-looking token of another format, then one
		// that swaps in the previous token.
		sec := getSecret(t, ns, tok.Name)
		for v := range values {
			if v != string(sec.Data[tokensv1.SecretKeyToken]) {
				sec.Data[tokensv1.SecretKeyToken] = []byte(v)
				break
			}
		}
		g.Expect(k8s.Update(ctx, sec)).To(Succeed())
		pass(tok) // repair

		update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Role = "no-such-role" })
		pass(tok) // policy violation
		update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Role = "viewer"; a.Spec.Revoked = true })
		pass(tok) // revoke
		g.Expect(k8s.Delete(ctx, tok)).To(Succeed())
		pass(tok) // finalize
	}

	// A conflict with a Secret someone else holds.
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}})).To(Succeed())
	taken := newToken(t, ns, f.name, func(a *tokensv1.APIToken) { a.Spec.Secret = &tokensv1.SecretSpec{Name: "taken"} })
	pass(taken)

	g.Expect(len(values)).To(BeNumerically(">=", 6))
	for _, e := range errs {
		g.Expect(containsAny(e, leakNeedles(values))).To(BeFalse(), "error %q holds token material", e)
	}
	g.Eventually(func() []string { return eventReasons(t, ns, taken.Name) }).Should(ContainElement(tokensv1.ReasonSecretConflict))
	assertNoTokenMaterial(t, ns, values, logs.String())
}
