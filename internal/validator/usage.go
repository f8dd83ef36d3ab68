package validator

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// The validator reads APITokens and ClusterTokenIssuers and writes only
// status.lastUsedTime. It has no access to Secrets: it never sees a token or a key.
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens/status,verbs=patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=clustertokenissuers,verbs=get;list;watch

// DefaultUsageInterval is how often lastUsedTime is reported, at most, per APIToken.
const DefaultUsageInterval = time.Minute

// UsageReporter reports when APITokens were last used, as status.lastUsedTime, at most
// once per interval per APIToken: requests only mark their APIToken as used, and a
// background loop writes the marks in one batch per interval.
type UsageReporter struct {
	client   client.Client
	clock    clock.WithTicker
	interval time.Duration
	log      logr.Logger

	mu      sync.Mutex
	pending map[types.NamespacedName]use
	// patched is when this replica last wrote each APIToken's lastUsedTime; flushMu
	// guards it.
	flushMu sync.Mutex
	patched map[types.NamespacedName]time.Time
}

type use struct {
	uid types.UID
	at  time.Time
	set *index.TokenSet
}

// NewUsageReporter returns a reporter that writes through c every interval (default
// DefaultUsageInterval).
func NewUsageReporter(c client.Client, clk clock.WithTicker, interval time.Duration, log logr.Logger) *UsageReporter {
	if interval <= 0 {
		interval = DefaultUsageInterval
	}
	return &UsageReporter{
		client: c, clock: clk, interval: interval, log: log,
		pending: map[types.NamespacedName]use{},
		patched: map[types.NamespacedName]time.Time{},
	}
}

// Used marks the APIToken of id as used at now. It costs an atomic load unless the
// APIToken was not marked for a whole interval.
func (u *UsageReporter) Used(id *Identity, now time.Time) {
	ts := id.rec.Owner
	if !ts.MarkUsed(now, u.interval) {
		return
	}
	u.mu.Lock()
	u.pending[ts.Key()] = use{uid: ts.UID, at: now, set: ts}
	u.mu.Unlock()
}

// Start writes the marks every interval until ctx is done.
func (u *UsageReporter) Start(ctx context.Context) error {
	t := u.clock.NewTicker(u.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			u.Flush(ctx)
		}
	}
}

// Flush writes the pending marks now, one patch per APIToken, skipping APITokens
// whose lastUsedTime this replica or another one wrote less than an interval ago.
// A patch tests the APIToken's UID, so a mark never lands on an APIToken that was
// deleted and created again under the same name (the API server answers Invalid,
// and the mark is dropped).
func (u *UsageReporter) Flush(ctx context.Context) {
	// The ticker's Flush and the last one at shutdown may overlap; patched is theirs.
	u.flushMu.Lock()
	defer u.flushMu.Unlock()
	u.mu.Lock()
	batch := u.pending
	u.pending = map[types.NamespacedName]use{}
	u.mu.Unlock()

	now := u.clock.Now()
	for key, last := range u.patched {
		if now.Sub(last) >= u.interval {
			delete(u.patched, key)
		}
	}
	for key, p := range batch {
		if ctx.Err() != nil {
			return
		}
		if last, ok := u.patched[key]; ok && now.Sub(last) < u.interval {
			u.requeue(key, p)
			continue
		}
		if lu := p.set.LastUsed(); !lu.IsZero() && p.at.Sub(lu) < u.interval {
			continue // another replica reported it recently enough
		}
		if err := u.patch(ctx, key, p); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && !apierrors.IsInvalid(err) {
				u.log.Error(err, "Reporting token usage failed", "apiToken", key)
				u.requeue(key, p)
			}
			continue
		}
		u.patched[key] = now
	}
}

func (u *UsageReporter) requeue(key types.NamespacedName, p use) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if q, ok := u.pending[key]; !ok || q.at.Before(p.at) {
		u.pending[key] = p
	}
}

func (u *UsageReporter) patch(ctx context.Context, key types.NamespacedName, p use) error {
	at := metav1.NewTime(p.at)
	// A JSON patch rather than a merge patch, for its test operation: the status
	// subresource ignores metadata in a merge patch, so only a test can make the
	// write conditional on the UID.
	body, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": p.uid},
		{"op": "add", "path": "/status/lastUsedTime", "value": &at},
	})
	if err != nil {
		return err
	}
	obj := &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	return u.client.Status().Patch(ctx, obj, client.RawPatch(types.JSONPatchType, body))
}
