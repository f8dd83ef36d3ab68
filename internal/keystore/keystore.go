// Package keystore is where an issuer's private signing keys live: one Secret per
// ClusterTokenIssuer in the operator's namespace, one PKCS#8 PEM entry per key ID.
// Only the manager reads it; the validator never does.
package keystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// IssuerLabel names the issuer whose keys a Secret holds.
const IssuerLabel = "apitoken.dev/issuer"

// SecretName is the name of the Secret holding an issuer's private keys.
func SecretName(issuer string) string {
	const prefix, suffix = "apitoken-issuer-", "-keys"
	if len(prefix)+len(issuer)+len(suffix) <= 253 {
		return prefix + issuer + suffix
	}
	sum := sha256.Sum256([]byte(issuer))
	return prefix + issuer[:253-len(prefix)-len(suffix)-17] + "-" + hex.EncodeToString(sum[:8]) + suffix
}

// DataKey is the Secret data key of a key ID.
func DataKey(kid string) string { return kid + dataKeySuffix }

const dataKeySuffix = ".pem"

// ErrKeyNotFound means the Secret does not hold the key: it was deleted or corrupted.
type ErrKeyNotFound struct{ KeyID string }

func (e *ErrKeyNotFound) Error() string {
	return fmt.Sprintf("signing key %s is not in the issuer's key Secret", e.KeyID)
}

// Load reads the private key kid of issuer from the Secret in namespace. The error
// names the key ID and the Secret, never key material.
func Load(ctx context.Context, c client.Reader, namespace string, issuer *tokensv1.ClusterTokenIssuer, kid string) (*token.SigningKey, error) {
	var alg tokensv1.SigningAlgorithm
	for _, k := range issuer.Status.Keys {
		if k.KeyID == kid {
			alg = k.Algorithm
		}
	}
	if alg == "" {
		return nil, &ErrKeyNotFound{KeyID: kid}
	}
	var s corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: SecretName(issuer.Name)}, &s); err != nil {
		return nil, fmt.Errorf("reading signing keys of issuer %s: %w", issuer.Name, err)
	}
	key, ok := Parse(s.Data, kid, alg)
	if !ok {
		return nil, &ErrKeyNotFound{KeyID: kid}
	}
	return key, nil
}

// Parse decodes the entry of kid in a key Secret's data. It reports false when the
// entry is missing or corrupt: not a PKCS#8 PEM key of alg, or a key whose thumbprint
// is not kid (an entry edited by hand or swapped with another). Both the issuer
// controller and Load use it, so "usable key" means the same thing to both.
func Parse(data map[string][]byte, kid string, alg tokensv1.SigningAlgorithm) (*token.SigningKey, bool) {
	pem, ok := data[DataKey(kid)]
	if !ok {
		return nil, false
	}
	key, err := token.ParsePrivateKey(token.Algorithm(alg), pem)
	if err != nil || key.ID != kid {
		return nil, false
	}
	return key, true
}

// KeyID returns the key ID of a Secret data key written by DataKey, or false for
// entries that are not keys.
func KeyID(dataKey string) (string, bool) {
	kid, ok := strings.CutSuffix(dataKey, dataKeySuffix)
	return kid, ok && kid != ""
}

// IssuerLabelValue is the value of IssuerLabel for an issuer: its name, or for names
// longer than a label value may be, a prefix and a hash of the name. Map a key Secret
// back to its issuer through its owner reference when the name may be that long.
func IssuerLabelValue(issuer string) string {
	if len(issuer) <= 63 {
		return issuer
	}
	sum := sha256.Sum256([]byte(issuer))
	// A label value must end with an alphanumeric character, which hex digits are.
	return issuer[:63-17] + "-" + hex.EncodeToString(sum[:8])
}
