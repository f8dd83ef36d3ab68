package apitoken

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// secretValue is the token the Secret of tok holds.
func secretValue(t testing.TB, tok *tokensv1.APIToken) string {
	t.Helper()
	sec := getSecret(t, tok.Namespace, secretName(tok))
	NewWithT(t).Expect(sec).NotTo(BeNil())
	return string(sec.Data[tokensv1.SecretKeyToken])
}

func TestRotation(t *testing.T) {
	tests := []struct {
		name  string
		grace *metav1.Duration
		// retire is how long after the rotation the first token retires; 0: at its
		// expiry, 3h after t0.
		retire time.Duration
	}{
		{"default grace: until expiry", nil, 0},
		{"gracePeriod", &metav1.Duration{Duration: 10 * time.Minute}, 10 * time.Minute},
		{"gracePeriod past expiry is cut", &metav1.Duration{Duration: 150 * time.Minute}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newIssuer(t, nil)
			ns := newNamespace(t)
			h := newHarness(t)
			t0 := h.clock.Now()
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.Rotation = &tokensv1.RotationSpec{GracePeriod: tt.grace}
			})
			h.mustReconcile(tok)
			first := getToken(t, tok).Status.Current
			firstValue := secretValue(t, tok)
			due := t0.Add(2*time.Hour - renewalJitter(first.TokenID, time.Hour))

			// Just before renewal nothing happens.
			h.clock.SetTime(due.Add(-time.Second))
			g.Expect(h.mustReconcile(tok).RequeueAfter).To(Equal(time.Second))
			g.Expect(getToken(t, tok).Status.Current.TokenID).To(Equal(first.TokenID))

			h.clock.SetTime(due)
			retire := tt.retire
			if retire == 0 {
				retire = t0.Add(3 * time.Hour).Sub(due)
			}
			res := h.mustReconcile(tok)
			got := getToken(t, tok)
			st := got.Status
			g.Expect(st.Current.TokenID).NotTo(Equal(first.TokenID))
			g.Expect(st.Rotations).To(Equal(int64(1)))
			g.Expect(st.PreviousTokens).To(HaveLen(1))
			g.Expect(st.PreviousTokens[0].TokenID).To(Equal(first.TokenID))
			g.Expect(st.PreviousTokens[0].RetireAt.Time).To(BeTemporally("==", h.clock.Now().Add(retire)))
			g.Expect(condition(got, tokensv1.ConditionReady).Reason).To(Equal(tokensv1.ReasonRotated))
			g.Expect(res.RequeueAfter).To(Equal(retire), "the next event is the retirement")
			newValue := secretValue(t, tok)
			g.Expect(accepted(t, f, got, newValue, h.clock.Now())).To(BeTrue())
			g.Expect(accepted(t, f, got, firstValue, h.clock.Now())).To(BeTrue(), "the previous token lives on through its grace")
			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonRotated))

			// At retireAt the previous token leaves the status.
			h.clock.Step(retire)
			h.mustReconcile(tok)
			got = getToken(t, tok)
			g.Expect(got.Status.PreviousTokens).To(BeEmpty())
			g.Expect(accepted(t, f, got, firstValue, h.clock.Now())).To(BeFalse())
			g.Expect(got.Status.Current.TokenID).To(Equal(st.Current.TokenID), "no rotation at retirement")
		})
	}
}

