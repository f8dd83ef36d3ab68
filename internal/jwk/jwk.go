// Package jwk converts public keys between the API's form (the JWKS a
// ClusterTokenIssuer publishes in its status) and the token package's, which parses
// and checks them. The controllers, the validator's index and the kubectl plugin all
// convert through it. It holds public keys only, so the validator may import it: it
// must never import keystore, which reads private keys.
package jwk

import (
	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// ToToken converts a published key set for the token package. A nil set, as on an
// issuer that has published nothing yet, converts to an empty one.
func ToToken(set *tokensv1.JSONWebKeySet) token.JWKS {
	out := token.JWKS{Keys: []token.JWK{}}
	if set == nil {
		return out
	}
	for _, k := range set.Keys {
		out.Keys = append(out.Keys, token.JWK{Kty: k.Kty, Crv: k.Crv, X: k.X, Y: k.Y, N: k.N, E: k.E, Kid: k.Kid, Alg: k.Alg, Use: k.Use})
	}
	return out
}

// FromToken is the API form of a public key, as the issuer controller publishes it.
func FromToken(k token.JWK) tokensv1.JSONWebKey {
	return tokensv1.JSONWebKey{Kty: k.Kty, Kid: k.Kid, Alg: k.Alg, Use: k.Use, Crv: k.Crv, X: k.X, Y: k.Y, N: k.N, E: k.E}
}
