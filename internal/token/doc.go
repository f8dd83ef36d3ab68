// Package token mints and checks the API tokens of the operator: signed JWTs
// (ES256, EdDSA, RS256) and opaque tokens of the form
// <prefix>_<tokenID>_<secret><checksum>.
//
// It is pure Go with no Kubernetes imports so that the manager, the admission
// webhook, the validator, the kubectl plugin and the workload library all share
// one implementation of the token formats and of the refusal rules.
//
// Nothing in this package ever puts a token, a secret or a private key into an
// error string: errors carry a typed Reason and a short Detail that is safe to
// log.
package token
