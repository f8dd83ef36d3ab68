package issuer

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

func TestNeedsNewKey(t *testing.T) {
	created := start
	key := func(alg tokensv1.SigningAlgorithm) *tokensv1.SigningKeyStatus {
		return &tokensv1.SigningKeyStatus{KeyID: "k", Algorithm: alg, CreatedAt: metav1.NewTime(created)}
	}
	const interval = 720 * time.Hour
	for _, tc := range []struct {
		name  string
		state keyState
		want  keyReason
	}{
		{"fresh key", keyState{now: created, algorithm: tokensv1.AlgorithmES256, interval: interval, current: key(tokensv1.AlgorithmES256)}, ""},
		{"a second before rotation", keyState{now: created.Add(interval - time.Second), algorithm: tokensv1.AlgorithmES256, interval: interval, current: key(tokensv1.AlgorithmES256)}, ""},
		{"rotation due", keyState{now: created.Add(interval), algorithm: tokensv1.AlgorithmES256, interval: interval, current: key(tokensv1.AlgorithmES256)}, reasonRotationDue},
		{"rotation overdue", keyState{now: created.Add(10 * interval), algorithm: tokensv1.AlgorithmES256, interval: interval, current: key(tokensv1.AlgorithmES256)}, reasonRotationDue},
		{"shorter interval makes it due", keyState{now: created.Add(2 * time.Hour), algorithm: tokensv1.AlgorithmES256, interval: time.Hour, current: key(tokensv1.AlgorithmES256)}, reasonRotationDue},
		{"algorithm changed", keyState{now: created, algorithm: tokensv1.AlgorithmEdDSA, interval: interval, current: key(tokensv1.AlgorithmES256)}, reasonAlgorithmChanged},
		{"algorithm changed and due", keyState{now: created.Add(interval), algorithm: tokensv1.AlgorithmRS256, interval: interval, current: key(tokensv1.AlgorithmES256)}, reasonAlgorithmChanged},
		{"no key yet", keyState{now: created, algorithm: tokensv1.AlgorithmES256, interval: interval}, reasonNoKey},
		{"current key lost", keyState{now: created, algorithm: tokensv1.AlgorithmES256, interval: interval, currentLost: true}, reasonKeyLost},
		{"publishBefore ahead of the rotation", keyState{now: created.Add(interval - time.Hour), algorithm: tokensv1.AlgorithmES256, interval: interval, publishBefore: time.Hour, current: key(tokensv1.AlgorithmES256)}, reasonRotationDue},
		{"a second before publishBefore ahead", keyState{now: created.Add(interval - time.Hour - time.Second), algorithm: tokensv1.AlgorithmES256, interval: interval, publishBefore: time.Hour, current: key(tokensv1.AlgorithmES256)}, ""},
		{"due from when the key began to sign", keyState{now: created.Add(interval), algorithm: tokensv1.AlgorithmES256, interval: interval, current: func() *tokensv1.SigningKeyStatus {
			k := key(tokensv1.AlgorithmES256)
			k.ActivatedAt = &metav1.Time{Time: created.Add(time.Second)}
			return k
		}()}, ""},
		{"rotate requested", keyState{now: created, algorithm: tokensv1.AlgorithmES256, interval: interval, current: key(tokensv1.AlgorithmES256), rotateRequested: true}, reasonRotateRequested},
		{"rotate requested beats the algorithm", keyState{now: created, algorithm: tokensv1.AlgorithmEdDSA, interval: interval, current: key(tokensv1.AlgorithmES256), rotateRequested: true}, reasonRotateRequested},
		{"compromised beats everything", keyState{now: created, algorithm: tokensv1.AlgorithmEdDSA, interval: interval, currentLost: true, rotateRequested: true, compromised: true}, reasonCompromised},
		{"lost beats a request", keyState{now: created, algorithm: tokensv1.AlgorithmES256, interval: interval, currentLost: true, rotateRequested: true}, reasonKeyLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(needsNewKey(tc.state)).To(Equal(tc.want))
		})
	}
}

func TestKeyReasonRotates(t *testing.T) {
	g := NewWithT(t)
	g.Expect(reasonRotationDue.rotates()).To(BeTrue())
	g.Expect(reasonAlgorithmChanged.rotates()).To(BeTrue())
	g.Expect(reasonNoKey.rotates()).To(BeFalse())
	g.Expect(reasonKeyLost.rotates()).To(BeFalse())
	g.Expect(keyReason("").rotates()).To(BeFalse())
	g.Expect(reasonRotateRequested.rotates()).To(BeTrue())
	g.Expect(reasonCompromised.rotates()).To(BeFalse(), "withdrawn keys are not retired")
}

func TestKeyReasonImmediate(t *testing.T) {
	g := NewWithT(t)
	for _, r := range []keyReason{reasonCompromised, reasonKeyLost, reasonNoKey} {
		g.Expect(r.immediate()).To(BeTrue(), "%s: no key is left to sign meanwhile", r)
	}
	for _, r := range []keyReason{reasonRotateRequested, reasonAlgorithmChanged, reasonRotationDue, ""} {
		g.Expect(r.immediate()).To(BeFalse(), "%s: the current key signs until the new one was published publishBefore", r)
	}
}
