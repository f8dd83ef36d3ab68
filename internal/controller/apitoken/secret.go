package apitoken

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
)

// secretData is what a token Secret holds for tok: for a multi-tenant token its
// memberships in place of the tenant and role.
func secretData(value string, tok *tokensv1.IssuedToken) map[string][]byte {
	d := map[string][]byte{
		tokensv1.SecretKeyToken:     []byte(value),
		tokensv1.SecretKeyTokenID:   []byte(tok.TokenID),
		tokensv1.SecretKeyExpiresAt: []byte(tok.ExpiresAt.UTC().Format(time.RFC3339)),
	}
	if ms := tok.Claims.Memberships; len(ms) > 0 {
		// Marshalling strings cannot fail.
		b, _ := json.Marshal(ms)
		d[tokensv1.SecretKeyMemberships] = b
		return d
	}
	d[tokensv1.SecretKeyTenant] = []byte(tok.Claims.Tenant)
	d[tokensv1.SecretKeyRole] = []byte(tok.Claims.Role)
	return d
}

// applySecret writes the token Secret, owned by the APIToken, by server-side apply
// under the operator's field manager, taking back any field someone else edited.
func (r *Reconciler) applySecret(ctx context.Context, owner *tokensv1.APIToken, name, value string, tok *tokensv1.IssuedToken) error {
	ac := corev1ac.Secret(name, owner.Namespace).
		WithType(corev1.SecretType(tokensv1.TokenSecretType))
	if t := owner.Spec.Secret; t != nil && t.Template != nil {
		ac.WithLabels(t.Template.Labels).WithAnnotations(t.Template.Annotations)
	}
	ac.WithLabels(map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}).
		WithOwnerReferences(controller.OwnerReference(owner, "APIToken")).
		WithData(secretData(value, tok))
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(controller.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing Secret %s: %w", name, err)
	}
	return nil
}

// secretUpToDate reports whether sec holds what applySecret would write. Keys and
// labels someone added are not looked at: they are not ours.
func secretUpToDate(sec *corev1.Secret, owner *tokensv1.APIToken, tok *tokensv1.IssuedToken, value string) bool {
	for k, v := range secretData(value, tok) {
		if !bytes.Equal(sec.Data[k], v) {
			return false
		}
	}
	if sec.Labels[tokensv1.ManagedByLabel] != tokensv1.ManagedByValue {
		return false
	}
	if t := owner.Spec.Secret; t != nil && t.Template != nil {
		for k, v := range t.Template.Labels {
			if sec.Labels[k] != v {
				return false
			}
		}
		for k, v := range t.Template.Annotations {
			if sec.Annotations[k] != v {
				return false
			}
		}
	}
	return true
}

// ownedBy reports whether owner is sec's controller. Only such a Secret is ever
// written or deleted: a Secret without the reference, or with another APIToken's, is
// someone else's, even if it carries the managed-by label.
func ownedBy(sec *corev1.Secret, owner *tokensv1.APIToken) bool {
	ref := metav1.GetControllerOfNoCopy(sec)
	return ref != nil && ref.UID == owner.UID
}

// releaseSecret takes the token out of the Secret name: it deletes the Secret, or,
// with deletionPolicy Retain, removes the token keys (and, when the APIToken is being
// deleted, its owner reference, so that garbage collection keeps the Secret). A
// Secret that is not owner's is left alone. It reports whether it changed anything.
func (r *Reconciler) releaseSecret(ctx context.Context, owner *tokensv1.APIToken, name string, deleting bool) (bool, error) {
	sec, err := r.getSecret(ctx, owner.Namespace, name)
	if err != nil || sec == nil || !ownedBy(sec, owner) {
		return false, err
	}
	if owner.Spec.Secret == nil || owner.Spec.Secret.DeletionPolicy != tokensv1.DeletionRetain {
		err := r.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("deleting Secret %s: %w", name, err)
		}
		return err == nil, nil
	}
	orig := sec.DeepCopy()
	for _, k := range []string{tokensv1.SecretKeyToken, tokensv1.SecretKeyTokenID, tokensv1.SecretKeyExpiresAt} {
		delete(sec.Data, k)
	}
	if deleting {
		var refs []metav1.OwnerReference
		for _, ref := range sec.OwnerReferences {
			if ref.UID != owner.UID {
				refs = append(refs, ref)
			}
		}
		sec.OwnerReferences = refs
	}
	if len(sec.Data) == len(orig.Data) && len(sec.OwnerReferences) == len(orig.OwnerReferences) {
		return false, nil
	}
	if err := r.Client.Patch(ctx, sec, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("emptying Secret %s: %w", name, err)
	}
	return true, nil
}

// restartTargets bumps apitoken.dev/restartedAt on the pod templates of the
// rolloutRestartTargets whose template predates the current token. The value is the
// token's issuedAt, so a pass that stopped after writing the Secret still restarts
// them, and no token restarts them twice. Workloads are read past the cache, which
// would otherwise hold every Deployment of the cluster. It sets no condition.
func (r *Reconciler) restartTargets(ctx context.Context, s *scope) error {
	cur := s.token.Status.Current
	if s.expired || cur == nil {
		return nil
	}
	stamp := cur.IssuedAt.UTC().Format(time.RFC3339)
	for _, t := range s.token.Spec.RolloutRestartTargets {
		obj, tmpl := workload(t.Kind)
		if obj == nil {
			continue
		}
		err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: s.token.Namespace, Name: t.Name}, obj)
		if apierrors.IsNotFound(err) {
			if s.secretWritten {
				r.event(s.token, corev1.EventTypeWarning, "RestartTargetNotFound", "Restart", fmt.Sprintf("%s %s does not exist", t.Kind, t.Name))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s %s: %w", t.Kind, t.Name, err)
		}
		if at, err := time.Parse(time.RFC3339, tmpl().Annotations[tokensv1.RestartedAtAnnotation]); err == nil && !at.Before(cur.IssuedAt.Time) {
			continue
		}
		patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, tokensv1.RestartedAtAnnotation, stamp)
		if err := r.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("restarting %s %s: %w", t.Kind, t.Name, err)
		}
		r.event(s.token, corev1.EventTypeNormal, "RolloutRestarted", "Restart", fmt.Sprintf("Restarted %s %s for token %s", t.Kind, t.Name, cur.TokenID))
		s.log.Info("Restarted a workload for the new token", "kind", t.Kind, "name", t.Name, "tokenID", cur.TokenID)
	}
	if !s.secretWritten {
		return nil
	}
	return r.step(s, stepRestarted)
}

// workload returns an empty object of kind and a func that returns its pod template
// metadata, or nil for a kind the API does not allow.
func workload(kind string) (client.Object, func() *metav1.ObjectMeta) {
	switch kind {
	case "Deployment":
		d := &appsv1.Deployment{}
		return d, func() *metav1.ObjectMeta { return &d.Spec.Template.ObjectMeta }
	case "StatefulSet":
		st := &appsv1.StatefulSet{}
		return st, func() *metav1.ObjectMeta { return &st.Spec.Template.ObjectMeta }
	case "DaemonSet":
		ds := &appsv1.DaemonSet{}
		return ds, func() *metav1.ObjectMeta { return &ds.Spec.Template.ObjectMeta }
	}
	return nil, nil
}
