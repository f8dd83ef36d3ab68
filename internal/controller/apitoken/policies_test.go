package apitoken

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// policyWorld is a token minted at t0 with a 3h lifetime and the Secret holding it,
// built without Kubernetes.
type policyWorld struct {
	t0        time.Time
	key       *token.SigningKey
	keys      token.KeySet
	jwt       string
	opaque    token.OpaqueToken
	jwtCur    tokensv1.IssuedToken
	opaqueCur tokensv1.IssuedToken
	want      wanted
}

const testIssuerURL = "https://tokens.example.test/policy"

func newPolicyWorld(t *testing.T) *policyWorld {
	g := NewWithT(t)
	w := &policyWorld{t0: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	var err error
	w.key, err = token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	w.keys, err = token.NewKeySet(token.JWKS{Keys: []token.JWK{w.key.PublicJWK()}})
	g.Expect(err).NotTo(HaveOccurred())
	claims := tokensv1.TokenClaims{Tenant: "acme", Role: "editor", Scopes: []string{"a", "b"}, Audiences: []string{"api"}}
	exp := w.t0.Add(3 * time.Hour)
	id := token.NewTokenID()
	w.jwt, err = token.MintJWT(w.key, token.Claims{Issuer: testIssuerURL, Audience: claims.Audiences, IssuedAt: w.t0, NotBefore: w.t0, ExpiresAt: exp, ID: id, Tenant: "acme", Role: "editor", Scopes: claims.Scopes})
	g.Expect(err).NotTo(HaveOccurred())
	w.jwtCur = tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, SigningKeyID: w.key.ID, Claims: claims, IssuedAt: metav1.NewTime(w.t0), ExpiresAt: metav1.NewTime(exp)}
	oid := token.NewTokenID()
	w.opaque, err = token.MintOpaque("apt", oid)
	g.Expect(err).NotTo(HaveOccurred())
	w.opaqueCur = tokensv1.IssuedToken{TokenID: oid, Format: tokensv1.FormatOpaque, TokenHash: w.opaque.Hash, Claims: claims, IssuedAt: metav1.NewTime(w.t0), ExpiresAt: metav1.NewTime(exp)}
	w.want = wanted{format: tokensv1.FormatJWT, claims: claims, lifetime: 3 * time.Hour, autoRotate: true}
	return w
}

// input is a JWT world at t0+1h where nothing needs a mint.
func (w *policyWorld) input() *mintInput {
	cur := w.jwtCur
	return &mintInput{
		now:        w.t0.Add(time.Hour),
		token:      &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "t"}, Status: tokensv1.APITokenStatus{Current: &cur}},
		want:       w.want,
		issuerURL:  testIssuerURL,
		keys:       w.keys,
		secretName: "t",
		secret:     secretOf(w.jwt, &cur),
	}
}

func secretOf(value string, cur *tokensv1.IssuedToken) *corev1.Secret {
	return &corev1.Secret{Data: secretData(value, cur)}
}

// cachedSecretOf is secretOf as the manager's cache keeps it: through the cache's
// transform of token Secrets.
func cachedSecretOf(value string, cur *tokensv1.IssuedToken) *corev1.Secret {
	sec := secretOf(value, cur)
	sec.Type = tokensv1.TokenSecretType
	for obj, by := range controller.CacheOptions().ByObject {
		if _, ok := obj.(*corev1.Secret); ok {
			out, err := by.Transform(sec)
			if err != nil {
				panic(err)
			}
			// What a read through the cache hands out.
			got, err := controller.Unpack(out.(*controller.Packed))
			if err != nil {
				panic(err)
			}
			return got.(*corev1.Secret)
		}
	}
	panic("the cache options transform no Secrets")
}

