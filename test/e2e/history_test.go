package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// issued is what the history learnt of one token ID from the APIToken statuses.
type issued struct {
	id    string
	owner string // the APIToken's name
	// firstListed is when a status listing it (as current or previous) was first
	// seen: the earliest the validator can be expected to know the token.
	firstListed time.Time
	expiresAt   time.Time
	// retireAt is the end of its grace period, zero while it is current;
	// retiredSeen is when a status setting it was first seen.
	retireAt    time.Time
	retiredSeen time.Time
	// gone is when it was first seen missing from a status that had listed it (or the
	// APIToken deleted); zero while listed.
	gone time.Time
	// inSecret is when the token Secret was first seen holding it; zero if never.
	inSecret time.Time
}

// notAfter is the instant from which the validator must refuse the token: its
// expiry or the end of its grace period, whichever comes first.
func (i *issued) notAfter() time.Time {
	if !i.retireAt.IsZero() && i.retireAt.Before(i.expiresAt) {
		return i.retireAt
	}
	return i.expiresAt
}

// mint is a change of an APIToken's status.current, as the watch saw it.
type mint struct {
	owner    string
	previous string // "" for the first token
	id       string
	seen     time.Time
	issuedAt time.Time
	// dueAt is the renewalTime the previous token had: when this mint was scheduled.
	dueAt time.Time
}

// history records every state of the APITokens of a namespace and of their Secrets,
// as watches deliver them: which tokens each status listed and when, the mints, and
// how many writes each took.
type history struct {
	mu      sync.Mutex
	tokens  map[string]*issued
	last    map[string]*tokensv1.APIToken
	mints   []mint
	problem []string

	// The write counts cover the window from count(true) to count(false).
	counting    bool
	tokenWrites int // APIToken writes other than lastUsedTime reports
	usageWrites int // writes that changed only status.lastUsedTime (the validator's)
	secretWrite int // token Secret creations and updates
	mintsInWin  int
}

func newHistory() *history {
	return &history{tokens: map[string]*issued{}, last: map[string]*tokensv1.APIToken{}}
}

// record watches the APITokens and token Secrets of ns until ctx is done.
func (h *history) record(ctx context.Context, ns string) {
	c, err := client.NewWithWatch(cp.Config, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		h.fail("watch client: %v", err)
		return
	}
	go watchLoop(ctx, c, &tokensv1.APITokenList{}, ns, h.observeToken)
	go watchLoop(ctx, c, &corev1.SecretList{}, ns, h.observeSecret)
}

// count starts or stops counting writes.
func (h *history) count(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counting = on
}

func (h *history) fail(format string, args ...any) {
	h.problem = append(h.problem, fmt.Sprintf(format, args...))
}

// observeToken takes in one state of an APIToken, seen at `at`.
func (h *history) observeToken(typ watch.EventType, obj client.Object, at time.Time) {
	tok := obj.(*tokensv1.APIToken)
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.last[tok.Name]
	if prev != nil && prev.ResourceVersion == tok.ResourceVersion {
		return // a relist repeats what was seen
	}
	if typ == watch.Deleted {
		for _, it := range listedTokens(prev) {
			h.leave(it.TokenID, at)
		}
		delete(h.last, tok.Name)
		return
	}
	if h.counting && prev != nil {
		if onlyUsage(prev, tok) {
			h.usageWrites++
		} else {
			h.tokenWrites++
		}
	}

	listed := map[string]bool{}
	for _, it := range listedTokens(tok) {
		listed[it.TokenID] = true
		rec := h.tokens[it.TokenID]
		if rec == nil {
			rec = &issued{id: it.TokenID}
			h.tokens[it.TokenID] = rec
		}
		if rec.firstListed.IsZero() {
			rec.firstListed, rec.owner = at, tok.Name
		}
		if rec.owner != tok.Name {
			h.fail("token %s is listed by APITokens %s and %s", it.TokenID, rec.owner, tok.Name)
		}
		rec.expiresAt = it.ExpiresAt.Time
		if it.RetireAt != nil {
			rec.retireAt = it.RetireAt.Time
			if rec.retiredSeen.IsZero() {
				rec.retiredSeen = at
			}
		}
	}
	for _, it := range listedTokens(prev) {
		if !listed[it.TokenID] {
			h.leave(it.TokenID, at)
		}
	}

	var before, now *tokensv1.IssuedToken
	if prev != nil {
		before = prev.Status.Current
	}
	now = tok.Status.Current
	switch {
	case now == nil || (before != nil && before.TokenID == now.TokenID):
		if prev != nil && prev.Status.Rotations != tok.Status.Rotations && now != nil {
			h.fail("%s: status.rotations went from %d to %d with the same current token %s", tok.Name, prev.Status.Rotations, tok.Status.Rotations, now.TokenID)
		}
	case before == nil:
		h.mints = append(h.mints, mint{owner: tok.Name, id: now.TokenID, seen: at, issuedAt: now.IssuedAt.Time})
	default:
		m := mint{owner: tok.Name, previous: before.TokenID, id: now.TokenID, seen: at, issuedAt: now.IssuedAt.Time}
		if prev.Status.RenewalTime != nil {
			m.dueAt = prev.Status.RenewalTime.Time
		}
		h.mints = append(h.mints, m)
		if h.counting {
			h.mintsInWin++
		}
		if tok.Status.Rotations != prev.Status.Rotations+1 {
			h.fail("%s: token %s replaced %s but status.rotations went from %d to %d", tok.Name, now.TokenID, before.TokenID, prev.Status.Rotations, tok.Status.Rotations)
		}
	}
	h.last[tok.Name] = tok
}

