package token

import (
	"errors"
	"strconv"
)

// Reason says why a token was refused. Callers map reasons to HTTP statuses,
// metrics labels and condition messages, so the values are stable, CamelCase
// words.
type Reason string

// Reasons a token is refused. Each refusal rule of Verify, ParseOpaque and
// VerifyOpaque has its own reason so that a refusal can be explained without
// showing the token.
const (
	// ReasonMalformed: not a token of the expected structure or encoding.
	ReasonMalformed Reason = "Malformed"
	// ReasonTooLarge: longer than MaxTokenLength; refused before any parsing.
	ReasonTooLarge Reason = "TooLarge"
	// ReasonAlgNone: the header asks for the unsigned "none" algorithm.
	ReasonAlgNone Reason = "AlgNone"
	// ReasonAlgMismatch: the header's alg is not the algorithm of the key
	// named by kid (e.g. HS256 with the public key as HMAC secret).
	ReasonAlgMismatch Reason = "AlgMismatch"
	// ReasonUnknownKey: no key in the key set has the header's kid.
	ReasonUnknownKey Reason = "UnknownKey"
	// ReasonForbiddenHeader: the header carries jku, x5u, jwk, x5c or crit.
	ReasonForbiddenHeader Reason = "ForbiddenHeader"
	// ReasonMissingExpiry: the claims have no exp.
	ReasonMissingExpiry Reason = "MissingExpiry"
	// ReasonExpired: exp is in the past, beyond the leeway.
	ReasonExpired Reason = "Expired"
	// ReasonNotYetValid: nbf is in the future, beyond the leeway.
	ReasonNotYetValid Reason = "NotYetValid"
	// ReasonWrongIssuer: iss is not the expected issuer.
	ReasonWrongIssuer Reason = "WrongIssuer"
	// ReasonWrongAudience: aud holds none of the expected audiences.
	ReasonWrongAudience Reason = "WrongAudience"
	// ReasonBadSignature: the signature does not verify with the key.
	ReasonBadSignature Reason = "BadSignature"
	// ReasonBadChecksum: an opaque token whose CRC32 checksum does not match,
	// typically a typo or a truncated copy.
	ReasonBadChecksum Reason = "BadChecksum"
	// ReasonUnknownToken: an opaque token whose ID is unknown or whose secret
	// matches none of the stored hashes.
	ReasonUnknownToken Reason = "UnknownToken"
)

// Error is the error returned for every refused token. Detail is written by
// this package and never contains token material (no segment, secret or
// signature), so the whole error is safe to log and to return to clients.
type Error struct {
	Reason Reason
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Detail == "" {
		return "token refused: " + string(e.Reason)
	}
	return "token refused: " + string(e.Reason) + ": " + e.Detail
}

// ReasonOf returns the Reason of err: "" for nil, ReasonMalformed for errors
// that did not come from this package, so that an unexpected error is never
// mistaken for success.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

func refuse(r Reason, detail string) *Error {
	return &Error{Reason: r, Detail: detail}
}

// quoteShort quotes an attacker-controlled header value for an error detail,
// cut short so that a crafted header cannot smuggle a whole token into logs.
func quoteShort(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "..."
	}
	return strconv.Quote(s)
}