func TestRotationDisabled(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Lifetime = metav1.Duration{Duration: time.Hour}
		a.Spec.Rotation = &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled}
	})
	res := h.mustReconcile(tok)
	g.Expect(res.RequeueAfter).To(Equal(time.Hour), "the expiry is the next event")
	first := getToken(t, tok)
	g.Expect(first.Status.RenewalTime).To(BeNil())
	g.Expect(condition(first, tokensv1.ConditionExpired)).To(BeNil())

	h.clock.Step(time.Hour)
	res = h.mustReconcile(tok)
	g.Expect(res.RequeueAfter).To(BeZero())
	got := getToken(t, tok)
	g.Expect(got.Status.Current.TokenID).To(Equal(first.Status.Current.TokenID), "never rotated")
	g.Expect(condition(got, tokensv1.ConditionExpired).Status).To(Equal(metav1.ConditionTrue))
	ready := condition(got, tokensv1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(tokensv1.ReasonExpired))

	// Losing the Secret of an expired token mints nothing.
	g.Expect(k8s.Delete(context.Background(), getSecret(t, ns, tok.Name))).To(Succeed())
	h.mustReconcile(tok)
	g.Expect(getSecret(t, ns, tok.Name)).To(BeNil())
	g.Expect(getToken(t, tok).Status.Current.TokenID).To(Equal(first.Status.Current.TokenID))

	// Asking for a rotation does.
	update(t, tok, func(a *tokensv1.APIToken) { a.Annotations = map[string]string{tokensv1.RotateAnnotation: "renew"} })
	h.mustReconcile(tok)
	got = getToken(t, tok)
	g.Expect(got.Status.Current.TokenID).NotTo(Equal(first.Status.Current.TokenID))
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(condition(got, tokensv1.ConditionExpired)).To(BeNil(), "Expired is present only while True")
	g.Expect(accepted(t, f, got, secretValue(t, tok), h.clock.Now())).To(BeTrue())
}

func TestRotateAnnotation(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Rotation = &tokensv1.RotationSpec{GracePeriod: &metav1.Duration{Duration: 30 * time.Minute}}
	})
	h.mustReconcile(tok)
	first := secretValue(t, tok)

	update(t, tok, func(a *tokensv1.APIToken) { a.Annotations = map[string]string{tokensv1.RotateAnnotation: "1"} })
	h.mustReconcile(tok)
	got := getToken(t, tok)
	g.Expect(got.Status.LastRotateRequest).To(Equal("1"))
	g.Expect(got.Status.PreviousTokens).To(HaveLen(1))
	g.Expect(got.Status.PreviousTokens[0].RetireAt.Time).To(BeTemporally("==", h.clock.Now().Add(30*time.Minute)))
	second := secretValue(t, tok)
	g.Expect(second).NotTo(Equal(first))
	g.Expect(accepted(t, f, got, first, h.clock.Now())).To(BeTrue())

	// The same value is served once.
	h.mustReconcile(tok)
	g.Expect(secretValue(t, tok)).To(Equal(second))

	// A leaked token: rotate and retire every previous token at once.
	update(t, tok, func(a *tokensv1.APIToken) {
		a.Annotations = map[string]string{tokensv1.RotateAnnotation: "2", tokensv1.RetirePreviousAnnotation: "true"}
	})
	h.mustReconcile(tok)
	got = getToken(t, tok)
	g.Expect(got.Status.PreviousTokens).To(BeEmpty())
	g.Expect(got.Status.Rotations).To(Equal(int64(2)))
	third := secretValue(t, tok)
	g.Expect(accepted(t, f, got, third, h.clock.Now())).To(BeTrue())
	g.Expect(accepted(t, f, got, second, h.clock.Now())).To(BeFalse())
	g.Expect(accepted(t, f, got, first, h.clock.Now())).To(BeFalse())
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
}