// leave marks a token as no longer listed.
func (h *history) leave(id string, at time.Time) {
	if rec := h.tokens[id]; rec != nil && rec.gone.IsZero() {
		rec.gone = at
	}
}

// observeSecret takes in one state of a token Secret.
func (h *history) observeSecret(typ watch.EventType, obj client.Object, at time.Time) {
	sec := obj.(*corev1.Secret)
	if sec.Type != tokensv1.TokenSecretType {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counting && (typ == watch.Added || typ == watch.Modified) {
		h.secretWrite++
	}
	id := string(sec.Data[tokensv1.SecretKeyTokenID])
	if id == "" || typ == watch.Deleted {
		return
	}
	rec := h.tokens[id]
	if rec == nil {
		// The Secret watch can run ahead of the APIToken watch: the status listing
		// the token was written first, but is not seen yet.
		rec = &issued{id: id, owner: "?"}
		h.tokens[id] = rec
	}
	if rec.inSecret.IsZero() {
		rec.inSecret = at
	}
}

// listedTokens are the tokens a status lists: current, then previous.
func listedTokens(tok *tokensv1.APIToken) []tokensv1.IssuedToken {
	if tok == nil {
		return nil
	}
	var out []tokensv1.IssuedToken
	if tok.Status.Current != nil {
		out = append(out, *tok.Status.Current)
	}
	return append(out, tok.Status.PreviousTokens...)
}

// onlyUsage reports whether b differs from a only by status.lastUsedTime, the field
// the validator writes.
func onlyUsage(a, b *tokensv1.APIToken) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	for _, t := range []*tokensv1.APIToken{a, b} {
		t.ResourceVersion, t.ManagedFields, t.Status.LastUsedTime = "", nil, nil
	}
	return equality.Semantic.DeepEqual(a, b)
}

// token returns what the history knows of id, nil if nothing, as a copy.
func (h *history) token(id string) *issued {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.tokens[id]
	if rec == nil || rec.firstListed.IsZero() {
		return nil
	}
	c := *rec
	return &c
}

// unknown returns the ids never seen listed in a status.
func (h *history) unknown(ids []string) []string {
	var missing []string
	for _, id := range ids {
		if h.token(id) == nil {
			missing = append(missing, id)
		}
	}
	return missing
}

// mintsSince returns the mints seen at or after t, in the order seen.
func (h *history) mintsSince(t time.Time) []mint {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []mint
	for _, m := range h.mints {
		if !m.seen.Before(t) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seen.Before(out[j].seen) })
	return out
}

// mintStats are the figures of the mints of a run.
type mintStats struct {
	// Rotations replaced a token at or after its renewal time.
	Rotations int `json:"rotations"`
	// Repairs replaced early a token the Secret never held: the manager died between
	// listing it and writing the Secret, and the next pass minted again.
	Repairs int `json:"repairs"`
	// DoubleMints replaced early a token the Secret held: each is a problem.
	DoubleMints int `json:"doubleMints,omitempty"`
	// MaxDelay is how late the latest rotation came after its renewal time.
	MaxDelay string `json:"maxRotationDelay"`
}

// mintFigures checks the mints: a token is replaced before its renewal time only
// when its Secret never held it (a repair). Anything else was minted twice, and is a
// problem.
func (h *history) mintFigures() (st mintStats, problems []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	problems = append(problems, h.problem...)
	var maxLate time.Duration
	for _, m := range h.mints {
		if m.previous == "" {
			continue
		}
		prev := h.tokens[m.previous]
		early := !m.dueAt.IsZero() && m.issuedAt.Before(m.dueAt.Add(-time.Second))
		switch {
		case !early:
			st.Rotations++
			if late := m.issuedAt.Sub(m.dueAt); !m.dueAt.IsZero() && late > maxLate {
				maxLate = late
			}
		case prev != nil && prev.inSecret.IsZero():
			st.Repairs++
		default:
			st.DoubleMints++
			problems = append(problems, fmt.Sprintf("%s: token %s replaced %s at %s, before its renewal time %s, though the Secret held it: minted twice",
				m.owner, m.id, m.previous, m.issuedAt.Format(time.RFC3339), m.dueAt.Format(time.RFC3339)))
		}
	}
	st.MaxDelay = maxLate.String()
	return st, problems
}

// writes returns the write counts of the window and the rotations in it.
func (h *history) writes() (tokenWrites, usageWrites, secretWrites, mints int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tokenWrites, h.usageWrites, h.secretWrite, h.mintsInWin
}

// watchLoop lists then watches the objects of list's kind in ns and hands every state
// to handle, with the time it arrived. It resumes a broken watch from the last
// resourceVersion seen (the API server may be restarting), and lists again when
// that version is too old.
func watchLoop(ctx context.Context, c client.WithWatch, list client.ObjectList, ns string, handle func(watch.EventType, client.Object, time.Time)) {
	rv := ""
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		if rv == "" {
			l := list.DeepCopyObject().(client.ObjectList)
			if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
				pause()
				continue
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				panic(err)
			}
			now := time.Now()
			for _, it := range items {
				handle(watch.Added, it.(client.Object), now)
			}
			rv = l.GetResourceVersion()
		}
		w, err := c.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			pause()
			continue
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				if st, ok := ev.Object.(*metav1.Status); ok && (st.Code == http.StatusGone || apierrors.IsResourceExpired(apierrors.FromObject(st))) {
					rv = ""
				}
			case watch.Bookmark:
				if o, ok := ev.Object.(client.Object); ok {
					rv = o.GetResourceVersion()
				}
			default:
				o := ev.Object.(client.Object)
				rv = o.GetResourceVersion()
				handle(ev.Type, o, time.Now())
			}
		}
		w.Stop()
		pause()
	}
}
