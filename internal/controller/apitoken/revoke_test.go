package apitoken

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

func TestRevoke(t *testing.T) {
	for _, policy := range []tokensv1.DeletionPolicy{tokensv1.DeletionDelete, tokensv1.DeletionRetain} {
		t.Run(string(policy), func(t *testing.T) {
			g := NewWithT(t)
			f := newIssuer(t, nil)
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: policy}
			})
			h.mustReconcile(tok)
			h.clock.Step(2 * time.Hour)
			h.mustReconcile(tok) // a rotation, so that there is a previous token too
			g.Expect(getToken(t, tok).Status.PreviousTokens).To(HaveLen(1))
			value := secretValue(t, tok)

			update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Revoked = true })
			res := h.mustReconcile(tok)
			g.Expect(res.RequeueAfter).To(BeZero())
			got := getToken(t, tok)
			g.Expect(got.Status.Current).To(BeNil())
			g.Expect(got.Status.PreviousTokens).To(BeEmpty())
			g.Expect(got.Status.RenewalTime).To(BeNil())
			g.Expect(condition(got, tokensv1.ConditionRevoked).Status).To(Equal(metav1.ConditionTrue))
			ready := condition(got, tokensv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(tokensv1.ReasonRevoked))
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeFalse())
			sec := getSecret(t, ns, tok.Name)
			if policy == tokensv1.DeletionDelete {
				g.Expect(sec).To(BeNil())
			} else {
				g.Expect(sec).NotTo(BeNil())
				g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyToken))
				g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyTokenID))
				g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyExpiresAt))
				g.Expect(sec.Data).To(HaveKey(tokensv1.SecretKeyTenant))
			}
			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonRevoked))

			// A second pass writes nothing.
			rv := got.ResourceVersion
			h.mustReconcile(tok)
			g.Expect(getToken(t, tok).ResourceVersion).To(Equal(rv))

			// Un-revoking mints a new token.
			update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Revoked = false })
			h.mustReconcile(tok)
			got = getToken(t, tok)
			g.Expect(condition(got, tokensv1.ConditionRevoked)).To(BeNil(), "Revoked is present only while True")
			g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(accepted(t, f, got, secretValue(t, tok), h.clock.Now())).To(BeTrue())
			g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeFalse())
		})
	}
}

func TestDeletion(t *testing.T) {
	for _, policy := range []tokensv1.DeletionPolicy{tokensv1.DeletionDelete, tokensv1.DeletionRetain} {
		t.Run(string(policy), func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			f := newIssuer(t, nil)
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: policy}
			})
			h.mustReconcile(tok)
			minted := getToken(t, tok)
			value := secretValue(t, tok)
			g.Expect(k8s.Delete(ctx, tok)).To(Succeed())

			if policy == tokensv1.DeletionDelete {
				// No finalizer: the APIToken is gone at once, and with it every token it
				// listed, for the validator (see internal/validator's
				// TestRevocationAndRotation/deleted). The Secret goes with it by garbage
				// collection, which no kube-controller-manager runs here to do: it is
				// owned by the deleted APIToken, and holds a token nobody accepts.
				err := k8s.Get(ctx, client.ObjectKeyFromObject(tok), &tokensv1.APIToken{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "deleted at once: %v", err)
				h.mustReconcile(tok)
				sec := getSecret(t, ns, tok.Name)
				g.Expect(sec).NotTo(BeNil())
				ref := metav1.GetControllerOf(sec)
				g.Expect(ref).NotTo(BeNil())
				g.Expect(ref.UID).To(Equal(minted.UID))
				g.Expect(ref.BlockOwnerDeletion).To(HaveValue(BeTrue()))

				// An APIToken created again under the name gets the Secret back: the
				// deleted one's is replaced, its token with it.
				again := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
					a.Name = tok.Name
					a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: policy}
				})
				h.mustReconcile(again)
				got := getToken(t, again)
				g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
				sec = getSecret(t, ns, tok.Name)
				g.Expect(metav1.GetControllerOf(sec).UID).To(Equal(got.UID))
				g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID))
				g.Expect(accepted(t, f, got, string(sec.Data[tokensv1.SecretKeyToken]), h.clock.Now())).To(BeTrue())
				g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeFalse(), "the deleted APIToken's token stays refused")
				return
			}

			g.Expect(getToken(t, tok).Status.Current).NotTo(BeNil(), "the finalizer holds the APIToken")
			h.mustReconcile(tok)
			err := k8s.Get(ctx, client.ObjectKeyFromObject(tok), &tokensv1.APIToken{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the finalizer was released: %v", err)
			sec := getSecret(t, ns, tok.Name)
			g.Expect(sec).NotTo(BeNil())
			g.Expect(sec.Data).NotTo(HaveKey(tokensv1.SecretKeyToken))
			g.Expect(metav1.GetControllerOf(sec)).To(BeNil(), "garbage collection must not take the retained Secret")

			// A pass for the gone APIToken does nothing.
			h.mustReconcile(tok)
		})
	}
}

