package issuer

import (
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// keyInput is what planning the key set looks at: the keys the status lists, which of
// them lost their private key, what the spec asks for and what the annotations request.
type keyInput struct {
	// now is the time of the pass.
	now time.Time
	// algorithm and interval are the spec's signing algorithm and rotation interval;
	// maxLifetime is the longest a token of the issuer lives; publishBefore is how
	// long a new key is published before it signs.
	algorithm     tokensv1.SigningAlgorithm
	interval      time.Duration
	maxLifetime   time.Duration
	publishBefore time.Duration
	// keys, currentKeyID and nextKeyID are status.keys, status.currentKeyID and
	// status.nextKeyID.
	keys         []tokensv1.SigningKeyStatus
	currentKeyID string
	nextKeyID    string
	// lost are the listed keys whose private key is missing or corrupt.
	lost []string
	// rotateRequested is true when a rotate-key request waits to be served;
	// compromised when it says that every key leaked.
	rotateRequested bool
	compromised     bool
}

// keyPlan is the key set a pass publishes, once the Secret holds it.
type keyPlan struct {
	// current is the key that signs new tokens.
	current tokensv1.SigningKeyStatus
	// next is the published key that signs after current, nil if none.
	next *tokensv1.SigningKeyStatus
	// retired are the retired keys still needed, newest first.
	retired []tokensv1.SigningKeyStatus
	// generated is why a key was made in this pass, "" if none was: current when
	// activated is immediate, else next (or current, when publishBefore is 0 and the
	// new key signed in the pass that made it).
	generated keyReason
	// activated is why current began to sign in this pass, "" if it signed before:
	// reasonNextKeyDue when the next key's time came, or the immediate reason that
	// replaced a missing or withdrawn key.
	activated keyReason
	// previous is the key current replaced and retired, "" if none.
	previous string
	// pruned are the keys that left for good without being lost or withdrawn: retired
	// keys that expired, and a next key of an algorithm the spec no longer asks for.
	pruned []string
	// withdrawn are the keys a compromised rotation took out of the JWKS.
	withdrawn []string
}

// planKeySet decides the key set. A compromised rotation withdraws every listed key;
// lost keys are dropped. A current key that is gone is replaced at once, by the next
// key if one is published, else by a new key. Otherwise, when a key policy asks for
// a new key, one is published as the next key and begins to sign publishBefore
// later, retiring the current one. newKey supplies a new key's ID (it is called at
// most once, and only then, since generating a key is slow). A retired key stays
// until every token it signed has expired, which is maxLifetime after it stopped
// signing, and is pruned after.
func planKeySet(in keyInput, newKey func() (string, error)) (keyPlan, error) {
	var plan keyPlan
	gone := map[string]bool{}
	for _, id := range in.lost {
		gone[id] = true
	}
	if in.compromised {
		// Every key lived in the same Secret: whoever read one read them all.
		for _, k := range in.keys {
			plan.withdrawn = append(plan.withdrawn, k.KeyID)
			gone[k.KeyID] = true
		}
	}

	var current, next *tokensv1.SigningKeyStatus
	var retired []tokensv1.SigningKeyStatus
	for _, k := range in.keys {
		switch {
		case gone[k.KeyID]:
		case k.KeyID == in.currentKeyID && k.RetiredAt == nil:
			current = k.DeepCopy()
		case k.KeyID == in.nextKeyID && k.RetiredAt == nil:
			next = k.DeepCopy()
		default:
			retired = append(retired, retire(k, in.now, in.maxLifetime))
		}
	}
	if next != nil && next.Algorithm != in.algorithm {
		// It never signed, so no token needs it.
		plan.pruned = append(plan.pruned, next.KeyID)
		next = nil
	}

	generate := func(reason keyReason) (*tokensv1.SigningKeyStatus, error) {
		id, err := newKey()
		if err != nil {
			return nil, err
		}
		plan.generated = reason
		return &tokensv1.SigningKeyStatus{KeyID: id, Algorithm: in.algorithm, CreatedAt: metav1.NewTime(in.now)}, nil
	}
	reason := needsNewKey(keyState{
		now:             in.now,
		algorithm:       in.algorithm,
		interval:        in.interval,
		publishBefore:   in.publishBefore,
		current:         current,
		currentLost:     !in.compromised && in.currentKeyID != "" && gone[in.currentKeyID],
		rotateRequested: in.rotateRequested,
		compromised:     in.compromised,
	})
	switch {
	case reason.immediate():
		// A published next key has been out longer than a new one would be.
		if next == nil {
			var err error
			if next, err = generate(reason); err != nil {
				return keyPlan{}, err
			}
		}
		current, next = activate(next, in.now), nil
		plan.activated = reason
	case reason != "" && next == nil:
		// A next key already published serves the request as well.
		var err error
		if next, err = generate(reason); err != nil {
			return keyPlan{}, err
		}
	}
	if next != nil && !in.now.Before(next.CreatedAt.Add(in.publishBefore)) {
		plan.previous = current.KeyID
		retired = append(retired, retire(*current, in.now, in.maxLifetime))
		current, next = activate(next, in.now), nil
		plan.activated = reasonNextKeyDue
	}
	plan.current, plan.next = *current, next

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

// activate returns k signing from now.
func activate(k *tokensv1.SigningKeyStatus, now time.Time) *tokensv1.SigningKeyStatus {
	k = k.DeepCopy()
	k.ActivatedAt = &metav1.Time{Time: now}
	return k
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
