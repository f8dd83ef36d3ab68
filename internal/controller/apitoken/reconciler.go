// Package apitoken is the APIToken controller: it mints a token into a Secret,
// rotates it before it expires, repairs the Secret when it drifts, and revokes the
// token when the APIToken is revoked or deleted.
//
// The status is the write-ahead log of minting: a new token is listed in the status
// before its Secret is written, so no Secret ever holds a token the validator does not
// know, and a crash between the two writes leaves only a listed token nobody holds.
//
// A new APIToken costs two writes (the status that lists its first token, Ready
// included, then the Secret's create) and one event; a rotation costs two writes
// (the status, then the Secret's apply). docs/reliability.md reasons each write that
// was dropped from those paths against the crash-recovery tests.
package apitoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Finalizer holds an APIToken with deletionPolicy Retain until its tokens are taken
// out of its Secret and the Secret is released from garbage collection (see
// needsFinalizer).
const Finalizer = "apitoken.dev/finalizer"

// Steps of a mint, as passed to the test hook.
const (
	stepMinted        = "minted"
	stepStatusWritten = "statusWritten"
	stepSecretWritten = "secretWritten"
	stepRestarted     = "restarted"
)

// The APIToken controller reads issuers, writes token Secrets (reading past the cache
// to find Secrets it must not overwrite) and restarts the workloads a token names.
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens/finalizers,verbs=update
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=clustertokenissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// Reconciler serves APITokens.
type Reconciler struct {
	// Client reads through the manager's cache, which holds only labelled Secrets.
	Client client.Client
	// APIReader reads past the cache: Secrets the cache cannot see (to refuse
	// overwriting someone else's) and the workloads to restart. Nil means Client.
	APIReader client.Reader
	// Namespace holds the issuers' signing-key Secrets.
	Namespace string
	// Clock is the time of every decision.
	Clock clock.PassiveClock
	// Recorder emits events on APITokens. Nil emits none.
	Recorder events.EventRecorder
	// MaxConcurrentReconciles is how many APITokens are served in parallel.
	MaxConcurrentReconciles int
	// Leading, when set, reports whether this replica certainly still holds the
	// leader lease (leader.Lock.Held). A pass checks it (controller.Fence) before it
	// writes anything and again before each write of a mint, so that a leader that
	// was paused and has not yet noticed that a standby took over does not rotate
	// tokens the new leader is rotating too. Nil: no leader election, always leading.
	Leading func() bool
	// Rotations paces the scheduled rotations of every APIToken this manager
	// serves (see RotationBudget). Nil: no pacing.
	Rotations *RotationBudget

	// tokens finds the APITokens of an issuer in the cache; set up with the manager.
	tokens *controller.TokensByIssuer

	// hook, set by tests, runs after each step of a mint (stepMinted...). An error
	// aborts the pass as a crash would: nothing more is written, not even the
	// deferred status patch.
	hook func(step string) error
}

// scope is what one pass learns, step by step.
type scope struct {
	// token is the APIToken; the pass edits its status in place. Set by Reconcile.
	token *tokensv1.APIToken
	// written is the object as last read or written; the status patch sends the
	// difference. Set by Reconcile, renewed by every write.
	written *tokensv1.APIToken
	// observedBefore is status.observedGeneration when the pass began.
	observedBefore int64
	// now is the time of the pass, in whole seconds like the token times.
	now time.Time
	log logr.Logger

	// issuer, want and keys are set by loadIssuer.
	issuer *tokensv1.ClusterTokenIssuer
	want   wanted
	keys   token.KeySet

	// secretName and secret are set by loadSecret; secret is nil when missing.
	secretName string
	secret     *corev1.Secret

	// action is the reason of what ensureToken did (Minted, Rotated, SecretRepaired),
	// "" when the Secret was already right. secretWritten says the Secret got a new
	// token. expired says the current token ran out and rotation is disabled.
	// budgetWait, when set, is how long a due rotation waits for the rotation budget.
	action        string
	secretWritten bool
	expired       bool
	budgetWait    time.Duration
	// warned is set once the short-grace warning event went out.
	warned bool

	// aborted is set when the test hook stopped the pass; gone once the finalizer
	// is removed. Either way nothing more is written.
	aborted bool
	gone    bool
}

// errStaleView stops a pass that read an APIToken older than its Secret: the cache
// has not yet seen the status write of the pass that wrote the Secret.
var errStaleView = errors.New("the cached APIToken is older than its Secret")

// staleViewRetry is how soon a pass stopped by errStaleView runs again: the cache
// is usually milliseconds behind.
const staleViewRetry = 250 * time.Millisecond

// abortError marks an abort by the test hook.
type abortError struct{ step string }

func (e *abortError) Error() string { return "aborted after step " + e.step }

// step runs the test hook after a step of a mint.
func (r *Reconciler) step(s *scope, name string) error {
	if r.hook == nil {
		return nil
	}
	if err := r.hook(name); err != nil {
		s.aborted = true
		return &abortError{step: name}
	}
	return nil
}