func TestMintPolicies(t *testing.T) {
	w := newPolicyWorld(t)
	otherKey, err := token.GenerateKey(token.ES256)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	otherKeys, _ := token.NewKeySet(token.JWKS{Keys: []token.JWK{otherKey.PublicJWK()}})

	tests := []struct {
		name   string
		policy mintPolicy
		edit   func(in *mintInput)
		fires  bool
	}{
		{"noCurrentToken: minted", noCurrentToken, nil, false},
		{"noCurrentToken: none yet", noCurrentToken, func(in *mintInput) { in.token.Status.Current = nil }, true},

		{"secretMissing: present", secretMissing, nil, false},
		{"secretMissing: missing", secretMissing, func(in *mintInput) { in.secret = nil }, true},

		{"signingKeyGone: key published", signingKeyGone, nil, false},
		{"signingKeyGone: key gone", signingKeyGone, func(in *mintInput) { in.keys = otherKeys }, true},
		{"signingKeyGone: no JWKS", signingKeyGone, func(in *mintInput) { in.keys = nil }, true},
		{"signingKeyGone: opaque tokens need no key", signingKeyGone, func(in *mintInput) {
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.keys = otherKeys
		}, false},

		{"secretDoesNotHoldCurrent: JWT holds", secretDoesNotHoldCurrent, nil, false},
		{"secretDoesNotHoldCurrent: holds even past expiry", secretDoesNotHoldCurrent, func(in *mintInput) { in.now = w.t0.Add(10 * time.Hour) }, false},
		{"secretDoesNotHoldCurrent: other tokenID", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.secret.Data[tokensv1.SecretKeyTokenID] = []byte(token.NewTokenID())
		}, true},
		{"secretDoesNotHoldCurrent: tokenID edited to match another JWT", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.TokenID = token.NewTokenID()
			in.secret.Data[tokensv1.SecretKeyTokenID] = []byte(in.token.Status.Current.TokenID)
		}, true},
		{"secretDoesNotHoldCurrent: JWT edited", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.secret.Data[tokensv1.SecretKeyToken] = append(in.secret.Data[tokensv1.SecretKeyToken], 'x')
		}, true},
		{"secretDoesNotHoldCurrent: JWT of another issuer URL", secretDoesNotHoldCurrent, func(in *mintInput) { in.issuerURL = "https://elsewhere.test" }, true},
		{"secretDoesNotHoldCurrent: JWT with its digest holds", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.Digest = token.Digest(w.jwt)
		}, false},
		{"secretDoesNotHoldCurrent: JWT re-signed with the real key, same jti, another audience", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.Digest = token.Digest(w.jwt)
			clone, err := token.MintJWT(w.key, token.Claims{Issuer: testIssuerURL, Audience: []string{"kubernetes"}, IssuedAt: w.t0, NotBefore: w.t0,
				ExpiresAt: in.token.Status.Current.ExpiresAt.Time, ID: in.token.Status.Current.TokenID, Tenant: "acme", Role: "editor", Scopes: []string{"a", "b"}})
			if err != nil {
				panic(err)
			}
			in.secret.Data[tokensv1.SecretKeyToken] = []byte(clone)
		}, true},
		{"secretDoesNotHoldCurrent: cached JWT with its digest holds", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.Digest = token.Digest(w.jwt)
			in.secret = cachedSecretOf(w.jwt, in.token.Status.Current)
		}, false},
		{"secretDoesNotHoldCurrent: cached JWT edited", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.Digest = token.Digest(w.jwt)
			in.secret = cachedSecretOf(w.jwt[:len(w.jwt)-2]+"AA", in.token.Status.Current)
		}, true},
		{"secretDoesNotHoldCurrent: cached JWT of another issuer URL", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current.Digest = token.Digest(w.jwt)
			in.secret = cachedSecretOf(w.jwt, in.token.Status.Current)
			in.issuerURL = "https://elsewhere.test"
		}, true},
		{"secretDoesNotHoldCurrent: cached JWT, no digest in the status: look past the cache", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.secret = cachedSecretOf(w.jwt, in.token.Status.Current)
		}, true},
		{"secretDoesNotHoldCurrent: cached JWT where opaque is current", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.secret = cachedSecretOf(w.jwt, &w.opaqueCur)
		}, true},
		{"secretDoesNotHoldCurrent: cached opaque holds", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.secret = cachedSecretOf(w.opaque.Token, &w.opaqueCur)
		}, false},
		{"secretDoesNotHoldCurrent: opaque holds", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.secret = secretOf(w.opaque.Token, &w.opaqueCur)
		}, false},
		{"secretDoesNotHoldCurrent: opaque hash differs", secretDoesNotHoldCurrent, func(in *mintInput) {
			other, _ := token.MintOpaque("apt", w.opaqueCur.TokenID)
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.secret = secretOf(other.Token, &w.opaqueCur)
		}, true},
		{"secretDoesNotHoldCurrent: JWT where opaque is current", secretDoesNotHoldCurrent, func(in *mintInput) {
			in.token.Status.Current = w.opaqueCur.DeepCopy()
			in.secret = secretOf(w.jwt, &w.opaqueCur)
		}, true},

		{"claimsChanged: same (scope order ignored)", claimsChanged, func(in *mintInput) { in.token.Status.Current.Claims.Scopes = []string{"b", "a"} }, false},
		{"claimsChanged: tenant", claimsChanged, func(in *mintInput) { in.want.claims.Tenant = "other" }, true},
		{"claimsChanged: subTenant", claimsChanged, func(in *mintInput) { in.want.claims.SubTenant = "team" }, true},
		{"claimsChanged: role", claimsChanged, func(in *mintInput) { in.want.claims.Role = "admin" }, true},
		{"claimsChanged: memberships", claimsChanged, func(in *mintInput) {
			in.want.claims.Memberships = []tokensv1.Membership{{Tenant: "acme", Role: "editor"}}
		}, true},
		{"claimsChanged: same memberships, in another order", claimsChanged, func(in *mintInput) {
			in.want.claims.Memberships = []tokensv1.Membership{{Tenant: "a", Role: "r"}, {Tenant: "b", Role: "r"}}
			in.token.Status.Current.Claims.Memberships = []tokensv1.Membership{{Tenant: "b", Role: "r"}, {Tenant: "a", Role: "r"}}
		}, false},
		{"claimsChanged: scopes", claimsChanged, func(in *mintInput) { in.want.claims.Scopes = []string{"a"} }, true},
		{"claimsChanged: audiences", claimsChanged, func(in *mintInput) { in.want.claims.Audiences = []string{"api", "x"} }, true},
		{"claimsChanged: format", claimsChanged, func(in *mintInput) { in.want.format = tokensv1.FormatOpaque }, true},
		{"claimsChanged: lifetime", claimsChanged, func(in *mintInput) { in.want.lifetime = 4 * time.Hour }, true},

		{"rotationRequested: no annotation", rotationRequested, nil, false},
		{"rotationRequested: new value", rotationRequested, func(in *mintInput) {
			in.token.Annotations = map[string]string{tokensv1.RotateAnnotation: "1"}
		}, true},
		{"rotationRequested: served value", rotationRequested, func(in *mintInput) {
			in.token.Annotations = map[string]string{tokensv1.RotateAnnotation: "1"}
			in.token.Status.LastRotateRequest = "1"
		}, false},

		{"nearingRenewal: before 2/3 of lifetime, less the jitter", nearingRenewal, func(in *mintInput) {
			in.now = w.t0.Add(2*time.Hour - renewalJitter(w.jwtCur.TokenID, time.Hour) - time.Second)
		}, false},
		{"nearingRenewal: at 2/3 of lifetime, less the jitter", nearingRenewal, func(in *mintInput) {
			in.now = w.t0.Add(2*time.Hour - renewalJitter(w.jwtCur.TokenID, time.Hour))
		}, true},
		{"nearingRenewal: renewBefore", nearingRenewal, func(in *mintInput) {
			in.want.renewBefore = 30 * time.Minute
			in.now = w.t0.Add(150*time.Minute - renewalJitter(w.jwtCur.TokenID, 30*time.Minute) - time.Second)
		}, false},
		{"nearingRenewal: disabled", nearingRenewal, func(in *mintInput) {
			in.want.autoRotate = false
			in.now = w.t0.Add(5 * time.Hour)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := w.input()
			if tt.edit != nil {
				tt.edit(in)
			}
			got := tt.policy(in)
			NewWithT(t).Expect(got != nil).To(Equal(tt.fires), "trigger: %+v", got)
		})
	}
}

