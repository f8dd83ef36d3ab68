package apitoken

import (
	"time"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// maxPreviousTokens is the API's bound on status.previousTokens.
const maxPreviousTokens = 16

// listed reports whether tok's status lists the token id.
func listed(tok *tokensv1.APIToken, id string) bool {
	if c := tok.Status.Current; c != nil && c.TokenID == id {
		return true
	}
	for _, p := range tok.Status.PreviousTokens {
		if p.TokenID == id {
			return true
		}
	}
	return false
}

// dropRetired keeps the previous tokens whose retireAt is still ahead.
func dropRetired(prev []tokensv1.IssuedToken, now time.Time) []tokensv1.IssuedToken {
	var out []tokensv1.IssuedToken
	for _, p := range prev {
		if p.RetireAt != nil && now.Before(p.RetireAt.Time) {
			out = append(out, p)
		}
	}
	return out
}