// TestFinalizerFirst: an APIToken that retains its Secret has the finalizer before
// any token exists, even when the pass then stalls, and from the first pass on when
// its policy changes to Retain; one that deletes it never gets one.
func TestFinalizerFirst(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	h := newHarness(t)
	retain := newToken(t, ns, "no-such-issuer", func(a *tokensv1.APIToken) {
		a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: tokensv1.DeletionRetain}
	})
	_, err := h.reconcile(retain)
	g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue())
	g.Expect(getToken(t, retain).Finalizers).To(ContainElement(Finalizer))

	f := newIssuer(t, nil)
	del := newToken(t, ns, f.name, nil)
	h.mustReconcile(del)
	g.Expect(getToken(t, del).Finalizers).To(BeEmpty())
	update(t, del, func(a *tokensv1.APIToken) {
		a.Spec.Secret = &tokensv1.SecretSpec{DeletionPolicy: tokensv1.DeletionRetain}
	})
	h.mustReconcile(del)
	g.Expect(getToken(t, del).Finalizers).To(ContainElement(Finalizer))
}

func TestSecretDrift(t *testing.T) {
	tests := []struct {
		name string
		edit func(g Gomega, sec *corev1.Secret) // nil deletes the Secret
		// remint says a new token is needed; otherwise the same token is written back.
		remint bool
	}{
		{"deleted", nil, true},
		{"token edited", func(_ Gomega, s *corev1.Secret) { s.Data[tokensv1.SecretKeyToken] = []byte("not-a-token") }, true},
		{"tokenID edited", func(_ Gomega, s *corev1.Secret) {
			s.Data[tokensv1.SecretKeyTokenID] = []byte("01HZZZZZZZZZZZZZZZZZZZZZZZ")
		}, true},
		{"role edited", func(_ Gomega, s *corev1.Secret) { s.Data[tokensv1.SecretKeyRole] = []byte("admin") }, false},
		{"expiresAt removed", func(_ Gomega, s *corev1.Secret) { delete(s.Data, tokensv1.SecretKeyExpiresAt) }, false},
		{"template label edited", func(_ Gomega, s *corev1.Secret) { s.Labels["team"] = "other" }, false},
		{"managed-by label removed", func(_ Gomega, s *corev1.Secret) { delete(s.Labels, tokensv1.ManagedByLabel) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			f := newIssuer(t, nil)
			ns := newNamespace(t)
			h := newHarness(t)
			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
				a.Spec.Secret = &tokensv1.SecretSpec{Template: &tokensv1.SecretTemplate{Labels: map[string]string{"team": "ci"}}}
			})
			h.mustReconcile(tok)
			before := getToken(t, tok).Status.Current
			value := secretValue(t, tok)

			sec := getSecret(t, ns, tok.Name)
			if tt.edit == nil {
				g.Expect(k8s.Delete(ctx, sec)).To(Succeed())
			} else {
				tt.edit(g, sec)
				g.Expect(k8s.Update(ctx, sec)).To(Succeed())
			}
			h.clock.Step(time.Minute)
			h.mustReconcile(tok)

			got := getToken(t, tok)
			fixed := getSecret(t, ns, tok.Name)
			g.Expect(fixed).NotTo(BeNil())
			g.Expect(fixed.Labels).To(HaveKeyWithValue(tokensv1.ManagedByLabel, tokensv1.ManagedByValue))
			g.Expect(fixed.Labels).To(HaveKeyWithValue("team", "ci"))
			g.Expect(string(fixed.Data[tokensv1.SecretKeyRole])).To(Equal("editor"))
			g.Expect(string(fixed.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID))
			g.Expect(string(fixed.Data[tokensv1.SecretKeyExpiresAt])).To(Equal(got.Status.Current.ExpiresAt.UTC().Format(time.RFC3339)))
			g.Expect(accepted(t, f, got, string(fixed.Data[tokensv1.SecretKeyToken]), h.clock.Now())).To(BeTrue())
			if tt.remint {
				g.Expect(got.Status.Current.TokenID).NotTo(Equal(before.TokenID))
				g.Expect(accepted(t, f, got, value, h.clock.Now())).To(BeTrue(), "the token the Secret held lives on through its grace")
			} else {
				g.Expect(got.Status.Current.TokenID).To(Equal(before.TokenID))
				g.Expect(string(fixed.Data[tokensv1.SecretKeyToken])).To(Equal(value))
			}
			g.Expect(condition(got, tokensv1.ConditionReady).Reason).To(Equal(tokensv1.ReasonSecretRepaired))
			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonSecretRepaired))
		})
	}
}