func TestMustMint(t *testing.T) {
	w := newPolicyWorld(t)
	tests := []struct {
		name   string
		edit   func(in *mintInput)
		reason string // "" for no mint
	}{
		{"all well", nil, ""},
		{"first token", func(in *mintInput) { in.token.Status.Current, in.secret = nil, nil }, tokensv1.ReasonMinted},
		{"secret deleted", func(in *mintInput) { in.secret = nil }, tokensv1.ReasonSecretRepaired},
		{"renewal due", func(in *mintInput) { in.now = w.t0.Add(2 * time.Hour) }, tokensv1.ReasonRotated},
		{"disabled and expired: no mint", func(in *mintInput) {
			in.want.autoRotate = false
			in.now = w.t0.Add(3 * time.Hour)
		}, ""},
		{"disabled and expired, Secret deleted: no mint", func(in *mintInput) {
			in.want.autoRotate = false
			in.now = w.t0.Add(3 * time.Hour)
			in.secret = nil
		}, ""},
		{"disabled and expired, rotation requested: mint", func(in *mintInput) {
			in.want.autoRotate = false
			in.now = w.t0.Add(3 * time.Hour)
			in.token.Annotations = map[string]string{tokensv1.RotateAnnotation: "now"}
		}, tokensv1.ReasonRotated},
		{"disabled and expired, role changed: mint", func(in *mintInput) {
			in.want.autoRotate = false
			in.now = w.t0.Add(3 * time.Hour)
			in.want.claims.Role = "admin"
		}, tokensv1.ReasonRotated},
		{"disabled, not expired, Secret deleted: mint", func(in *mintInput) {
			in.want.autoRotate = false
			in.secret = nil
		}, tokensv1.ReasonSecretRepaired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := w.input()
			if tt.edit != nil {
				tt.edit(in)
			}
			got := mustMint(in)
			if tt.reason == "" {
				NewWithT(t).Expect(got).To(BeNil())
				return
			}
			NewWithT(t).Expect(got).NotTo(BeNil())
			NewWithT(t).Expect(got.reason).To(Equal(tt.reason))
		})
	}
}

