package issuer

import (
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// keyState is what the key policies look at: the issuer's current key as its status
// records it, what the spec asks for and what the annotations request.
type keyState struct {
	// now is the time of the pass.
	now time.Time
	// algorithm and interval are the spec's signing algorithm and rotation interval;
	// publishBefore is how long a new key is published before it signs.
	algorithm     tokensv1.SigningAlgorithm
	interval      time.Duration
	publishBefore time.Duration
	// current is the current key, nil when the status names none or its private key
	// was lost or withdrawn.
	current *tokensv1.SigningKeyStatus
	// currentLost is true when the status named a current key whose private key is
	// missing or corrupt in the key Secret.
	currentLost bool
	// rotateRequested is true when the apitoken.dev/rotate-key annotation holds a
	// value not served yet; compromised when that request says the keys leaked.
	rotateRequested bool
	compromised     bool
}

// keyReason says why the issuer needs a new key. The values are stable: they label
// the apitoken_issuer_keys_generated_total metric.
type keyReason string

const (
	// reasonCompromised: a rotation for a compromised key withdrew every key.
	reasonCompromised keyReason = "Compromised"
	// reasonKeyLost: the private key of the current key is missing or corrupt.
	reasonKeyLost keyReason = "KeyLost"
	// reasonNoKey: the issuer has no current key yet.
	reasonNoKey keyReason = "NoKey"
	// reasonRotateRequested: the apitoken.dev/rotate-key annotation asks for a new key.
	reasonRotateRequested keyReason = "RotateRequested"
	// reasonAlgorithmChanged: spec.signing.algorithm is not the current key's.
	reasonAlgorithmChanged keyReason = "AlgorithmChanged"
	// reasonRotationDue: the current key will have signed for keyRotationInterval
	// by the time a key published now may sign.
	reasonRotationDue keyReason = "RotationDue"
	// reasonNextKeyDue is why a key began to sign rather than why one was made: the
	// next key was published publishBefore ago. It labels no metric.
	reasonNextKeyDue keyReason = "NextKeyDue"
)

// immediate reports whether the new key for reason must sign at once: the current
// key is missing or withdrawn, so no key is left to sign while a new one would be
// published ahead of use.
func (r keyReason) immediate() bool {
	return r == reasonCompromised || r == reasonKeyLost || r == reasonNoKey
}

// rotates reports whether a new key for reason retires the current one once it
// signs, as opposed to replacing a key that is gone.
func (r keyReason) rotates() bool {
	return r == reasonRotateRequested || r == reasonAlgorithmChanged || r == reasonRotationDue
}

// keyPolicy returns why the issuer needs a new key, or "" when the current key may
// keep signing.
type keyPolicy func(keyState) keyReason

// keyPolicies are asked in order; the first reason wins. The immediate reasons come
// first: a key that is gone cannot wait for pre-publication.
var keyPolicies = []keyPolicy{compromised, currentKeyLost, noCurrentKey, rotateRequested, algorithmChanged, rotationDue}

// needsNewKey returns the first reason of keyPolicies, or "".
func needsNewKey(s keyState) keyReason {
	for _, p := range keyPolicies {
		if r := p(s); r != "" {
			return r
		}
	}
	return ""
}

func compromised(s keyState) keyReason {
	if s.compromised {
		return reasonCompromised
	}
	return ""
}

func currentKeyLost(s keyState) keyReason {
	if s.currentLost {
		return reasonKeyLost
	}
	return ""
}

func noCurrentKey(s keyState) keyReason {
	if s.current == nil {
		return reasonNoKey
	}
	return ""
}

func rotateRequested(s keyState) keyReason {
	if s.rotateRequested {
		return reasonRotateRequested
	}
	return ""
}

func algorithmChanged(s keyState) keyReason {
	if s.current != nil && s.current.Algorithm != s.algorithm {
		return reasonAlgorithmChanged
	}
	return ""
}

// rotationDue asks for the next key publishBefore ahead of the rotation, so that it
// has been published that long when it begins to sign.
func rotationDue(s keyState) keyReason {
	if s.current != nil && !s.now.Before(activatedAt(s.current).Add(s.interval-s.publishBefore)) {
		return reasonRotationDue
	}
	return ""
}

// activatedAt is when k began to sign: a key recorded before keys were published
// ahead of use began when it was created.
func activatedAt(k *tokensv1.SigningKeyStatus) time.Time {
	if k.ActivatedAt != nil {
		return k.ActivatedAt.Time
	}
	return k.CreatedAt.Time
}