func TestSecretConflict(t *testing.T) {
	tests := []struct {
		name   string
		secret func(ns string, other *tokensv1.APIToken) *corev1.Secret
	}{
		{"unlabelled Secret", func(ns string, _ *tokensv1.APIToken) *corev1.Secret {
			return &corev1.Secret{Data: map[string][]byte{"password": []byte("hunter2")}}
		}},
		{"labelled but not owned", func(ns string, _ *tokensv1.APIToken) *corev1.Secret {
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}},
				Data:       map[string][]byte{"password": []byte("hunter2")},
			}
		}},
		{"owned by another APIToken", func(ns string, other *tokensv1.APIToken) *corev1.Secret {
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Labels:          map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken", Name: other.Name, UID: other.UID, Controller: new(true)}},
				},
				Data: map[string][]byte{"password": []byte("hunter2")},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			f := newIssuer(t, nil)
			ns := newNamespace(t)
			h := newHarness(t)
			other := newToken(t, ns, f.name, nil)
			sec := tt.secret(ns, other)
			sec.Namespace, sec.Name = ns, "shared"
			g.Expect(k8s.Create(ctx, sec)).To(Succeed())

			tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) { a.Spec.Secret = &tokensv1.SecretSpec{Name: "shared"} })
			_, err := h.reconcile(tok)
			g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue(), "%v", err)
			got := getToken(t, tok)
			g.Expect(got.Status.Current).To(BeNil())
			ready := condition(got, tokensv1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(tokensv1.ReasonSecretConflict))
			g.Expect(ready.Message).To(ContainSubstring("Secret shared"))
			g.Expect(condition(got, tokensv1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))

			after := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shared"}, after)).To(Succeed())
			g.Expect(after.ResourceVersion).To(Equal(sec.ResourceVersion), "not written")
			g.Eventually(func() []string { return eventReasons(t, ns, tok.Name) }).Should(ContainElement(tokensv1.ReasonSecretConflict))

			// Revoking or deleting the APIToken leaves the Secret alone too.
			g.Expect(k8s.Delete(ctx, tok)).To(Succeed())
			h.mustReconcile(tok)
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shared"}, after)).To(Succeed())
			g.Expect(after.ResourceVersion).To(Equal(sec.ResourceVersion))
		})
	}
}

// TestSecretRename: a new spec.secret.name gets a fresh token; the old Secret goes,
// while its token stays listed until it retires.
func TestSecretRename(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, nil)
	h.mustReconcile(tok)
	old := secretValue(t, tok)

	update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Secret = &tokensv1.SecretSpec{Name: "renamed"} })
	h.mustReconcile(tok)
	got := getToken(t, tok)
	g.Expect(got.Status.SecretName).To(Equal("renamed"))
	g.Expect(getSecret(t, ns, tok.Name)).To(BeNil())
	g.Expect(accepted(t, f, got, secretValue(t, got), h.clock.Now())).To(BeTrue())
	g.Expect(accepted(t, f, got, old, h.clock.Now())).To(BeTrue())
}

// cacheView reads Secrets as the manager's cache does: only those with the managed-by
// label are there.
type cacheView struct{ client.Client }

