package controller

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/util/csaupgrade"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// FieldManager owns, through server-side apply, the fields the operator writes on
// the Secrets it keeps: token Secrets and signing-key Secrets alike, so that an apply
// takes back exactly what the operator wrote and leaves other writers' fields alone.
const FieldManager = "apitoken-operator"

// AdoptCreatedFields hands the fields that FieldManager owns in live through a create
// or an update (managed-fields operation Update) to FieldManager's apply. Server-side
// apply removes only fields the applier owns and no longer applies: a field set by a
// create stays, however often the same field manager applies without it. live must be
// read past the cache, which drops managed fields. Nothing is written when there is
// nothing to hand over; the write carries live's resourceVersion, so it conflicts
// rather than overwrite the ownership of a write it did not see.
func AdoptCreatedFields(ctx context.Context, c client.Client, live client.Object) error {
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(live, sets.New(FieldManager), FieldManager)
	if err != nil || patch == nil {
		return err
	}
	return c.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch))
}

// OwnerReference makes owner, of kind, the controller of the object it is applied to,
// with blockOwnerDeletion: the object is garbage-collected with its owner (a
// namespaced Secret may be owned by a cluster-scoped issuer), and the reference is
// how a controller tells its own Secret from someone else's of the same name. kind is
// passed because typed objects read through a client carry no kind.
func OwnerReference(owner client.Object, kind string) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(tokensv1.GroupVersion.String()).
		WithKind(kind).
		WithName(owner.GetName()).
		WithUID(owner.GetUID()).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// Reader is apiReader, or c when there is none. A reconciler reads past the cache
// what the cache cannot see or may show stale; tests build reconcilers over an
// uncached client and leave apiReader nil.
func Reader(apiReader client.Reader, c client.Client) client.Reader {
	if apiReader != nil {
		return apiReader
	}
	return c
}

// PatchStatus writes obj's status if the pass changed obj since before, as a merge
// patch that carries before's resourceVersion. The patch holds only what the pass
// changed, so fields other writers own (the validator's lastUsedTime) survive it; the
// resourceVersion makes a patch computed from a stale read fail with a conflict, to
// be retried from a fresh read, instead of dropping what a newer pass listed (a
// previous token, a published key). obj is updated from the API server's answer.
func PatchStatus(ctx context.Context, c client.Client, before, obj client.Object) error {
	if equality.Semantic.DeepEqual(before, obj) {
		return nil
	}
	return c.Status().Patch(ctx, obj, optimisticMerge(before))
}

// PatchMetadata writes what the pass changed in obj's metadata since before (its
// finalizers), under the same lock as PatchStatus.
func PatchMetadata(ctx context.Context, c client.Client, before, obj client.Object) error {
	return c.Patch(ctx, obj, optimisticMerge(before))
}

func optimisticMerge(before client.Object) client.Patch {
	return client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
}

// SetCondition sets the condition typ of obj in conds, stamped with obj's generation,
// the one the pass served, and with now, the time of the pass by the reconciler's
// clock, so that tests move time with a fake clock.
func SetCondition(obj metav1.Object, conds *[]metav1.Condition, now time.Time, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            msg,
		ObservedGeneration: obj.GetGeneration(),
		LastTransitionTime: metav1.NewTime(now),
	})
}