func TestWantedTimes(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := &tokensv1.IssuedToken{TokenID: "01JD3ZQ7M8X4VNK2H5R9T6W0AB", IssuedAt: metav1.NewTime(t0), ExpiresAt: metav1.NewTime(t0.Add(3 * time.Hour))}
	tests := []struct {
		name string
		w    wanted
		// renewal is renewBefore before expiry; the token's jitter of before brings it forward.
		renewal     time.Time
		before      time.Duration
		retireAt    time.Time // rotated out at t0+2h
		warningsLen int
	}{
		{"defaults: renew at 2/3, grace until expiry", wanted{}, t0.Add(2 * time.Hour), time.Hour, t0.Add(3 * time.Hour), 0},
		{"renewBefore and gracePeriod", wanted{renewBefore: 30 * time.Minute, gracePeriod: 10 * time.Minute}, t0.Add(150 * time.Minute), 30 * time.Minute, t0.Add(130 * time.Minute), 0},
		{"gracePeriod never past expiry", wanted{gracePeriod: 2 * time.Hour}, t0.Add(2 * time.Hour), time.Hour, t0.Add(3 * time.Hour), 0},
		{"renewBefore too long falls back", wanted{renewBefore: 4 * time.Hour}, t0.Add(2 * time.Hour), time.Hour, t0.Add(3 * time.Hour), 0},
		{"short settings warn", wanted{renewBefore: time.Minute, gracePeriod: 30 * time.Second}, t0.Add(179 * time.Minute), time.Minute, t0.Add(2*time.Hour + 30*time.Second), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(tt.w.renewalTime(cur)).To(BeTemporally("==", tt.renewal.Add(-renewalJitter(cur.TokenID, tt.before))))
			g.Expect(tt.w.retireAt(cur, t0.Add(2*time.Hour))).To(BeTemporally("==", tt.retireAt))
			g.Expect(policy.RotationWarnings(field.NewPath("rotation"), tt.w.renewBefore, tt.w.gracePeriod)).To(HaveLen(tt.warningsLen))
		})
	}
}

