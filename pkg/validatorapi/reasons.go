package validatorapi

import "github.com/apitoken-operator/apitoken-operator/internal/token"

// Reasons of decisions: stable CamelCase words, for clients to branch on and for
// metrics labels. A refused token carries the token package's reason for what is
// wrong with the token itself, or one of the validator's for what the cluster knows
// about it.
const (
	ReasonAllowed = "Allowed"

	// Decisions about the request rather than the token.
	ReasonMissing           = "Missing"
	ReasonTenantMismatch    = "TenantMismatch"
	ReasonSubTenantMismatch = "SubTenantMismatch"
	ReasonInsufficientRole  = "InsufficientRole"
	// ReasonTenantRequired refuses a requirement without a tenant for a token that
	// is a member of several tenants: which membership decides is not known.
	ReasonTenantRequired    = "TenantRequired"
	ReasonTokenRateLimited  = "TokenRateLimited"
	ReasonClientRateLimited = "ClientRateLimited"
	ReasonBadRequirement    = "BadRequirement"
	ReasonBadRequest        = "BadRequest"
	// ReasonUnavailable: the token could not be checked (the validator or the JWKS
	// is unreachable); the request is refused, never let through.
	ReasonUnavailable = "Unavailable"

	// What the cluster knows about a token that verifies.
	ReasonRevoked        = "Revoked"
	ReasonRetired        = "Retired"
	ReasonUnknownIssuer  = "UnknownIssuer"
	ReasonClaimsMismatch = "ClaimsMismatch"
	ReasonDigestMismatch = "DigestMismatch"
	ReasonConflict       = "Conflict"
	ReasonPolicy         = "PolicyViolation"

	// What is wrong with the token itself.
	ReasonMalformed       = string(token.ReasonMalformed)
	ReasonTooLarge        = string(token.ReasonTooLarge)
	ReasonAlgNone         = string(token.ReasonAlgNone)
	ReasonAlgMismatch     = string(token.ReasonAlgMismatch)
	ReasonUnknownKey      = string(token.ReasonUnknownKey)
	ReasonForbiddenHeader = string(token.ReasonForbiddenHeader)
	ReasonMissingExpiry   = string(token.ReasonMissingExpiry)
	ReasonExpired         = string(token.ReasonExpired)
	ReasonNotYetValid     = string(token.ReasonNotYetValid)
	ReasonWrongIssuer     = string(token.ReasonWrongIssuer)
	ReasonWrongAudience   = string(token.ReasonWrongAudience)
	ReasonBadSignature    = string(token.ReasonBadSignature)
	ReasonBadChecksum     = string(token.ReasonBadChecksum)
	ReasonUnknownToken    = string(token.ReasonUnknownToken)
)

// descriptions are fixed sentences: they never quote the token or the request, so
// they are safe to send to any client and to put in a WWW-Authenticate challenge.
var descriptions = map[string]string{
	ReasonMissing:           "no token in the request",
	ReasonTenantMismatch:    "not found",
	ReasonSubTenantMismatch: "not found",
	ReasonInsufficientRole:  "the token's role does not grant the required role",
	ReasonTenantRequired:    "the token is a member of several tenants: the request must name its tenant",
	ReasonTokenRateLimited:  "too many requests with this token",
	ReasonClientRateLimited: "too many failed attempts from this client",
	ReasonUnavailable:       "the token cannot be checked now",

	ReasonRevoked:        "the token was revoked",
	ReasonRetired:        "the token was replaced and its grace period is over",
	ReasonUnknownIssuer:  "the token's issuer is unknown",
	ReasonClaimsMismatch: "the token's claims do not match its record",
	ReasonDigestMismatch: "the token is not the one its record lists",
	ReasonConflict:       "the token is not unique",
	ReasonPolicy:         "the issuer's policy no longer allows this token",

	ReasonMalformed:       "the token is malformed",
	ReasonTooLarge:        "the token is too large",
	ReasonAlgNone:         "unsigned tokens are not accepted",
	ReasonAlgMismatch:     "the token's algorithm does not match its key",
	ReasonUnknownKey:      "the token's signing key is unknown",
	ReasonForbiddenHeader: "the token's header is not accepted",
	ReasonMissingExpiry:   "the token has no expiry",
	ReasonExpired:         "the token expired",
	ReasonNotYetValid:     "the token is not valid yet",
	ReasonWrongIssuer:     "the token's issuer is not accepted",
	ReasonWrongAudience:   "the token's audience is not accepted",
	ReasonBadSignature:    "the token's signature is invalid",
	ReasonBadChecksum:     "the token is mistyped or truncated",
	ReasonUnknownToken:    "the token is unknown or was revoked",
}

// Describe returns the sentence a client may be told for a refusal with reason. A
// reason without its own sentence gets a general one, never an empty string.
func Describe(reason string) string {
	if d, ok := descriptions[reason]; ok {
		return d
	}
	return "the token is not valid"
}
