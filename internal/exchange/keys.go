package exchange

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// Keys holds the current signing key of each issuer. It reads an issuer's key Secret
// by name, the one read of Secrets the exchange's Role allows (no list, no watch), and
// only when the issuer's current key changed, so an exchange costs no API request.
type Keys struct {
	reader    client.Reader
	namespace string

	mu      sync.Mutex
	current map[string]*token.SigningKey // by issuer name
}

// NewKeys returns Keys reading key Secrets from namespace, the operator's.
func NewKeys(reader client.Reader, namespace string) *Keys {
	return &Keys{reader: reader, namespace: namespace, current: map[string]*token.SigningKey{}}
}

// ErrNoKey means the issuer publishes no current key yet, or the exchange cannot read
// it. The message names the issuer and the key ID, never key material.
type ErrNoKey struct {
	Issuer, KeyID string
	Err           error
}

func (e *ErrNoKey) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("issuer %s has no current signing key", e.Issuer)
	}
	return fmt.Sprintf("signing key %s of issuer %s: %v", e.KeyID, e.Issuer, e.Err)
}

func (e *ErrNoKey) Unwrap() error { return e.Err }

// Current returns the key iss signs new tokens with. Concurrent callers that find it
// missing may each read the Secret once; the reads are rare (one per key rotation and
// replica) and idempotent, so they are not coalesced.
func (k *Keys) Current(ctx context.Context, iss *index.Issuer) (*token.SigningKey, error) {
	kid := iss.CurrentKeyID
	if kid == "" {
		return nil, &ErrNoKey{Issuer: iss.Name}
	}
	k.mu.Lock()
	key := k.current[iss.Name]
	k.mu.Unlock()
	if key != nil && key.ID == kid {
		return key, nil
	}
	var alg string
	for _, j := range iss.JWKS {
		if j.Kid == kid {
			alg = j.Alg
		}
	}
	if alg == "" {
		return nil, &ErrNoKey{Issuer: iss.Name, KeyID: kid, Err: fmt.Errorf("the key is not published")}
	}
	var s corev1.Secret
	if err := k.reader.Get(ctx, types.NamespacedName{Namespace: k.namespace, Name: keystore.SecretName(iss.Name)}, &s); err != nil {
		return nil, &ErrNoKey{Issuer: iss.Name, KeyID: kid, Err: fmt.Errorf("reading Secret %s/%s: %w", k.namespace, keystore.SecretName(iss.Name), err)}
	}
	key, ok := keystore.Parse(s.Data, kid, tokensv1.SigningAlgorithm(alg))
	if !ok {
		return nil, &ErrNoKey{Issuer: iss.Name, KeyID: kid, Err: fmt.Errorf("the key Secret holds no usable key with this ID")}
	}
	k.mu.Lock()
	k.current[iss.Name] = key
	k.mu.Unlock()
	return key, nil
}
