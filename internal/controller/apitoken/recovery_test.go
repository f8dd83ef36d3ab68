package apitoken

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

var errCrash = errors.New("crash")

// TestCrashRecovery stops a mint right after each of its steps, as a crash of the
// manager would, then serves the APIToken with a brand-new Reconciler that has no
// memory of the first. Whatever the step, the Secret never holds a token the status
// does not list, the APIToken ends Ready with exactly one current token that the
// Secret holds, and no token that was ever in the Secret stops being accepted before
// its grace ends.
func TestCrashRecovery(t *testing.T) {
	scenarios := []struct {
		name string
		// before brings the APIToken to the pass that will crash.
		before func(t *testing.T, h *harness, tok *tokensv1.APIToken)
	}{
		{"first mint", func(*testing.T, *harness, *tokensv1.APIToken) {}},
		{"rotation", func(t *testing.T, h *harness, tok *tokensv1.APIToken) {
			h.mustReconcile(tok)
			h.clock.Step(2 * time.Hour)
		}},
		{"rotate annotation", func(t *testing.T, h *harness, tok *tokensv1.APIToken) {
			h.mustReconcile(tok)
			update(t, tok, func(a *tokensv1.APIToken) { a.Annotations = map[string]string{tokensv1.RotateAnnotation: "now"} })
		}},
		{"repair of a deleted Secret", func(t *testing.T, h *harness, tok *tokensv1.APIToken) {
			h.mustReconcile(tok)
			NewWithT(t).Expect(k8s.Delete(context.Background(), getSecret(t, tok.Namespace, tok.Name))).To(Succeed())
			h.clock.Step(time.Minute)
		}},
	}
	steps := []string{stepMinted, stepStatusWritten, stepSecretWritten, stepRestarted}
	for _, format := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatOpaque} {
		for _, sc := range scenarios {
			for _, crashAt := range steps {
				t.Run(fmt.Sprintf("%s/%s/crash after %s", format, sc.name, crashAt), func(t *testing.T) {
					testCrashRecovery(t, format, sc.before, crashAt)
				})
			}
		}
	}
}

func testCrashRecovery(t *testing.T, format tokensv1.TokenFormat, before func(*testing.T, *harness, *tokensv1.APIToken), crashAt string) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	labels := map[string]string{"app": "worker"}
	g.Expect(k8s.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "worker"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	})).To(Succeed())
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Format = format
		a.Spec.RolloutRestartTargets = []tokensv1.RolloutRestartTarget{{Kind: "Deployment", Name: "worker"}}
	})

	// seen holds every token the Secret ever held; with the default grace each must
	// be accepted until it expires, which is after the end of this test.
	seen := map[string]bool{}
	observe := func() {
		t.Helper()
		if sec := getSecret(t, ns, tok.Name); sec != nil {
			if v := string(sec.Data[tokensv1.SecretKeyToken]); v != "" {
				seen[v] = true
				g.Expect(accepted(t, f, getToken(t, tok), v, h.clock.Now())).To(BeTrue(), "the Secret holds a token the status does not list")
			}
		}
	}
	before(t, h, tok)
	observe()

	crashing := newReconciler(h.clock)
	crashing.hook = func(step string) error {
		if step == crashAt {
			return errCrash
		}
		return nil
	}
	_, err := crashing.Reconcile(ctx, requestFor(tok))
	g.Expect(err).To(MatchError(ContainSubstring("aborted after step " + crashAt)))
	observe()

	// A new process, with no memory of the first.
	fresh := newReconciler(h.clock)
	_, err = fresh.Reconcile(ctx, requestFor(tok))
	g.Expect(err).NotTo(HaveOccurred())
	observe()

	got := getToken(t, tok)
	g.Expect(got.Status.Current).NotTo(BeNil())
	sec := getSecret(t, ns, tok.Name)
	g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID), "the Secret holds the current token")
	value := string(sec.Data[tokensv1.SecretKeyToken])
	g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeTrue())
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	for _, p := range got.Status.PreviousTokens {
		g.Expect(p.TokenID).NotTo(Equal(got.Status.Current.TokenID), "exactly one current token")
	}
	for v := range seen {
		g.Expect(accepted(t, f, got, v, h.clock.Now())).To(BeTrue(), "a token that was in the Secret was retired before its grace ended")
	}
	dep := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "worker"}, dep)).To(Succeed())
	g.Expect(dep.Spec.Template.Annotations[tokensv1.RestartedAtAnnotation]).To(Equal(got.Status.Current.IssuedAt.UTC().Format(time.RFC3339)),
		"the workload restarted for the token its Secret holds")

	// Recovered for good: another pass changes nothing.
	_, err = newReconciler(h.clock).Reconcile(ctx, requestFor(tok))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(got.ResourceVersion))
	g.Expect(getSecret(t, ns, tok.Name).ResourceVersion).To(Equal(sec.ResourceVersion))
}

// requestFor is the reconcile request of tok.
func requestFor(tok *tokensv1.APIToken) ctrl.Request {
	return ctrl.Request{NamespacedName: types.NamespacedName{Namespace: tok.Namespace, Name: tok.Name}}
}