func (c cacheView) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if sec, ok := obj.(*corev1.Secret); ok && sec.Labels[tokensv1.ManagedByLabel] != tokensv1.ManagedByValue {
		*sec = corev1.Secret{}
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	return nil
}

// TestSecretConflictFoundByCreate: the cache does not show someone else's unlabelled
// Secret, so the first token is listed, and the create finds the name taken. The
// Secret is left alone, the token (never written anywhere) leaves the status again,
// and the APIToken stalls as if the Secret had been seen.
func TestSecretConflictFoundByCreate(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	h.r.Client = cacheView{k8s}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, Data: map[string][]byte{"password": []byte("hunter2")}}
	g.Expect(k8s.Create(ctx, foreign)).To(Succeed())

	var listedIDs []string
	h.r.hook = func(step string) error {
		if step == stepStatusWritten {
			listedIDs = append(listedIDs, getToken(t, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok"}}).Status.Current.TokenID)
		}
		return nil
	}
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Name = "tok"
		a.Spec.Secret = &tokensv1.SecretSpec{Name: "shared"}
	})
	_, err := h.reconcile(tok)
	g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue(), "%v", err)
	g.Expect(listedIDs).To(HaveLen(1), "the first token was listed before the create")

	got := getToken(t, tok)
	g.Expect(got.Status.Current).To(BeNil(), "the token nobody holds leaves the status")
	g.Expect(got.Status.RenewalTime).To(BeNil())
	ready := condition(got, tokensv1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(tokensv1.ReasonSecretConflict))
	g.Expect(condition(got, tokensv1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	after := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), after)).To(Succeed())
	g.Expect(after.ResourceVersion).To(Equal(foreign.ResourceVersion), "not written")

	// The next pass stalls from the read of a repair, and writes nothing.
	rv := got.ResourceVersion
	_, err = h.reconcile(tok)
	g.Expect(errors.Is(err, reconcile.TerminalError(nil))).To(BeTrue(), "%v", err)
	g.Expect(getToken(t, tok).ResourceVersion).To(Equal(rv))
	g.Expect(listedIDs).To(HaveLen(1))
}

// TestTemplateKeysDropped: labels and annotations taken out of the template leave the
// Secret, although its first write was a create and later ones are applies; other
// writers' labels stay.
func TestTemplateKeysDropped(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	tok := newToken(t, ns, f.name, func(a *tokensv1.APIToken) {
		a.Spec.Secret = &tokensv1.SecretSpec{Template: &tokensv1.SecretTemplate{
			Labels:      map[string]string{"team": "ci", "tier": "gold"},
			Annotations: map[string]string{"note": "hi", "owner": "ops"},
		}}
	})
	h.mustReconcile(tok)
	h.clock.Step(2 * time.Hour)
	h.mustReconcile(tok) // a rotation: an apply over the created Secret
	sec := getSecret(t, ns, tok.Name)
	sec.Labels["added-by"] = "someone"
	g.Expect(k8s.Update(ctx, sec)).To(Succeed())

	update(t, tok, func(a *tokensv1.APIToken) {
		a.Spec.Secret.Template = &tokensv1.SecretTemplate{Labels: map[string]string{"team": "ci"}, Annotations: map[string]string{"owner": "ops"}}
	})
	h.mustReconcile(tok)
	sec = getSecret(t, ns, tok.Name)
	g.Expect(sec.Labels).To(Equal(map[string]string{"team": "ci", "added-by": "someone", tokensv1.ManagedByLabel: tokensv1.ManagedByValue}))
	g.Expect(sec.Annotations).To(Equal(map[string]string{"owner": "ops"}))
	got := getToken(t, tok)
	g.Expect(string(sec.Data[tokensv1.SecretKeyTokenID])).To(Equal(got.Status.Current.TokenID))
	g.Expect(condition(got, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

	// Done once: the next spec change that drops nothing writes the Secret once.
	before := getSecret(t, ns, tok.Name)
	update(t, tok, func(a *tokensv1.APIToken) { a.Spec.Description = "changed" })
	h.mustReconcile(tok)
	g.Expect(getSecret(t, ns, tok.Name).Labels).To(Equal(before.Labels))
}