// Reconcile serves one APIToken: revoke it, or make sure its Secret holds a valid
// token listed in its status, and come back when the next rotation is due.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	tok := &tokensv1.APIToken{}
	if err := r.Client.Get(ctx, req.NamespacedName, tok); err != nil {
		if apierrors.IsNotFound(err) {
			r.Rotations.forget(req.NamespacedName)
			if forgetMetrics(req.Namespace, req.Name) {
				// Without a finalizer there is nothing to release: the validator refused
				// its tokens the moment it saw the deletion, and garbage collection takes
				// the Secret it owned.
				logging.Audit(log.FromContext(ctx)).Info("APIToken deleted; its tokens are no longer accepted")
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	s := &scope{
		token:          tok,
		written:        tok.DeepCopy(),
		observedBefore: tok.Status.ObservedGeneration,
		now:            r.Clock.Now().Truncate(time.Second),
		log:            log.FromContext(ctx),
	}
	defer func() {
		if s.aborted || s.gone {
			return
		}
		if errors.Is(retErr, errStaleView) {
			// Nothing was written; come back once the cache caught up.
			result, retErr = ctrl.Result{RequeueAfter: staleViewRetry}, nil
			return
		}
		if res, fenced := controller.Fenced(ctx, retErr); fenced {
			result, retErr = res, nil
			return
		}
		retErr = r.finish(ctx, s, retErr)
		if retErr != nil {
			// An error is retried with backoff; a RequeueAfter beside it is ignored.
			result = ctrl.Result{}
		}
	}()

	if err := controller.Fence(r.Leading); err != nil {
		return ctrl.Result{}, err
	}
	if !tok.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, s)
	}
	if err := r.addFinalizer(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if tok.Spec.Revoked {
		return ctrl.Result{}, r.revoke(ctx, s)
	}
	for _, step := range []func(context.Context, *scope) error{r.loadIssuer, r.loadSecret, r.ensureToken, r.restartTargets} {
		if err := step(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	res := r.report(s)
	if s.budgetWait > 0 && (res.RequeueAfter == 0 || s.budgetWait < res.RequeueAfter) {
		res.RequeueAfter = s.budgetWait
	}
	return res, nil
}

// finish records the outcome of a pass: an unexpected error turns Ready False (a
// stall has set its conditions already), then the status is patched if it changed.
func (r *Reconciler) finish(ctx context.Context, s *scope, err error) error {
	st := &s.token.Status
	switch {
	case err == nil:
	case apierrors.IsConflict(err):
		// Someone wrote the APIToken since it was read; the retry starts from their
		// write. Patching now would fail the same way.
		return err
	case errors.Is(err, reconcile.TerminalError(nil)):
		// A stall is this generation's final answer: observing it lets kstatus (Flux,
		// Argo CD) report the APIToken as failed instead of in progress forever.
		st.ObservedGeneration = s.token.Generation
	default:
		st.ObservedGeneration = s.observedBefore
		s.setCondition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonProgressing, err.Error())
	}
	if werr := r.writeStatus(ctx, s); werr != nil {
		err = errors.Join(err, werr)
	}
	recordMetrics(s.token)
	return err
}

// writeStatus patches the status if it changed since it was last written
// (controller.PatchStatus: only the changed fields, under the optimistic lock).
func (r *Reconciler) writeStatus(ctx context.Context, s *scope) error {
	if err := controller.PatchStatus(ctx, r.Client, s.written, s.token); err != nil {
		return fmt.Errorf("writing the status: %w", err)
	}
	s.written = s.token.DeepCopy()
	return nil
}

// needsFinalizer says whether tok's deletion must wait for the controller. Only
// deletionPolicy Retain needs it: the Secret must lose its token and its owner
// reference before the APIToken goes, or garbage collection deletes it. With Delete,
// the deletion itself does all that must be done: the validator refuses every token
// of an APIToken the moment it is deleted (deletionTimestamp set, or gone from its
// watch), and the Secret, owned by the APIToken with blockOwnerDeletion, goes with
// it. Leaving the finalizer off saves a write, and an admission call, per APIToken.
// A finalizer added by an older version stays and is served as before (finalize).
func needsFinalizer(tok *tokensv1.APIToken) bool {
	return tok.Spec.Secret != nil && tok.Spec.Secret.DeletionPolicy == tokensv1.DeletionRetain
}

// addFinalizer adds the finalizer an APIToken needs before any token exists, so that
// none can outlive its APIToken in a retained Secret.
func (r *Reconciler) addFinalizer(ctx context.Context, s *scope) error {
	if !needsFinalizer(s.token) || !controllerutil.AddFinalizer(s.token, Finalizer) {
		return nil
	}
	if err := controller.PatchMetadata(ctx, r.Client, s.written, s.token); err != nil {
		return fmt.Errorf("adding the finalizer: %w", err)
	}
	s.written = s.token.DeepCopy()
	return nil
}

// apiReader reads past the cache.
func (r *Reconciler) apiReader() client.Reader { return controller.Reader(r.APIReader, r.Client) }

// setCondition sets a condition of the APIToken at the time of the pass.
func (s *scope) setCondition(typ string, status metav1.ConditionStatus, reason, msg string) {
	controller.SetCondition(s.token, &s.token.Status.Conditions, s.now, typ, status, reason, msg)
}

// stall reports a spec that cannot be served as written: Ready=False and
// Stalled=True with reason and msg, and a warning event. The terminal error stops
// retries until the APIToken or its issuer changes.
func (r *Reconciler) stall(s *scope, reason, msg string) error {
	s.setCondition(tokensv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	s.setCondition(tokensv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	r.event(s.token, corev1.EventTypeWarning, reason, "Reconcile", msg)
	s.log.Info("Cannot serve the APIToken", "reason", reason, "message", msg)
	return reconcile.TerminalError(errors.New(msg))
}

// event emits an event on tok. note must hold no token material.
func (r *Reconciler) event(tok *tokensv1.APIToken, typ, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tok, nil, typ, reason, action, "%s", note)
	}
}

// secretName is the name of the token Secret.
func secretName(tok *tokensv1.APIToken) string {
	if tok.Spec.Secret != nil && tok.Spec.Secret.Name != "" {
		return tok.Spec.Secret.Name
	}
	return tok.Name
}