// TestRenewalJitter: a token's jitter is a whole number of seconds below a tenth of
// renewBefore, the same on every call, and spread evenly over that window by the
// token ID.
func TestRenewalJitter(t *testing.T) {
	// Pinned: a change of the hash moves the renewal time, and so rewrites the
	// status, of every token there is.
	pinned := []struct {
		id     string
		before time.Duration
		want   time.Duration
	}{
		{"01JD3ZQ7M8X4VNK2H5R9T6W0AB", time.Hour, 5*time.Minute + 5*time.Second},
		{"01JD3ZQ7M8X4VNK2H5R9T6W0AC", time.Hour, 3*time.Minute + 34*time.Second},
		{"01JD3ZQ7M8X4VNK2H5R9T6W0AB", 240 * time.Hour, 2*time.Hour + 23*time.Minute + 5*time.Second},
		{"01JD3ZQ7M8X4VNK2H5R9T6W0AB", 20 * time.Second, time.Second},
		{"01JD3ZQ7M8X4VNK2H5R9T6W0AB", 9 * time.Second, 0}, // a window under a second: none
		{"", time.Hour, time.Minute + 17*time.Second},
	}
	for _, p := range pinned {
		if got := renewalJitter(p.id, p.before); got != p.want {
			t.Errorf("renewalJitter(%q, %s) = %s, want %s", p.id, p.before, got, p.want)
		}
	}

	for _, before := range []time.Duration{20 * time.Second, time.Hour, 240 * time.Hour} {
		window := before / renewalSpread
		const n = 10000
		buckets := min(10, int(window/time.Second))
		counts := make([]int, buckets)
		for i := range n {
			id := token.NewTokenID()
			if i%2 == 0 {
				// IDs minted in the same millisecond share their first ten characters.
				id = "01JD3ZQ7M8" + id[10:]
			}
			j := renewalJitter(id, before)
			if j < 0 || j >= window || j%time.Second != 0 {
				t.Fatalf("renewalJitter(%q, %s) = %s: want whole seconds in [0, %s)", id, before, j, window)
			}
			if again := renewalJitter(id, before); again != j {
				t.Fatalf("renewalJitter(%q, %s) = %s, then %s", id, before, j, again)
			}
			counts[int(j*time.Duration(buckets)/window)]++
		}
		for b, c := range counts {
			if c < n/buckets*8/10 || c > n/buckets*12/10 {
				t.Errorf("renewBefore %s: %d of %d jitters in tenth %d of the window, want about %d: %v", before, c, n, b, n/buckets, counts)
			}
		}
	}
}

func TestDesired(t *testing.T) {
	issuer := &tokensv1.ClusterTokenIssuerSpec{Audiences: []string{"z", "a"}, DefaultFormat: tokensv1.FormatOpaque}
	g := NewWithT(t)
	w := desired(&tokensv1.APITokenSpec{Tenant: "acme", Role: "viewer", Scopes: []string{"y", "x"}}, issuer)
	g.Expect(w.format).To(Equal(tokensv1.FormatOpaque))
	g.Expect(w.claims.Audiences).To(Equal([]string{"a", "z"}))
	g.Expect(w.claims.Scopes).To(Equal([]string{"x", "y"}))
	g.Expect(w.lifetime).To(Equal(720 * time.Hour))
	g.Expect(w.autoRotate).To(BeTrue())

	w = desired(&tokensv1.APITokenSpec{Format: tokensv1.FormatJWT, Audiences: []string{"mine"}, Rotation: &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled}}, issuer)
	g.Expect(w.format).To(Equal(tokensv1.FormatJWT))
	g.Expect(w.claims.Audiences).To(Equal([]string{"mine"}))
	g.Expect(w.autoRotate).To(BeFalse())
}

func TestRequeueAt(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := NewWithT(t)
	g.Expect(requeueAt(now, nil).RequeueAfter).To(BeZero())
	g.Expect(requeueAt(now, []time.Time{now.Add(time.Hour), now.Add(time.Minute), now.Add(-time.Minute)}).RequeueAfter).To(Equal(time.Minute))
	g.Expect(requeueAt(now, []time.Time{now.Add(time.Millisecond)}).RequeueAfter).To(Equal(time.Second))
}
