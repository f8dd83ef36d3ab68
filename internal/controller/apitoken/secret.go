package apitoken

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	d := sideData(tok)
	d[tokensv1.SecretKeyToken] = []byte(value)
	return d
}

// sideData is what a token Secret holds for tok besides the token itself.
func sideData(tok *tokensv1.IssuedToken) map[string][]byte {
	d := map[string][]byte{
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

// secretApply is the token Secret of owner as the operator writes it.
func secretApply(owner *tokensv1.APIToken, name, value string, tok *tokensv1.IssuedToken) *corev1ac.SecretApplyConfiguration {
	ac := corev1ac.Secret(name, owner.Namespace).
		WithType(corev1.SecretType(tokensv1.TokenSecretType))
	if t := owner.Spec.Secret; t != nil && t.Template != nil {
		ac.WithLabels(t.Template.Labels).WithAnnotations(t.Template.Annotations)
	}
	return ac.WithLabels(map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}).
		WithOwnerReferences(controller.OwnerReference(owner, "APIToken")).
		WithData(secretData(value, tok))
}

// errForeignSecret stops the write of a token Secret over someone else's Secret.
var errForeignSecret = errors.New("the Secret belongs to someone else")

// writeSecret writes the token Secret of the pass. One the pass's cache does not show
// is created, not applied: a create cannot land on a Secret that exists, so the
// common case, a first token, needs no read to find out whether someone else's
// Secret has the name (the cache holds only the operator's Secrets). Only when the
// create finds one is it read (createSecret). A Secret the cache shows is ours, and
// is applied (applySecret).
func (r *Reconciler) writeSecret(ctx context.Context, s *scope, value string, tok *tokensv1.IssuedToken) error {
	ac := secretApply(s.token, s.secretName, value, tok)
	if s.secret == nil {
		return r.createSecret(ctx, s, ac)
	}
	if s.token.Generation != s.observedBefore && dropsKeys(s.secret, ac) {
		// A Secret made by create has its fields owned by the create, which a later
		// apply does not take away: labels and annotations dropped from the template
		// would stay. Serving a spec change that drops some, make them the apply's
		// first (a read and a write, on this path only).
		if err := r.adoptCreatedFields(ctx, s); err != nil {
			return err
		}
	}
	return r.applySecret(ctx, ac)
}

// createSecret creates the token Secret. When a Secret of that name exists it is read:
// this APIToken's (a cache behind the API server) is applied; one owned by a deleted
// APIToken of the same name (its tokens are refused: that APIToken is gone) is
// replaced; anyone else's is left alone and errForeignSecret returned.
func (r *Reconciler) createSecret(ctx context.Context, s *scope, ac *corev1ac.SecretApplyConfiguration) error {
	sec, err := secretToCreate(ac)
	if err != nil {
		return err
	}
	err = r.Client.Create(ctx, sec, client.FieldOwner(controller.FieldManager))
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("writing Secret %s: %w", s.secretName, err)
		}
		return nil
	}
	live := &corev1.Secret{}
	if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(sec), live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", s.secretName, err)
	}
	switch {
	case ownedBy(live, s.token):
		s.secret = live
		return r.applySecret(ctx, ac)
	case ownedByNamesake(live, s.token):
		uid, rv := live.UID, live.ResourceVersion
		if err := r.Client.Delete(ctx, live, client.Preconditions{UID: &uid, ResourceVersion: &rv}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Secret %s of a deleted APIToken: %w", s.secretName, err)
		}
		if err := r.Client.Create(ctx, sec, client.FieldOwner(controller.FieldManager)); err != nil {
			return fmt.Errorf("writing Secret %s: %w", s.secretName, err)
		}
		return nil
	default:
		return errForeignSecret
	}
}

// applySecret writes a token Secret by server-side apply under the operator's field
// manager, taking back any field someone else edited.
func (r *Reconciler) applySecret(ctx context.Context, ac *corev1ac.SecretApplyConfiguration) error {
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(controller.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing Secret %s: %w", *ac.Name, err)
	}
	return nil
}

// adoptCreatedFields reads the pass's Secret past the cache (which drops managed
// fields) and hands what its create owns to the operator's apply.
func (r *Reconciler) adoptCreatedFields(ctx context.Context, s *scope) error {
	live := &corev1.Secret{}
	if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(s.secret), live); err != nil {
		return fmt.Errorf("reading Secret %s: %w", s.secretName, err)
	}
	if err := controller.AdoptCreatedFields(ctx, r.Client, live); err != nil {
		return fmt.Errorf("taking over the fields of Secret %s: %w", s.secretName, err)
	}
	return nil
}

// secretToCreate is the Secret an apply configuration describes, to be created.
func secretToCreate(ac *corev1ac.SecretApplyConfiguration) (*corev1.Secret, error) {
	raw, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	sec := &corev1.Secret{}
	if err := json.Unmarshal(raw, sec); err != nil {
		return nil, err
	}
	return sec, nil
}

// dropsKeys reports whether sec has labels or annotations that ac does not set:
// possibly ones an older template set.
func dropsKeys(sec *corev1.Secret, ac *corev1ac.SecretApplyConfiguration) bool {
	for k := range sec.Labels {
		if _, ok := ac.Labels[k]; !ok {
			return true
		}
	}
	for k := range sec.Annotations {
		if _, ok := ac.Annotations[k]; !ok {
			return true
		}
	}
	return false
}

// secretUpToDate reports whether sec, known to hold the token tok (secretHolds),
// holds the rest of what applySecret would write. Keys and labels someone added are
// not looked at: they are not ours.
func secretUpToDate(sec *corev1.Secret, owner *tokensv1.APIToken, tok *tokensv1.IssuedToken) bool {
	for k, v := range sideData(tok) {
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

// ownedByNamesake reports whether sec's controller is an APIToken named like owner
// but another one: an APIToken deleted before owner was created, since two objects of
// a namespace never share a name. Its Secret waits for garbage collection (none runs
// without kube-controller-manager) and holds tokens the validator refuses.
func ownedByNamesake(sec *corev1.Secret, owner *tokensv1.APIToken) bool {
	ref := metav1.GetControllerOfNoCopy(sec)
	return ref != nil && ref.UID != owner.UID && ref.Name == owner.Name && ref.Kind == "APIToken" &&
		ref.APIVersion == tokensv1.GroupVersion.String()
}

// releaseSecret takes the token out of the Secret name: it deletes the Secret, or,
// with deletionPolicy Retain, removes the token keys (and, when the APIToken is being
// deleted, its owner reference, so that garbage collection keeps the Secret). A
// Secret that is not owner's is left alone. It reports whether it changed anything.
//
// The Secret is read past the cache, which keeps a JWT's digest in its place: the
// patch that takes the token out must be computed from the Secret that holds it.
func (r *Reconciler) releaseSecret(ctx context.Context, owner *tokensv1.APIToken, name string, deleting bool) (bool, error) {
	sec, err := r.liveSecret(ctx, owner.Namespace, name)
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

// liveSecret reads a Secret past the cache. Nil means missing.
func (r *Reconciler) liveSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return sec, nil
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
