package issuer

import (
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// keyState is what the key policies look at: the issuer's current key as its status
// records it and what the spec asks for.
type keyState struct {
	// now is the time of the pass.
	now time.Time
	// algorithm and interval are the spec's signing algorithm and rotation interval.
	algorithm tokensv1.SigningAlgorithm
	interval  time.Duration
	// current is the current key, nil when the status names none or its private key
	// was lost.
	current *tokensv1.SigningKeyStatus
	// currentLost is true when the status named a current key whose private key is
	// missing or corrupt in the key Secret.
	currentLost bool
}

// keyReason says why the issuer needs a new current key. The values are stable:
// they label the apitoken_issuer_keys_generated_total metric.
type keyReason string

const (
	// reasonKeyLost: the private key of the current key is missing or corrupt.
	reasonKeyLost keyReason = "KeyLost"
	// reasonNoKey: the issuer has no current key yet.
	reasonNoKey keyReason = "NoKey"
	// reasonAlgorithmChanged: spec.signing.algorithm is not the current key's.
	reasonAlgorithmChanged keyReason = "AlgorithmChanged"
	// reasonRotationDue: the current key is keyRotationInterval old.
	reasonRotationDue keyReason = "RotationDue"
)

// rotates reports whether a new key for reason retires the current one, as opposed to
// replacing a key that is gone.
func (r keyReason) rotates() bool {
	return r == reasonAlgorithmChanged || r == reasonRotationDue
}

// keyPolicy returns why the issuer needs a new current key, or "" when the current
// key may keep signing.
type keyPolicy func(keyState) keyReason

// keyPolicies are asked in order; the first reason wins.
var keyPolicies = []keyPolicy{currentKeyLost, noCurrentKey, algorithmChanged, rotationDue}

// needsNewKey returns the first reason of keyPolicies, or "".
func needsNewKey(s keyState) keyReason {
	for _, p := range keyPolicies {
		if r := p(s); r != "" {
			return r
		}
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

func algorithmChanged(s keyState) keyReason {
	if s.current != nil && s.current.Algorithm != s.algorithm {
		return reasonAlgorithmChanged
	}
	return ""
}

func rotationDue(s keyState) keyReason {
	if s.current != nil && !s.now.Before(s.current.CreatedAt.Add(s.interval)) {
		return reasonRotationDue
	}
	return ""
}
