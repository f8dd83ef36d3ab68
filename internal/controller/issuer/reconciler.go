// Package issuer is the ClusterTokenIssuer controller: it keeps a current signing key
// for each issuer, rotates it every keyRotationInterval (or on request) to a next key
// it published publishBefore ahead, so that verifiers holding a cached JWKS know a key
// before they meet its tokens, keeps retired public keys published until no token
// they signed can still be valid, withdraws every key at once when they are
// reported compromised, and publishes the public keys as the issuer's JWKS. The
// private keys live in one Secret per issuer in the operator's namespace (see package
// keystore); the status holds public keys only.
//
// Crash safety rests on one order: a key is written to the Secret before it is
// published in the status, so no published key lacks its private part. A key found in
// the Secret but not in the status (a crash between the two writes) is adopted by the
// next pass instead of generating yet another one.
package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Defaults for specs written before the API defaulted them.
const (
	defaultAlgorithm   = tokensv1.AlgorithmES256
	defaultKeyRotation = 2160 * time.Hour
)

// The issuer controller writes the issuers' status and their key Secrets, and sets an
// owner reference with blockOwnerDeletion on them (which needs issuers/finalizers).
// It reads APITokens to count those still to re-mint after a compromised rotation.
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=clustertokenissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=clustertokenissuers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=clustertokenissuers/finalizers,verbs=update
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler reconciles ClusterTokenIssuers: signing keys, their rotation and the JWKS.
type Reconciler struct {
	// Client writes the key Secrets and the issuers' status.
	Client client.Client
	// APIReader reads the issuer and its key Secret at the start of each pass, straight
	// from the API server: a cache that has seen a key in the status but not yet in the
	// Secret would make a freshly written key look lost. Optional: SetupWithManager sets
	// the manager's API reader, and without one Client is used.
	APIReader client.Reader
	// Namespace is where the key Secrets live, the operator's namespace.
	Namespace string
	// Clock tells the time of a pass; tests pass a fake one.
	Clock clock.PassiveClock
	// Recorder emits events on the issuers.
	Recorder recorder.EventRecorder
	// Leading, when set, reports whether this replica certainly still holds the
	// leader lease (leader.Lock.Held). A pass writes neither the key Secret nor the
	// status unless it does (controller.Fence): a leader that was paused and resumed after a standby
	// took over would otherwise overwrite the new leader's keys. Nil: always leading.
	Leading func() bool

	// tokens finds the APITokens of an issuer in the manager's cache, one at a time;
	// set up with the manager. Nil (a reconciler driven without a manager): they are
	// listed through Client.
	tokens *controller.TokensByIssuer
}

// SetupWithManager registers the controller. It watches ClusterTokenIssuers (spec and
// annotation changes only, the latter for rotate-key requests: the controller's own
// status writes must not trigger it) and the key Secrets, so a deleted or edited
// Secret is repaired at once. The manager's cache holds only Secrets with the
// managed-by label (controller.CacheOptions).
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
		Named("clustertokenissuer").
		For(&tokensv1.ClusterTokenIssuer{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.issuerOfSecret)).
		Complete(r)
}

// issuerOfSecret maps a key Secret to its issuer; other Secrets map to nothing.
func (r *Reconciler) issuerOfSecret(_ context.Context, o client.Object) []reconcile.Request {
	label, ok := o.GetLabels()[keystore.IssuerLabel]
	if !ok || o.GetNamespace() != r.Namespace || o.GetLabels()[tokensv1.ManagedByLabel] != tokensv1.ManagedByValue {
		return nil
	}
	// The label holds a shortened name for long names; the owner reference the full one.
	name := label
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "ClusterTokenIssuer" && ref.APIVersion == tokensv1.GroupVersion.String() {
			name = ref.Name
		}
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
}

// scope is the state one pass builds up. Each group of fields says which step sets it.
type scope struct {
	// issuer is the object as read at the start of the pass; steps edit its status,
	// which the deferred patch writes.
	issuer *tokensv1.ClusterTokenIssuer
	// now is the time of the pass in whole seconds, the precision metav1.Time keeps, so
	// times computed in a pass compare equal to the same times read back.
	now time.Time

	// Set by checkSpec.
	algorithm     tokensv1.SigningAlgorithm
	interval      time.Duration
	maxLifetime   time.Duration
	publishBefore time.Duration
	// rotateRequest is the apitoken.dev/rotate-key value this pass serves, "" if
	// none waits; compromised says the request treats every key as leaked.
	rotateRequest string
	compromised   bool

	// Set by loadKeys.
	// secret is the key Secret, nil when it does not exist.
	secret *corev1.Secret
	// held are the private keys of the keys the status lists that the Secret holds
	// intact, by key ID; planKeys adds the new key and removes the pruned ones.
	held map[string]*token.SigningKey
	// pem are the Secret's PEM entries of held and orphans, by key ID; planKeys adds
	// the one of a generated key.
	pem map[string][]byte
	// lost are the keys the status lists, not yet expired, whose private key is
	// missing or corrupt.
	lost []string
	// orphans are intact keys in the Secret that the status does not list, sorted by
	// key ID: written by a pass that crashed before publishing them.
	orphans []*token.SigningKey

	// Set by planKeys.
	// plan is the key set of this pass (see keyPlan).
	plan keyPlan
	// adopted is true when the new key is an orphan rather than a generated one.
	adopted bool

	// Set by trackRemint: how many APITokens still hold a JWT signed with the keys
	// of status.lastWithdrawal; -1 when no re-minting is under way.
	remaining int32
}

