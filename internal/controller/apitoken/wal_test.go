package apitoken

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// TestListMinted: how a minted token enters the status, the controller's central
// rule: the token it replaces, the previous tokens, the cap and the counters.
func TestListMinted(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	issuedToken := func(id string, issued, expires time.Duration) tokensv1.IssuedToken {
		return tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, IssuedAt: *at(issued), ExpiresAt: *at(expires)}
	}
	previous := func(id string, retire time.Duration) tokensv1.IssuedToken {
		p := issuedToken(id, -4*time.Hour, time.Hour)
		p.RetireAt = at(retire)
		return p
	}
	// old is the current token before the mint: issued 2h ago, expiring in 1h.
	old := issuedToken("old", -2*time.Hour, time.Hour)
	minted := issuedToken("new", 0, 3*time.Hour)
	full := make([]tokensv1.IssuedToken, maxPreviousTokens)
	for i := range full {
		full[i] = previous(fmt.Sprintf("p%02d", i), time.Hour)
	}

	tests := []struct {
		name        string
		status      tokensv1.APITokenStatus
		annotations map[string]string
		want        wanted
		// wantPrevious are the IDs and retireAt (from now) of status.previousTokens.
		wantPrevious   []string
		wantRetireAt   []time.Duration
		wantRotations  int64
		wantRotated    bool
		wantRetiredAll bool
		wantLastReq    string
	}{
		{
			name: "first mint",
		},
		{
			name:        "first mint on a rotate request records it",
			annotations: map[string]string{tokensv1.RotateAnnotation: "now"},
			wantLastReq: "now",
		},
		{
			name:          "rotation, default grace: the old token stays until its expiry",
			status:        tokensv1.APITokenStatus{Current: &old},
			wantPrevious:  []string{"old"},
			wantRetireAt:  []time.Duration{time.Hour},
			wantRotations: 1, wantRotated: true,
		},
		{
			name:          "rotation with gracePeriod",
			status:        tokensv1.APITokenStatus{Current: &old},
			want:          wanted{gracePeriod: 10 * time.Minute},
			wantPrevious:  []string{"old"},
			wantRetireAt:  []time.Duration{10 * time.Minute},
			wantRotations: 1, wantRotated: true,
		},
		{
			name:          "gracePeriod past the old token's expiry is cut",
			status:        tokensv1.APITokenStatus{Current: &old},
			want:          wanted{gracePeriod: 2 * time.Hour},
			wantPrevious:  []string{"old"},
			wantRetireAt:  []time.Duration{time.Hour},
			wantRotations: 1, wantRotated: true,
		},
		{
			name: "an expired token is not kept",
			status: tokensv1.APITokenStatus{Current: func() *tokensv1.IssuedToken {
				t := issuedToken("old", -3*time.Hour, 0)
				return &t
			}()},
			wantRotations: 1, wantRotated: true,
		},
		{
			name:          "earlier previous tokens stay, the old one goes last",
			status:        tokensv1.APITokenStatus{Current: &old, PreviousTokens: []tokensv1.IssuedToken{previous("p1", 5*time.Minute)}, Rotations: 4},
			wantPrevious:  []string{"p1", "old"},
			wantRetireAt:  []time.Duration{5 * time.Minute, time.Hour},
			wantRotations: 5, wantRotated: true,
		},
		{
			name:          "retire-previous on a new rotate request drops every previous token",
			status:        tokensv1.APITokenStatus{Current: &old, PreviousTokens: []tokensv1.IssuedToken{previous("p1", time.Hour)}, LastRotateRequest: "1", Rotations: 1},
			annotations:   map[string]string{tokensv1.RotateAnnotation: "2", tokensv1.RetirePreviousAnnotation: "true"},
			wantRotations: 2, wantRotated: true, wantRetiredAll: true,
			wantLastReq: "2",
		},
		{
			name:          "retire-previous on a rotate request already served retires nothing",
			status:        tokensv1.APITokenStatus{Current: &old, LastRotateRequest: "2", Rotations: 2},
			annotations:   map[string]string{tokensv1.RotateAnnotation: "2", tokensv1.RetirePreviousAnnotation: "true"},
			wantPrevious:  []string{"old"},
			wantRetireAt:  []time.Duration{time.Hour},
			wantRotations: 3, wantRotated: true,
			wantLastReq: "2",
		},
		{
			name:   "the list keeps the newest maxPreviousTokens",
			status: tokensv1.APITokenStatus{Current: &old, PreviousTokens: full, Rotations: 16},
			wantPrevious: func() []string {
				var ids []string
				for _, p := range full[1:] {
					ids = append(ids, p.TokenID)
				}
				return append(ids, "old")
			}(),
			wantRetireAt: func() []time.Duration {
				d := make([]time.Duration, maxPreviousTokens)
				for i := range d {
					d[i] = time.Hour
				}
				return d
			}(),
			wantRotations: 17, wantRotated: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			tok := &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Annotations: tt.annotations}, Status: *tt.status.DeepCopy()}
			issued := minted.DeepCopy()
			rotated, retiredAll := listMinted(tok, issued, tt.want, "the-secret", now)

			g.Expect(rotated).To(Equal(tt.wantRotated), "rotated")
			g.Expect(retiredAll).To(Equal(tt.wantRetiredAll), "retiredAll")
			st := tok.Status
			g.Expect(st.Current).To(BeIdenticalTo(issued))
			g.Expect(st.SecretName).To(Equal("the-secret"))
			g.Expect(st.Rotations).To(Equal(tt.wantRotations))
			g.Expect(st.LastRotateRequest).To(Equal(tt.wantLastReq))
			var ids []string
			var retire []time.Duration
			for _, p := range st.PreviousTokens {
				ids = append(ids, p.TokenID)
				g.Expect(p.RetireAt).NotTo(BeNil(), "previous token %s has no retireAt", p.TokenID)
				retire = append(retire, p.RetireAt.Sub(now))
			}
			g.Expect(ids).To(Equal(tt.wantPrevious))
			g.Expect(retire).To(Equal(tt.wantRetireAt))
			g.Expect(len(st.PreviousTokens)).To(BeNumerically("<=", maxPreviousTokens))
			if tt.status.Current != nil && len(ids) > 0 && ids[len(ids)-1] == tt.status.Current.TokenID {
				kept := st.PreviousTokens[len(ids)-1]
				g.Expect(kept.ExpiresAt).To(Equal(tt.status.Current.ExpiresAt), "the old token is kept as it was minted")
			}
		})
	}
}

// TestDropUnpublished: previous JWTs whose key left the JWKS go; opaque tokens and
// JWTs whose key is published stay.
func TestDropUnpublished(t *testing.T) {
	g := NewWithT(t)
	kept, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	gone, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	keys, err := token.NewKeySet(token.JWKS{Keys: []token.JWK{kept.PublicJWK()}})
	g.Expect(err).NotTo(HaveOccurred())
	prev := []tokensv1.IssuedToken{
		{TokenID: "a", Format: tokensv1.FormatJWT, SigningKeyID: kept.ID},
		{TokenID: "b", Format: tokensv1.FormatJWT, SigningKeyID: gone.ID},
		{TokenID: "c", Format: tokensv1.FormatOpaque},
	}
	ids := func(its []tokensv1.IssuedToken) []string {
		var out []string
		for _, it := range its {
			out = append(out, it.TokenID)
		}
		return out
	}
	g.Expect(ids(dropUnpublished(prev, keys))).To(Equal([]string{"a", "c"}))
	g.Expect(ids(dropUnpublished(prev, nil))).To(Equal([]string{"c"}), "no JWKS verifies no JWT")
	g.Expect(dropUnpublished(nil, keys)).To(BeEmpty())
}
