package issuer

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// TestPlanKeySet: which keys a pass publishes, and when it asks for a new one.
func TestPlanKeySet(t *testing.T) {
	const (
		interval    = 720 * time.Hour
		maxLifetime = 100 * time.Hour
		es          = tokensv1.AlgorithmES256
	)
	now := start.Add(10 * interval)
	ago := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	current := func(id string, age time.Duration) tokensv1.SigningKeyStatus {
		return tokensv1.SigningKeyStatus{KeyID: id, Algorithm: es, CreatedAt: ago(age)}
	}
	// retiredKey was created age ago and retired at retired (from now), expiring
	// maxLifetime later.
	retiredKey := func(id string, age, retired time.Duration) tokensv1.SigningKeyStatus {
		k := current(id, age)
		k.RetiredAt = at(retired)
		k.ExpiresAt = at(retired + maxLifetime)
		return k
	}
	fresh := tokensv1.SigningKeyStatus{KeyID: "new", Algorithm: es, CreatedAt: metav1.NewTime(now)}
	// signing is fresh signing since now.
	signing := *activate(&fresh, now)
	// next was published age ago and signs nothing yet.
	next := func(id string, age time.Duration) tokensv1.SigningKeyStatus {
		return tokensv1.SigningKeyStatus{KeyID: id, Algorithm: es, CreatedAt: ago(age)}
	}
	// began is a current key created age ago that began to sign active ago.
	began := func(id string, age, active time.Duration) tokensv1.SigningKeyStatus {
		k := current(id, age)
		k.ActivatedAt = &metav1.Time{Time: now.Add(-active)}
		return k
	}
	const lead = time.Hour

	tests := []struct {
		name          string
		keys          []tokensv1.SigningKeyStatus
		currentKeyID  string
		nextKeyID     string
		lost          []string
		algorithm     tokensv1.SigningAlgorithm
		publishBefore time.Duration
		rotate        bool
		compromised   bool
		want          keyPlan
	}{
		{
			name: "first key",
			want: keyPlan{current: signing, generated: reasonNoKey, activated: reasonNoKey},
		},
		{
			name:          "first key: signs at once, whatever publishBefore",
			publishBefore: lead,
			want:          keyPlan{current: signing, generated: reasonNoKey, activated: reasonNoKey},
		},
		{
			name:         "rotation not due",
			keys:         []tokensv1.SigningKeyStatus{current("k1", interval-time.Second)},
			currentKeyID: "k1",
			want:         keyPlan{current: current("k1", interval-time.Second)},
		},
		{
			name:         "rotation due: the old key retires for maxLifetime",
			keys:         []tokensv1.SigningKeyStatus{current("k1", interval)},
			currentKeyID: "k1",
			want: keyPlan{
				current: signing, generated: reasonRotationDue, activated: reasonNextKeyDue, previous: "k1",
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", interval, 0)},
			},
		},
		{
			name:         "algorithm changed",
			keys:         []tokensv1.SigningKeyStatus{current("k1", time.Hour)},
			currentKeyID: "k1",
			algorithm:    tokensv1.AlgorithmEdDSA,
			want: keyPlan{
				current:   *activate(&tokensv1.SigningKeyStatus{KeyID: "new", Algorithm: tokensv1.AlgorithmEdDSA, CreatedAt: metav1.NewTime(now)}, now),
				generated: reasonAlgorithmChanged, activated: reasonNextKeyDue, previous: "k1",
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", time.Hour, 0)},
			},
		},
		{
			name: "old keys stay until their tokens expired, newest first, then are pruned",
			keys: []tokensv1.SigningKeyStatus{
				current("k4", time.Hour),
				retiredKey("k1", 3*interval, -maxLifetime),                   // expires now
				retiredKey("k2", 2*interval, -maxLifetime+time.Second),       // a second to go
				retiredKey("k3", interval+time.Hour, -maxLifetime+time.Hour), // an hour to go
			},
			currentKeyID: "k4",
			want: keyPlan{
				current: current("k4", time.Hour),
				retired: []tokensv1.SigningKeyStatus{
					retiredKey("k3", interval+time.Hour, -maxLifetime+time.Hour),
					retiredKey("k2", 2*interval, -maxLifetime+time.Second),
				},
				pruned: []string{"k1"},
			},
		},
		{
			name: "a retired key without expiresAt gets one from its retirement",
			keys: []tokensv1.SigningKeyStatus{
				current("k2", time.Hour),
				func() tokensv1.SigningKeyStatus {
					k := retiredKey("k1", interval, -time.Hour)
					k.ExpiresAt = nil
					return k
				}(),
			},
			currentKeyID: "k2",
			want: keyPlan{
				current: current("k2", time.Hour),
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", interval, -time.Hour)},
			},
		},
		{
			name:         "lost current key: replaced, not retired",
			keys:         []tokensv1.SigningKeyStatus{current("k2", time.Hour), retiredKey("k1", interval, -time.Hour)},
			currentKeyID: "k2",
			lost:         []string{"k2"},
			want: keyPlan{
				current: signing, generated: reasonKeyLost, activated: reasonKeyLost,
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", interval, -time.Hour)},
			},
		},
		{
			name:         "lost retired key: dropped, the current key keeps signing",
			keys:         []tokensv1.SigningKeyStatus{current("k2", time.Hour), retiredKey("k1", interval, -time.Hour)},
			currentKeyID: "k2",
			lost:         []string{"k1"},
			want:         keyPlan{current: current("k2", time.Hour)},
		},

		// Pre-publication.
		{
			name:          "not yet publishBefore ahead of the rotation",
			keys:          []tokensv1.SigningKeyStatus{current("k1", interval-lead-time.Second)},
			currentKeyID:  "k1",
			publishBefore: lead,
			want:          keyPlan{current: current("k1", interval-lead-time.Second)},
		},
		{
			name:          "publishBefore ahead of the rotation: the next key is published, the current one keeps signing",
			keys:          []tokensv1.SigningKeyStatus{current("k1", interval-lead)},
			currentKeyID:  "k1",
			publishBefore: lead,
			want:          keyPlan{current: current("k1", interval-lead), next: &fresh, generated: reasonRotationDue},
		},
		{
			name:          "a next key published less than publishBefore ago waits",
			keys:          []tokensv1.SigningKeyStatus{current("k1", interval-time.Second), next("k2", lead-time.Second)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			publishBefore: lead,
			want:          keyPlan{current: current("k1", interval-time.Second), next: new(next("k2", lead-time.Second))},
		},
		{
			name:          "a next key published publishBefore ago signs, and the current one retires",
			keys:          []tokensv1.SigningKeyStatus{current("k1", interval), next("k2", lead)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			publishBefore: lead,
			want: keyPlan{
				current: *activate(new(next("k2", lead)), now), activated: reasonNextKeyDue, previous: "k1",
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", interval, 0)},
			},
		},
		{
			name:          "the rotation is due keyRotationInterval after the key began to sign, not after it was made",
			keys:          []tokensv1.SigningKeyStatus{began("k1", 2*interval, interval-lead-time.Second)},
			currentKeyID:  "k1",
			publishBefore: lead,
			want:          keyPlan{current: began("k1", 2*interval, interval-lead-time.Second)},
		},
		{
			name:          "rotate now: the next key is published at once and signs publishBefore later",
			keys:          []tokensv1.SigningKeyStatus{current("k1", time.Hour)},
			currentKeyID:  "k1",
			publishBefore: lead,
			rotate:        true,
			want:          keyPlan{current: current("k1", time.Hour), next: &fresh, generated: reasonRotateRequested},
		},
		{
			name:          "rotate now while a next key waits: the published key serves it",
			keys:          []tokensv1.SigningKeyStatus{current("k1", time.Hour), next("k2", time.Minute)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			publishBefore: lead,
			rotate:        true,
			want:          keyPlan{current: current("k1", time.Hour), next: new(next("k2", time.Minute))},
		},
		{
			name:         "rotate now without publishBefore rotates in the same pass",
			keys:         []tokensv1.SigningKeyStatus{current("k1", time.Hour)},
			currentKeyID: "k1",
			rotate:       true,
			want: keyPlan{
				current: signing, generated: reasonRotateRequested, activated: reasonNextKeyDue, previous: "k1",
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", time.Hour, 0)},
			},
		},
		{
			name:          "algorithm changed while a next key of the old one waits: that key goes, a new one is published",
			keys:          []tokensv1.SigningKeyStatus{current("k1", time.Hour), next("k2", time.Minute)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			algorithm:     tokensv1.AlgorithmEdDSA,
			publishBefore: lead,
			want: keyPlan{
				current:   current("k1", time.Hour),
				next:      &tokensv1.SigningKeyStatus{KeyID: "new", Algorithm: tokensv1.AlgorithmEdDSA, CreatedAt: metav1.NewTime(now)},
				generated: reasonAlgorithmChanged, pruned: []string{"k2"},
			},
		},
		{
			name:          "lost current key with a next key published: the next key signs at once",
			keys:          []tokensv1.SigningKeyStatus{current("k1", time.Hour), next("k2", time.Minute)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			lost:          []string{"k1"},
			publishBefore: lead,
			want:          keyPlan{current: *activate(new(next("k2", time.Minute)), now), activated: reasonKeyLost},
		},
		{
			name:          "lost next key: a new one is published",
			keys:          []tokensv1.SigningKeyStatus{current("k1", interval-time.Minute), next("k2", time.Minute)},
			currentKeyID:  "k1",
			nextKeyID:     "k2",
			lost:          []string{"k2"},
			publishBefore: lead,
			want:          keyPlan{current: current("k1", interval-time.Minute), next: &fresh, generated: reasonRotationDue},
		},

		// Compromise.
		{
			name: "compromised: every key is withdrawn, lost or not, and a new one signs at once",
			keys: []tokensv1.SigningKeyStatus{
				current("k3", time.Hour), next("k4", time.Minute),
				retiredKey("k1", 2*interval, -time.Hour), retiredKey("k2", interval, -time.Minute),
			},
			currentKeyID:  "k3",
			nextKeyID:     "k4",
			lost:          []string{"k2"},
			publishBefore: lead,
			rotate:        true,
			compromised:   true,
			want: keyPlan{
				current: signing, generated: reasonCompromised, activated: reasonCompromised,
				withdrawn: []string{"k3", "k4", "k1", "k2"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			alg := tt.algorithm
			if alg == "" {
				alg = es
			}
			calls := 0
			in := keyInput{now: now, algorithm: alg, interval: interval, maxLifetime: maxLifetime, publishBefore: tt.publishBefore,
				keys: tt.keys, currentKeyID: tt.currentKeyID, nextKeyID: tt.nextKeyID, lost: tt.lost, rotateRequested: tt.rotate, compromised: tt.compromised}
			var before []tokensv1.SigningKeyStatus
			for _, k := range tt.keys {
				before = append(before, *k.DeepCopy())
			}
			got, err := planKeySet(in, func() (string, error) { calls++; return "new", nil })
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
			wantCalls := 0
			if tt.want.generated != "" {
				wantCalls = 1
			}
			g.Expect(calls).To(Equal(wantCalls), "a key is made only when one is needed")
			g.Expect(tt.keys).To(Equal(before), "the status's keys are not edited")
		})
	}

	t.Run("a key that cannot be made fails the plan", func(t *testing.T) {
		boom := errors.New("no entropy")
		_, err := planKeySet(keyInput{now: now, algorithm: es, interval: interval, maxLifetime: maxLifetime}, func() (string, error) { return "", boom })
		NewWithT(t).Expect(err).To(MatchError(boom))
	})
}
