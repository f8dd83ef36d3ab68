package apitoken

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// The status as the write-ahead log of minting: which tokens it lists and how a new
// one enters it. Pure functions of the APIToken and the time, table-tested in
// wal_test.go.

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

// dropUnpublished keeps the previous tokens that can still verify: opaque tokens,
// and JWTs whose signing key the issuer still publishes. A JWT whose key was lost or
// withdrawn as compromised is refused by every verifier, so it is not kept as if its
// grace still meant something.
func dropUnpublished(prev []tokensv1.IssuedToken, keys token.KeySet) []tokensv1.IssuedToken {
	var out []tokensv1.IssuedToken
	for _, p := range prev {
		if p.Format == tokensv1.FormatJWT {
			if keys == nil {
				continue
			}
			if _, _, ok := keys.PublicKey(p.SigningKeyID); !ok {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// listMinted enters issued in tok's status as the current token, the entry mint
// writes before the Secret. The token it replaces stays listed as previous until its
// retireAt (want.retireAt: after the grace period, never after its own expiry; not at
// all when that has passed), unless the pass serves a rotate request that asks to
// retire the previous tokens, as for a leaked token: then every previous token goes
// at once. The list keeps the newest maxPreviousTokens. A replacement counts as a
// rotation, and the rotate request, if any, is recorded as served. It reports whether
// a token was replaced and whether the previous tokens were all retired.
func listMinted(tok *tokensv1.APIToken, issued *tokensv1.IssuedToken, want wanted, secretName string, now time.Time) (rotated, retiredAll bool) {
	st := &tok.Status
	if old := st.Current; old != nil {
		rotated = true
		retiredAll = rotationRequested(&mintInput{token: tok}) != nil && tok.Annotations[tokensv1.RetirePreviousAnnotation] == "true"
		if retiredAll {
			// A leaked token: every previous one goes now, without grace.
			st.PreviousTokens = nil
		} else if at := want.retireAt(old, now); at.After(now) {
			prev := *old.DeepCopy()
			prev.RetireAt = &metav1.Time{Time: at}
			st.PreviousTokens = append(st.PreviousTokens, prev)
		}
		if n := len(st.PreviousTokens); n > maxPreviousTokens {
			st.PreviousTokens = st.PreviousTokens[n-maxPreviousTokens:]
		}
		st.Rotations++
	}
	st.Current = issued
	st.SecretName = secretName
	if v := tok.Annotations[tokensv1.RotateAnnotation]; v != "" {
		st.LastRotateRequest = v
	}
	return rotated, retiredAll
}
