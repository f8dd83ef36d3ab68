package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// tokenState is what the harness keeps of an APIToken: enough to tell Ready and
// rotated, and to draw the renewal histogram.
type tokenState struct {
	ready      bool
	rotations  int64
	issuedAt   time.Time
	expiresAt  time.Time
	renewal    time.Time
	renewLater time.Duration // renewBefore of the spec, 0: the default
}

// tokenWatch follows the APITokens of a namespace through one watch, so that waiting
// for N of them costs the API server nothing per poll.
type tokenWatch struct {
	mu     sync.Mutex
	tokens map[string]tokenState
	cancel context.CancelFunc
}

func watchTokens(ctx context.Context, cfg *rest.Config, ns string) (*tokenWatch, error) {
	w := &tokenWatch{tokens: map[string]tokenState{}}
	c, err := cache.New(cfg, cache.Options{
		Scheme:            testenv.Scheme,
		DefaultNamespaces: map[string]cache.Config{ns: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, err
	}
	inf, err := c.GetInformer(ctx, &tokensv1.APIToken{})
	if err != nil {
		return nil, err
	}
	put := func(obj any) {
		tok, ok := obj.(*tokensv1.APIToken)
		if !ok {
			return
		}
		st := tokenState{ready: meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1.ConditionReady), rotations: tok.Status.Rotations}
		if cur := tok.Status.Current; cur != nil {
			st.issuedAt, st.expiresAt = cur.IssuedAt.Time, cur.ExpiresAt.Time
		}
		if rt := tok.Status.RenewalTime; rt != nil {
			st.renewal = rt.Time
		}
		if r := tok.Spec.Rotation; r != nil && r.RenewBefore != nil {
			st.renewLater = r.RenewBefore.Duration
		}
		w.mu.Lock()
		w.tokens[tok.Name] = st
		w.mu.Unlock()
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    put,
		UpdateFunc: func(_, obj any) { put(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if o, ok := obj.(client.Object); ok {
				w.mu.Lock()
				delete(w.tokens, o.GetName())
				w.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	go func() { _ = c.Start(cctx) }()
	if !c.WaitForCacheSync(ctx) {
		cancel()
		return nil, fmt.Errorf("the harness's APIToken watch did not sync")
	}
	return w, nil
}

// count returns how many APITokens are Ready with at least rotations rotations.
func (w *tokenWatch) count(rotations int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, t := range w.tokens {
		if t.ready && t.rotations >= rotations {
			n++
		}
	}
	return n
}

// states copies the state of every APIToken.
func (w *tokenWatch) states() []tokenState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]tokenState, 0, len(w.tokens))
	for _, t := range w.tokens {
		out = append(out, t)
	}
	return out
}

// waitFor polls count until it reaches n, for at most timeout, and returns how long
// it took; progress reports on the way, every ten seconds.
func (w *tokenWatch) waitFor(ctx context.Context, n int, rotations int64, timeout time.Duration, what string) (time.Duration, error) {
	start := time.Now()
	last := start
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := w.count(rotations)
		if got >= n {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%s: %d of %d after %s", what, got, n, timeout)
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			logf("    %s: %d of %d after %s", what, got, n, time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-tick.C:
		}
	}
}

func (w *tokenWatch) stop() { w.cancel() }