func TestSpecChangeRemints(t *testing.T) {
	ns := newNamespace(t)
	f := newIssuer(t, func(i *tokensv1.ClusterTokenIssuer) {
		i.Spec.Tenants = []tokensv1.Tenant{{Name: ns, Namespaces: []string{ns}}, {Name: "other", Namespaces: []string{ns}}}
	})
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)

	changes := []struct {
		name   string
		mutate func(a *tokensv1.APIToken)
		check  func(g Gomega, cur *tokensv1.IssuedToken)
	}{
		{"tenant", func(a *tokensv1.APIToken) { a.Spec.Tenant = "other" }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Claims.Tenant).To(Equal("other")) }},
		{"subTenant", func(a *tokensv1.APIToken) { a.Spec.SubTenant = "team" }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Claims.SubTenant).To(Equal("team")) }},
		{"role", func(a *tokensv1.APIToken) { a.Spec.Role = "admin" }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Claims.Role).To(Equal("admin")) }},
		{"scopes", func(a *tokensv1.APIToken) { a.Spec.Scopes = []string{"x:read"} }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Claims.Scopes).To(Equal([]string{"x:read"})) }},
		{"audiences", func(a *tokensv1.APIToken) { a.Spec.Audiences = []string{"billing"} }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Claims.Audiences).To(Equal([]string{"billing"})) }},
		{"format", func(a *tokensv1.APIToken) { a.Spec.Format = tokensv1.FormatOpaque }, func(g Gomega, c *tokensv1.IssuedToken) { g.Expect(c.Format).To(Equal(tokensv1.FormatOpaque)) }},
		{"lifetime", func(a *tokensv1.APIToken) { a.Spec.Lifetime = metav1.Duration{Duration: 5 * time.Hour} }, func(g Gomega, c *tokensv1.IssuedToken) {
			g.Expect(c.ExpiresAt.Sub(c.IssuedAt.Time)).To(Equal(5 * time.Hour))
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			before := getToken(t, tok).Status.Current
			beforeValue := secretValue(t, tok)
			update(t, tok, c.mutate)
			h.mustReconcile(tok)
			got := getToken(t, tok)
			g.Expect(got.Status.Current.TokenID).NotTo(Equal(before.TokenID))
			c.check(g, got.Status.Current)
			g.Expect(got.Status.PreviousTokens).To(ContainElement(HaveField("TokenID", before.TokenID)))
			g.Expect(accepted(t, f, got, secretValue(t, tok), h.clock.Now())).To(BeTrue())
			g.Expect(accepted(t, f, got, beforeValue, h.clock.Now())).To(BeTrue())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		})
	}

	t.Run("description does not re-mint", func(t *testing.T) {
		g := NewWithT(t)
		before := getToken(t, tok).Status.Current.TokenID
		update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Description = "for the docs" })
		h.mustReconcile(tok)
		got := getToken(t, tok)
		g.Expect(got.Status.Current.TokenID).To(Equal(before))
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	})
}

func TestSigningKeys(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)
	first := getToken(t, tok).Status.Current

	// A key rotation that keeps the old key published changes nothing.
	f.addKey(t, false)
	h.mustReconcile(tok)
	g.Expect(getToken(t, tok).Status.Current.TokenID).To(Equal(first.TokenID))

	// Keys lost: the token's key left the JWKS, so the token is re-minted.
	f.addKey(t, true)
	h.mustReconcile(tok)
	got := getToken(t, tok)
	g.Expect(got.Status.Current.TokenID).NotTo(Equal(first.TokenID))
	g.Expect(got.Status.Current.SigningKeyID).To(Equal(f.current().ID))
	g.Expect(accepted(t, f, got, secretValue(t, tok), h.clock.Now())).To(BeTrue())
}

func TestShortGracePeriodWarning(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Rotation = &tokensv1.RotationSpec{RenewBefore: &metav1.Duration{Duration: time.Minute}, GracePeriod: &metav1.Duration{Duration: 30 * time.Second}}
	})
	h.mustReconcile(tok)
	ready := condition(getToken(t, tok), tokensv1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(ready.Message).To(ContainSubstring("warning: rotation.renewBefore 1m0s is shorter than 2m0s"))
	g.Expect(ready.Message).To(ContainSubstring("rotation.gracePeriod 30s is shorter than 2m0s"))
	g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonShortGracePeriod))
}

func TestRolloutRestart(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	labels := map[string]string{"app": "runner"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "runner"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	g.Expect(k8s.Create(ctx, dep)).To(Succeed())
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.RolloutRestartTargets = []tokensv1.RolloutRestartTarget{{Kind: "Deployment", Name: "runner"}, {Kind: "StatefulSet", Name: "missing"}}
	})
	restartedAt := func() string {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "runner"}, d)).To(Succeed())
		return d.Spec.Template.Annotations[tokensv1.RestartedAtAnnotation]
	}

	h.mustReconcile(tok)
	cur := getToken(t, tok).Status.Current
	g.Expect(restartedAt()).To(Equal(cur.IssuedAt.UTC().Format(time.RFC3339)))
	g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement("RestartTargetNotFound"))

	// A quiet pass restarts nothing.
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "runner"}, d)).To(Succeed())
	rv := d.ResourceVersion
	h.clock.Step(time.Hour)
	h.mustReconcile(tok)
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "runner"}, d)).To(Succeed())
	g.Expect(d.ResourceVersion).To(Equal(rv))

	// A rotation restarts again.
	h.clock.Step(time.Hour)
	h.mustReconcile(tok)
	cur = getToken(t, tok).Status.Current
	g.Expect(restartedAt()).To(Equal(cur.IssuedAt.UTC().Format(time.RFC3339)))
}
