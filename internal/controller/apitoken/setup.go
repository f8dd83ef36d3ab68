package apitoken

import (
	"context"
	"slices"
	"time"

	"golang.org/x/time/rate"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
)

// SetupWithManager registers the controller. It watches APITokens for spec changes,
// the two rotation annotations and deletion (never for status changes, so that its
// own status writes start no pass), the Secrets it owns (through the label-filtered
// cache; see secretEvents) and the issuers, whose changes wake the APITokens that
// name them.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	tokens, err := controller.IndexTokensByIssuer(context.Background(), mgr.GetCache())
	if err != nil {
		return err
	}
	r.tokens = tokens
	return ctrl.NewControllerManagedBy(mgr).
		Named("apitoken").
		For(&tokensv1.APIToken{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{},
			annotationChanged(tokensv1.RotateAnnotation, tokensv1.RetirePreviousAnnotation),
			deletionStarted(),
		))).
		Watches(&corev1.Secret{}, secretEvents()).
		Watches(&tokensv1.ClusterTokenIssuer{}, handler.EnqueueRequestsFromMapFunc(r.tokensOfIssuer), builder.WithPredicates(issuerChanged())).
		WithOptions(crcontroller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, RateLimiter: retryLimiter()}).
		Complete(r)
}

// maxRetryDelay caps how long a failed pass waits for its retry. controller-runtime's
// default cap is 16 minutes; a token due for rotation cannot wait that long, and the
// commonest failure is short-lived: after the API server restarts, status writes
// conflict until the informer has caught up (often 20-30 s), and each conflict would
// otherwise double the wait of the next retry.
const maxRetryDelay = 10 * time.Second

// retryLimiter delays the retries of each APIToken exponentially from 5 ms up to
// maxRetryDelay, and all retries together to 10 a second (bursts of 100), as
// controller-runtime's default does: a cluster-wide outage still does not turn into a
// storm of requests.
func retryLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxRetryDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// secretEventDelay is how long after a change to a token Secret the pass of its
// APIToken runs. Nearly every such change is the controller's own Secret write, at the
// end of a pass that left nothing to do; but the APIToken and Secret informers are
// separate streams, and a pass woken at once often reads an APIToken cache that has
// not yet seen the status write made just before the Secret's. Such a pass can only
// read the APIToken past the cache to find out (checkFresh) and come back. Later,
// both caches agree and the pass is quiet. Edits and deletions by others are repaired
// this much later.
const secretEventDelay = 2 * time.Second

// secretEvents wakes the APIToken that controls a changed Secret, secretEventDelay
// later. The Secrets of the initial list wake theirs at once, in the same queue as the
// APITokens of that list, which they join rather than add to.
func secretEvents() handler.EventHandler {
	enqueue := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request], now bool) {
		ref := metav1.GetControllerOfNoCopy(o)
		if ref == nil || ref.Kind != "APIToken" || ref.APIVersion != tokensv1.GroupVersion.String() {
			return
		}
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}
		if now {
			q.Add(req)
		} else {
			q.AddAfter(req, secretEventDelay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.Object, q, e.IsInInitialList)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.ObjectNew, q, false)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.Object, q, false)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(e.Object, q, true)
		},
	}
}

// tokensOfIssuer are the APITokens that name issuer, read off the cache's index
// without copying a single APIToken (controller.TokensByIssuer).
func (r *Reconciler) tokensOfIssuer(ctx context.Context, issuer client.Object) []reconcile.Request {
	keys, err := r.tokens.Keys(ctx, issuer.GetName())
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list the APITokens of an issuer", "issuer", issuer.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, len(keys))
	for i, k := range keys {
		reqs[i] = reconcile.Request{NamespacedName: k}
	}
	return reqs
}

// annotationChanged passes updates that change one of keys.
func annotationChanged(keys ...string) predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		for _, k := range keys {
			if e.ObjectOld.GetAnnotations()[k] != e.ObjectNew.GetAnnotations()[k] {
				return true
			}
		}
		return false
	}}
}

// deletionStarted passes the update that sets deletionTimestamp.
func deletionStarted() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
	}}
}

// issuerChanged passes issuer updates that can change what its APITokens may mint or
// whether their tokens still verify: the spec, Ready, the current key, the set of
// published keys. Other status writes wake no APIToken.
func issuerChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*tokensv1.ClusterTokenIssuer)
		n, ok2 := e.ObjectNew.(*tokensv1.ClusterTokenIssuer)
		if !ok1 || !ok2 {
			return true
		}
		return o.Generation != n.Generation ||
			meta.IsStatusConditionTrue(o.Status.Conditions, tokensv1.ConditionReady) != meta.IsStatusConditionTrue(n.Status.Conditions, tokensv1.ConditionReady) ||
			o.Status.CurrentKeyID != n.Status.CurrentKeyID ||
			!slices.Equal(kids(o), kids(n))
	}}
}

func kids(iss *tokensv1.ClusterTokenIssuer) []string {
	if iss.Status.JWKS == nil {
		return nil
	}
	out := make([]string, 0, len(iss.Status.JWKS.Keys))
	for _, k := range iss.Status.JWKS.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}
