package apitoken

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestRetryDelayIsCapped: an APIToken whose passes keep failing (conflicts while the
// informer catches up after an API server restart) is retried at least every
// maxRetryDelay, not after controller-runtime's 16-minute cap.
func TestRetryDelayIsCapped(t *testing.T) {
	l := retryLimiter()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "ci"}}
	last := l.When(req)
	longest := last
	for range 41 {
		last = l.When(req)
		longest = max(longest, last)
	}
	if longest > maxRetryDelay {
		t.Errorf("after 42 failures the retry waits %s, more than %s", longest, maxRetryDelay)
	}
	if last < maxRetryDelay/2 {
		t.Errorf("after 42 failures the retry waits only %s: the backoff does not grow", last)
	}
	l.Forget(req)
	if d := l.When(req); d > maxRetryDelay/100 {
		t.Errorf("after a success the first retry waits %s", d)
	}
}
