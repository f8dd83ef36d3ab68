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

	tests := []struct {
		name         string
		keys         []tokensv1.SigningKeyStatus
		currentKeyID string
		lost         []string
		algorithm    tokensv1.SigningAlgorithm
		want         keyPlan
	}{
		{
			name: "first key",
			want: keyPlan{current: fresh, newKey: reasonNoKey},
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
				current: fresh, newKey: reasonRotationDue, previous: "k1",
				retired: []tokensv1.SigningKeyStatus{retiredKey("k1", interval, 0)},
			},
		},
		{
			name:         "algorithm changed",
			keys:         []tokensv1.SigningKeyStatus{current("k1", time.Hour)},
			currentKeyID: "k1",
			algorithm:    tokensv1.AlgorithmEdDSA,
			want: keyPlan{
				current: tokensv1.SigningKeyStatus{KeyID: "new", Algorithm: tokensv1.AlgorithmEdDSA, CreatedAt: metav1.NewTime(now)},
				newKey:  reasonAlgorithmChanged, previous: "k1",
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
				current: fresh, newKey: reasonKeyLost,
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			alg := tt.algorithm
			if alg == "" {
				alg = es
			}
			calls := 0
			in := keyInput{now: now, algorithm: alg, interval: interval, maxLifetime: maxLifetime, keys: tt.keys, currentKeyID: tt.currentKeyID, lost: tt.lost}
			var before []tokensv1.SigningKeyStatus
			for _, k := range tt.keys {
				before = append(before, *k.DeepCopy())
			}
			got, err := planKeySet(in, func() (string, error) { calls++; return "new", nil })
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
			wantCalls := 0
			if tt.want.newKey != "" {
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
