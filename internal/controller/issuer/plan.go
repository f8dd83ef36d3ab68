package issuer

import (
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// keyInput is what planning the key set looks at: the keys the status lists, which of
// them lost their private key, and what the spec asks for.
type keyInput struct {
	// now is the time of the pass.
	now time.Time
	// algorithm and interval are the spec's signing algorithm and rotation interval;
	// maxLifetime is the longest a token of the issuer lives.
	algorithm   tokensv1.SigningAlgorithm
	interval    time.Duration
	maxLifetime time.Duration
	// keys and currentKeyID are status.keys and status.currentKeyID.
	keys         []tokensv1.SigningKeyStatus
	currentKeyID string
	// lost are the listed keys whose private key is missing or corrupt.
	lost []string
}

// keyPlan is the key set a pass publishes, once the Secret holds it.
type keyPlan struct {
	// current is the key that signs new tokens.
	current tokensv1.SigningKeyStatus
	// retired are the retired keys still needed, newest first.
	retired []tokensv1.SigningKeyStatus
	// newKey is why current is a new key, "" if it is not.
	newKey keyReason
	// previous is the key the new one replaced, "" if none.
	previous string
	// pruned are the retired keys that expired.
	pruned []string
}

// planKeySet decides the key set: lost keys are dropped; when a key policy asks for a
// new current key, newKey supplies its ID (it is called at most once, and only then,
// since generating a key is slow) and the key it replaces is retired; a retired key
// stays until every token it signed has expired, which is maxLifetime after it
// stopped signing, and is pruned after.
func planKeySet(in keyInput, newKey func() (string, error)) (keyPlan, error) {
	lost := map[string]bool{}
	for _, id := range in.lost {
		lost[id] = true
	}

	var current *tokensv1.SigningKeyStatus
	var retired []tokensv1.SigningKeyStatus
	for _, k := range in.keys {
		switch {
		case lost[k.KeyID]:
		case k.KeyID == in.currentKeyID && k.RetiredAt == nil:
			current = k.DeepCopy()
		default:
			retired = append(retired, retire(k, in.now, in.maxLifetime))
		}
	}

	var plan keyPlan
	plan.newKey = needsNewKey(keyState{
		now:         in.now,
		algorithm:   in.algorithm,
		interval:    in.interval,
		current:     current,
		currentLost: in.currentKeyID != "" && lost[in.currentKeyID],
	})
	if plan.newKey != "" {
		id, err := newKey()
		if err != nil {
			return keyPlan{}, err
		}
		if current != nil {
			plan.previous = current.KeyID
			retired = append(retired, retire(*current, in.now, in.maxLifetime))
		}
		current = &tokensv1.SigningKeyStatus{KeyID: id, Algorithm: in.algorithm, CreatedAt: metav1.NewTime(in.now)}
	}
	plan.current = *current

	// A retired key is needed until every token it signed has expired: tokens live at
	// most maxLifetime, and it signed none after retiredAt.
	for _, k := range retired {
		if !k.ExpiresAt.After(in.now) {
			plan.pruned = append(plan.pruned, k.KeyID)
			continue
		}
		plan.retired = append(plan.retired, k)
	}
	slices.SortFunc(plan.retired, func(a, b tokensv1.SigningKeyStatus) int {
		if c := b.CreatedAt.Compare(a.CreatedAt.Time); c != 0 {
			return c
		}
		return strings.Compare(a.KeyID, b.KeyID)
	})
	return plan, nil
}

// retire returns k retired at now, unless it already is; a retired key missing its
// expiry (a status edited by hand) gets one from its retirement.
func retire(k tokensv1.SigningKeyStatus, now time.Time, maxLifetime time.Duration) tokensv1.SigningKeyStatus {
	k = *k.DeepCopy()
	if k.RetiredAt == nil {
		k.RetiredAt = &metav1.Time{Time: now}
	}
	if k.ExpiresAt == nil {
		k.ExpiresAt = &metav1.Time{Time: k.RetiredAt.Add(maxLifetime)}
	}
	return k
}