// Reconcile runs one pass over an issuer: check the spec, load the private keys, plan
// the key set (withdraw or drop keys, publish the next key, rotate, prune), write the
// Secret, count the tokens still to re-mint after a withdrawal, then publish.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	issuer := &tokensv1.ClusterTokenIssuer{}
	if err := r.reader().Get(ctx, req.NamespacedName, issuer); err != nil {
		if apierrors.IsNotFound(err) {
			keysPublished.DeleteLabelValues(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !issuer.DeletionTimestamp.IsZero() {
		// The key Secret goes with the issuer, through its owner reference.
		return ctrl.Result{}, nil
	}

	s := &scope{issuer: issuer, now: r.Clock.Now().UTC().Truncate(time.Second)}
	before := issuer.DeepCopy()
	defer func() {
		if res, fenced := controller.Fenced(ctx, retErr); fenced {
			// Paused, maybe mid-pass: write nothing more, not even the status.
			result, retErr = res, nil
			return
		}
		if err := r.patchStatus(ctx, before, issuer); err != nil {
			// The verdict of this pass is not recorded, so retry even after a terminal error.
			if retErr == nil || errors.Is(retErr, reconcile.TerminalError(nil)) {
				retErr = err
			} else {
				retErr = errors.Join(retErr, err)
			}
			result = ctrl.Result{}
		}
	}()

	if err := controller.Fence(r.Leading); err != nil {
		return ctrl.Result{}, err
	}
	for _, step := range []func(context.Context, *scope) (ctrl.Result, error){
		r.checkSpec,
		r.loadKeys,
		r.planKeys,
		r.writeSecret,
		r.trackRemint,
		r.publish,
	} {
		if err := controller.Fence(r.Leading); err != nil {
			return ctrl.Result{}, err
		}
		res, err := step(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		result = res
	}
	return result, controller.Fence(r.Leading)
}

// reader reads past the cache.
func (r *Reconciler) reader() client.Reader { return controller.Reader(r.APIReader, r.Client) }

// checkSpec resolves the issuer's policy. A spec the policy refuses (a role inclusion
// cycle, which CEL cannot see, or an unknown role in includes or maxRole) sets
// Stalled=True and Ready=False with reason InvalidSpec and ends the pass with a
// terminal error: nothing is retried until the spec changes, and the keys already
// published stay published. Otherwise it removes Stalled.
func (r *Reconciler) checkSpec(_ context.Context, s *scope) (ctrl.Result, error) {
	p, err := policy.ForIssuer(&s.issuer.Spec)
	if err != nil {
		msg := "The spec cannot be served: " + err.Error()
		s.setCondition(tokensv1.ConditionStalled, metav1.ConditionTrue, tokensv1.ReasonInvalidSpec, msg)
		s.setCondition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonInvalidSpec, msg)
		// The pass reached its verdict on this generation; kstatus needs
		// observedGeneration to report the stall rather than "in progress".
		s.issuer.Status.ObservedGeneration = s.issuer.Generation
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("invalid spec of issuer %s: %w", s.issuer.Name, err))
	}
	meta.RemoveStatusCondition(&s.issuer.Status.Conditions, tokensv1.ConditionStalled)

	s.algorithm = s.issuer.Spec.Signing.Algorithm
	if s.algorithm == "" {
		s.algorithm = defaultAlgorithm
	}
	s.interval = s.issuer.Spec.Signing.KeyRotationInterval.Duration
	if s.interval <= 0 {
		s.interval = defaultKeyRotation
	}
	s.maxLifetime = p.MaxLifetime()
	s.publishBefore = s.issuer.Spec.Signing.PublishBeforeOrDefault()
	if v := s.issuer.Annotations[tokensv1.RotateKeyAnnotation]; v != "" && v != s.issuer.Status.LastRotateKeyRequest {
		s.rotateRequest = v
		s.compromised = s.issuer.Annotations[tokensv1.KeyCompromisedAnnotation] == "true"
	}
	return ctrl.Result{}, nil
}

// setCondition sets a condition of the issuer with the pass's time and generation.
func (s *scope) setCondition(typ string, status metav1.ConditionStatus, reason, msg string) {
	controller.SetCondition(s.issuer, &s.issuer.Status.Conditions, s.now, typ, status, reason, msg)
}

// patchStatus writes the status if the pass changed it, with optimistic locking
// (controller.PatchStatus): a pass that worked from an outdated issuer fails and is
// retried.
func (r *Reconciler) patchStatus(ctx context.Context, before, issuer *tokensv1.ClusterTokenIssuer) error {
	if err := controller.PatchStatus(ctx, r.Client, before, issuer); err != nil {
		return fmt.Errorf("writing status of issuer %s: %w", issuer.Name, err)
	}
	return nil
}
