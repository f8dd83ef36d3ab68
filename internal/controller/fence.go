package controller

import (
	"context"
	"errors"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// ErrNotLeader stops a pass of a replica that may have lost the leader lease. A leader
// that was paused (a long garbage collection, a frozen VM) and has not yet noticed
// that a standby took over would otherwise write what the new leader writes too:
// rotate the same token twice, or overwrite the new leader's signing keys.
var ErrNotLeader = errors.New("this replica may no longer hold the leader lease")

// NotLeaderRetry is how soon a pass stopped by the fence runs again, by which time the
// replica has either renewed its lease or stepped down and exited.
const NotLeaderRetry = time.Second

// Fence returns ErrNotLeader unless this replica certainly holds the leader lease. A
// pass asks before each of its writes. leading is the reconciler's Leading
// (leader.Lock.Held); nil means no leader election, always leading.
func Fence(leading func() bool) error {
	if leading != nil && !leading() {
		return ErrNotLeader
	}
	return nil
}

// Fenced reports whether err is the fence's, and then the result of the pass: retry
// in NotLeaderRetry, without an error. Nothing was written past the fence, and the
// pass must record nothing either, not even its status.
func Fenced(ctx context.Context, err error) (ctrl.Result, bool) {
	if !errors.Is(err, ErrNotLeader) {
		return ctrl.Result{}, false
	}
	log.FromContext(ctx).V(1).Info("Not writing: the leader lease may have passed to another replica")
	return ctrl.Result{RequeueAfter: NotLeaderRetry}, true
}
