package apitoken

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TestRotationBudget: the budget serves its burst at once, then one rotation per
// 1/perSecond; a rotation sent away keeps its slot and is served at it; a freed slot
// is not served twice; no budget never waits.
func TestRotationBudget(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: "ns", Name: string(rune('a' + i))}
	}
	type ask struct {
		token int
		at    time.Duration // after t0
		want  time.Duration
	}
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		asks      []ask
		waiting   int
	}{
		{"no budget", 0, 0, []ask{{0, 0, 0}, {1, 0, 0}, {2, 0, 0}}, 0},
		{"the burst at once, then paced", 2, 2, []ask{
			{0, 0, 0}, {1, 0, 0}, // the burst
			{2, 0, 500 * time.Millisecond},
			{3, 0, time.Second},
			{4, 0, 1500 * time.Millisecond},
		}, 3},
		{"a rotation sent away keeps its slot", 1, 1, []ask{
			{0, 0, 0},
			{1, 0, time.Second},
			{2, 0, 2 * time.Second},
			{1, 400 * time.Millisecond, 600 * time.Millisecond}, // woken early: what is left
			{1, time.Second, 0}, // its slot: served
			{2, 2 * time.Second, 0},
		}, 0},
		{"a slot served is gone: the next ask queues anew", 1, 1, []ask{
			{0, 0, 0},
			{1, 0, time.Second},
			{1, time.Second, 0},
			{1, time.Second, time.Second},
		}, 1},
		{"the bucket refills while idle", 1, 3, []ask{
			{0, 0, 0}, {1, 0, 0}, {2, 0, 0},
			{3, 0, time.Second},
			{4, time.Hour, 0}, {5, time.Hour, 0}, {6, time.Hour, 0},
			{7, time.Hour, time.Second},
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			b := NewRotationBudget(tt.perSecond, tt.burst)
			for i, a := range tt.asks {
				g.Expect(b.wait(key(a.token), t0.Add(a.at))).To(Equal(a.want), "ask %d: token %d at +%s", i, a.token, a.at)
			}
			g.Expect(b.waiting()).To(Equal(tt.waiting))
		})
	}

	t.Run("forget frees a slot", func(t *testing.T) {
		g := NewWithT(t)
		b := NewRotationBudget(1, 1)
		g.Expect(b.wait(key(0), t0)).To(BeZero())
		g.Expect(b.wait(key(1), t0)).To(Equal(time.Second))
		b.forget(key(1))
		g.Expect(b.waiting()).To(BeZero())
		var none *RotationBudget
		none.forget(key(1))
		g.Expect(none.waiting()).To(BeZero())
	})
}

// TestRotationBudgetPacesScheduledRotations: tokens that fall due together rotate at
// the budget's pace, those that wait write nothing and come back at their slot, and a
// rotation a person asks for does not wait.
func TestRotationBudgetPacesScheduledRotations(t *testing.T) {
	g := NewWithT(t)
	f := newIssuer(t, nil)
	ns := newNamespace(t)
	h := newHarness(t)
	h.r.Rotations = NewRotationBudget(1, 1)
	var toks []*tokensv1.APIToken
	for range 3 {
		tok := newToken(t, ns, f.name, nil)
		h.mustReconcile(tok)
		toks = append(toks, tok)
	}
	// Past every token's renewal time, jitter and all: all three are due.
	h.clock.Step(2 * time.Hour)
	rotations := func(tok *tokensv1.APIToken) int64 { return getToken(t, tok).Status.Rotations }

	h.mustReconcile(toks[0])
	g.Expect(rotations(toks[0])).To(Equal(int64(1)), "the burst")

	waiting := getToken(t, toks[1])
	res := h.mustReconcile(toks[1])
	g.Expect(res.RequeueAfter).To(BeNumerically("~", time.Second, 50*time.Millisecond), "back at its slot")
	g.Expect(getToken(t, toks[1]).ResourceVersion).To(Equal(waiting.ResourceVersion), "a waiting rotation writes nothing")
	g.Expect(condition(waiting, tokensv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "still Ready: its token is valid")

	res = h.mustReconcile(toks[2])
	g.Expect(res.RequeueAfter).To(BeNumerically("~", 2*time.Second, 50*time.Millisecond))

	// Asked for by a person: no wait, and its slot is given up.
	update(t, toks[2], func(a *tokensv1.APIToken) { a.Annotations = map[string]string{tokensv1.RotateAnnotation: "now"} })
	h.mustReconcile(toks[2])
	g.Expect(rotations(toks[2])).To(Equal(int64(1)))
	g.Expect(h.r.Rotations.waiting()).To(Equal(1))

	h.clock.Step(time.Second)
	h.mustReconcile(toks[1])
	g.Expect(rotations(toks[1])).To(Equal(int64(1)), "served at its slot")
	g.Expect(h.r.Rotations.waiting()).To(BeZero())

	// A deleted APIToken gives up its slot too.
	h.clock.Step(2 * time.Hour)
	h.mustReconcile(toks[0])
	h.mustReconcile(toks[1])
	g.Expect(h.r.Rotations.waiting()).To(Equal(1))
	g.Expect(k8s.Delete(context.Background(), toks[1])).To(Succeed())
	h.mustReconcile(toks[1])
	g.Expect(h.r.Rotations.waiting()).To(BeZero())
}

func TestPaced(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := &tokensv1.IssuedToken{TokenID: "a", IssuedAt: metav1.NewTime(t0), ExpiresAt: metav1.NewTime(t0.Add(3 * time.Hour))}
	scheduled := &trigger{scheduled: true}
	tests := []struct {
		name string
		t    *trigger
		w    wanted
		now  time.Time
		want bool
	}{
		{"due, plenty of life left", scheduled, wanted{}, t0.Add(2 * time.Hour), true},
		{"due, half of renewBefore left: still paced", scheduled, wanted{}, t0.Add(150 * time.Minute), true},
		{"less than half of renewBefore left: rotate now", scheduled, wanted{}, t0.Add(150*time.Minute + time.Second), false},
		{"renewBefore from the spec", scheduled, wanted{renewBefore: 20 * time.Minute}, t0.Add(170*time.Minute + time.Second), false},
		{"renewBefore from the spec, in time", scheduled, wanted{renewBefore: 20 * time.Minute}, t0.Add(170 * time.Minute), true},
		{"not scheduled", &trigger{reason: tokensv1.ReasonRotated}, wanted{}, t0.Add(2 * time.Hour), false},
		{"expired", scheduled, wanted{}, t0.Add(4 * time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := paced(tt.t, tt.w, cur, tt.now); got != tt.want {
				t.Errorf("paced = %v, want %v", got, tt.want)
			}
		})
	}
	if paced(scheduled, wanted{}, nil, t0) {
		t.Error("paced without a current token")
	}
}
