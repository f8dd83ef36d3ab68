package validatorapi

import "testing"

// TestDescribe: every refusal a client can get has its own sentence, and one without
// gets the general sentence rather than nothing.
func TestDescribe(t *testing.T) {
	for _, r := range []string{
		ReasonMissing, ReasonTenantMismatch, ReasonSubTenantMismatch, ReasonInsufficientRole, ReasonTokenRateLimited,
		ReasonClientRateLimited, ReasonUnavailable, ReasonRevoked, ReasonRetired, ReasonUnknownIssuer, ReasonClaimsMismatch, ReasonDigestMismatch, ReasonConflict,
		ReasonPolicy, ReasonMalformed, ReasonTooLarge, ReasonAlgNone, ReasonAlgMismatch, ReasonUnknownKey,
		ReasonForbiddenHeader, ReasonMissingExpiry, ReasonExpired, ReasonNotYetValid, ReasonWrongIssuer,
		ReasonWrongAudience, ReasonBadSignature, ReasonBadChecksum, ReasonUnknownToken,
	} {
		if d := Describe(r); d == "" || d == Describe("NoSuchReason") {
			t.Errorf("Describe(%s) = %q, want a sentence of its own", r, d)
		}
	}
	if d := Describe("NoSuchReason"); d != "the token is not valid" {
		t.Errorf("Describe of an unknown reason = %q", d)
	}
}
