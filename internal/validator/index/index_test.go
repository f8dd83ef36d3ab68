package index

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func issued(id string, format tokensv1.TokenFormat, retire *time.Time) tokensv1.IssuedToken {
	it := tokensv1.IssuedToken{
		TokenID: id, Format: format,
		Claims:    tokensv1.TokenClaims{Tenant: "acme", Role: "editor", Scopes: []string{"reports:read"}, Audiences: []string{"acme-apis"}},
		IssuedAt:  metav1.NewTime(epoch),
		ExpiresAt: metav1.NewTime(epoch.Add(720 * time.Hour)),
	}
	if format == tokensv1.FormatOpaque {
		it.TokenHash = hashOf(id)
	}
	if retire != nil {
		t := metav1.NewTime(*retire)
		it.RetireAt = &t
	}
	return it
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func apiToken(ns, name string, uid types.UID, current *tokensv1.IssuedToken, previous ...tokensv1.IssuedToken) *tokensv1.APIToken {
	return &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, ResourceVersion: "1"},
		Spec:       tokensv1.APITokenSpec{Tenant: "acme", Role: "editor"},
		Status:     tokensv1.APITokenStatus{Current: current, PreviousTokens: previous},
	}
}

func TestTokenSetLifecycle(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{Clock: clocktesting.NewFakeClock(epoch)})
	retire := epoch.Add(time.Hour)
	cur, prev := issued("CUR", tokensv1.FormatOpaque, nil), issued("PREV", tokensv1.FormatJWT, &retire)

	x.PutTokenSet(NewTokenSet(apiToken("acme", "ci", "u1", &cur, prev)))
	g.Expect(x.Len()).To(Equal(2))
	gen := x.Generation()

	r := x.Token("CUR")
	g.Expect(r).NotTo(BeNil())
	g.Expect(r.Owner.Issuer()).To(Equal(tokensv1.DefaultIssuerName), "an empty issuerRef means the default issuer")
	g.Expect(r.Owner.Subject()).To(Equal("apitoken:acme:ci"))
	g.Expect(x.ByHash(hashOf("CUR"))).To(BeIdenticalTo(r))
	g.Expect(x.Token("PREV").NotAfter()).To(BeTemporally("==", retire), "a previous token ends at its retireAt")
	g.Expect(x.Token("PREV").Hash()).To(BeEmpty())
	g.Expect(r.NotAfter()).To(BeTemporally("==", epoch.Add(720*time.Hour)), "the current token ends at its expiry")
	g.Expect(r.Hash()).To(Equal(hashOf("CUR")), "the hash reads back in the status form")
	g.Expect(r.RetireAt().IsZero()).To(BeTrue())

	// A status write that changes no token (lastUsedTime) keeps records and generation.
	same := apiToken("acme", "ci", "u1", &cur, prev)
	same.ResourceVersion = "2"
	used := metav1.NewTime(epoch.Add(time.Minute))
	same.Status.LastUsedTime = &used
	same.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
	x.PutTokenSet(NewTokenSet(same))
	g.Expect(x.Generation()).To(Equal(gen))
	g.Expect(x.Token("CUR")).To(BeIdenticalTo(r))
	g.Expect(r.Owner.LastUsed()).To(BeTemporally("==", used.Time), "the kept set learns the new lastUsedTime")

	// Revocation is a change even though the tokens are the same.
	revoked := apiToken("acme", "ci", "u1", &cur, prev)
	revoked.Spec.Revoked = true
	x.PutTokenSet(NewTokenSet(revoked))
	g.Expect(x.Generation()).To(BeNumerically(">", gen))
	g.Expect(x.Token("CUR").Owner.Revoked()).To(BeTrue())

	// So is deletion in progress.
	deleting := apiToken("acme", "ci", "u1", &cur)
	now := metav1.NewTime(epoch)
	deleting.DeletionTimestamp = &now
	x.PutTokenSet(NewTokenSet(deleting))
	g.Expect(x.Token("CUR").Owner.Revoked()).To(BeTrue())
	g.Expect(x.Token("PREV")).To(BeNil(), "a previous token dropped from status leaves the index")

	gen = x.Generation()
	x.DeleteTokenSet(types.NamespacedName{Namespace: "acme", Name: "ci"})
	g.Expect(x.Generation()).To(BeNumerically(">", gen))
	g.Expect(x.Token("CUR")).To(BeNil())
	g.Expect(x.ByHash(hashOf("CUR"))).To(BeNil())
	g.Expect(x.Len()).To(BeZero())
}

func TestTokenIDConflict(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{})
	it := issued("SAME", tokensv1.FormatJWT, nil)
	g.Expect(x.PutTokenSet(NewTokenSet(apiToken("acme", "first", "u1", &it)))).To(BeEmpty())
	g.Expect(x.PutTokenSet(NewTokenSet(apiToken("acme", "copy", "u2", &it)))).To(ConsistOf("SAME"))
	g.Expect(x.Token("SAME").Owner.Name).To(Equal("first"), "the first owner keeps the ID")

	// Removing the copy must not remove the first owner's record.
	x.DeleteTokenSet(types.NamespacedName{Namespace: "acme", Name: "copy"})
	g.Expect(x.Token("SAME")).NotTo(BeNil())
}

func testIssuer(t *testing.T, name string, keys ...*token.SigningKey) *tokensv1.ClusterTokenIssuer {
	cti := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1",
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:       "https://" + name + ".example",
			OpaquePrefix: "apt",
			Roles:        []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}},
			Tenants:      []tokensv1.Tenant{{Name: "acme", Namespaces: []string{"acme"}}},
		},
		Status: tokensv1.ClusterTokenIssuerStatus{
			JWKS:       &tokensv1.JSONWebKeySet{},
			Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "KeyGenerated", Message: "ok", LastTransitionTime: metav1.NewTime(epoch)}, {Type: "Stalled", Status: metav1.ConditionFalse}},
		},
	}
	for _, k := range keys {
		j := k.PublicJWK()
		cti.Status.JWKS.Keys = append(cti.Status.JWKS.Keys, tokensv1.JSONWebKey{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y, N: j.N, E: j.E})
	}
	if len(keys) > 0 {
		cti.Status.CurrentKeyID = keys[0].ID
	}
	return cti
}

func TestIssuers(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{Audiences: []string{"acme-apis"}, Clock: clocktesting.NewFakeClock(epoch)})
	k1, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	k2, err := token.GenerateKey(token.EdDSA)
	g.Expect(err).NotTo(HaveOccurred())

	iss, changed := x.PutIssuer(testIssuer(t, "a", k1, k2))
	g.Expect(changed).To(BeTrue())
	g.Expect(iss.Ready).To(BeTrue())
	g.Expect(iss.Keys).NotTo(BeNil())
	g.Expect(x.Verifier().Audiences).To(Equal([]string{"acme-apis"}))
	_, alg, ok := x.PublicKey(k2.ID)
	g.Expect(ok).To(BeTrue())
	g.Expect(alg).To(Equal(token.EdDSA))
	g.Expect(iss.Algorithms()).To(Equal([]string{"ES256", "EdDSA"}))
	g.Expect(iss.Grants("admin", "viewer")).To(BeTrue())
	g.Expect(iss.Grants("viewer", "editor")).To(BeFalse())
	g.Expect(iss.Expand("admin")).To(Equal([]string{"admin", "editor", "viewer"}))
	g.Expect(x.IssuerForKey(k1.ID, "")).To(BeIdenticalTo(iss))
	g.Expect(x.IssuerForKey(k2.ID, "https://a.example")).To(BeIdenticalTo(iss))

	// A status write that changes nothing the validator reads keeps the issuer.
	gen := x.Generation()
	again := testIssuer(t, "a", k1, k2)
	again.ResourceVersion = "2"
	again.Status.Conditions[0].Message = "still ok"
	again.Status.Conditions[0].LastTransitionTime = metav1.NewTime(epoch.Add(time.Hour))
	same, changed := x.PutIssuer(again)
	g.Expect(changed).To(BeFalse())
	g.Expect(same).To(BeIdenticalTo(iss))
	g.Expect(x.Generation()).To(Equal(gen))

	// Dropping a key is a change: the key stops verifying.
	_, changed = x.PutIssuer(testIssuer(t, "a", k2))
	g.Expect(changed).To(BeTrue())
	g.Expect(x.IssuerForKey(k1.ID, "")).To(BeNil())
	_, _, ok = x.PublicKey(k1.ID)
	g.Expect(ok).To(BeFalse(), "a withdrawn key verifies nothing")
	g.Expect(x.IssuerForKey(k2.ID, "")).NotTo(BeNil())

	// The same key in a second issuer: the iss claim picks.
	b, _ := x.PutIssuer(testIssuer(t, "b", k2))
	g.Expect(x.IssuerForKey(k2.ID, "https://b.example")).To(BeIdenticalTo(b))
	g.Expect(x.IssuerForKey(k2.ID, "https://a.example").Name).To(Equal("a"))
	x.DeleteIssuer("a")
	g.Expect(x.IssuerForKey(k2.ID, "https://a.example")).To(BeIdenticalTo(b))
	g.Expect(x.Issuer("a")).To(BeNil())
	g.Expect(x.Issuers()).To(HaveLen(1))

	// A broken key set or role graph is recorded, not fatal.
	bad := testIssuer(t, "bad", k1)
	bad.Status.JWKS.Keys[0].X = "not-base64!"
	bad.Spec.Roles = []tokensv1.Role{{Name: "a", Includes: []string{"b"}}, {Name: "b", Includes: []string{"a"}}}
	broken, _ := x.PutIssuer(bad)
	g.Expect(broken.Keys).To(BeNil())
	g.Expect(broken.KeyError).To(HaveOccurred())
	g.Expect(broken.RolesError).To(HaveOccurred())
	g.Expect(broken.Grants("a", "a")).To(BeTrue())
	g.Expect(broken.Grants("a", "b")).To(BeFalse(), "without a usable graph a role grants only itself")
	g.Expect(x.IssuerForKey(k1.ID, "")).To(BeNil())
}

func TestTransform(t *testing.T) {
	g := NewWithT(t)
	cur := issued("CUR", tokensv1.FormatJWT, nil)
	out, err := Transform(apiToken("acme", "ci", "u1", &cur))
	g.Expect(err).NotTo(HaveOccurred())
	ts, ok := out.(*TokenSet)
	g.Expect(ok).To(BeTrue())
	g.Expect(ts.Tokens).To(HaveLen(1))
	g.Expect(ts.Tokens[0].Owner).To(BeIdenticalTo(ts))

	// client-go may transform an object twice.
	again, err := Transform(ts)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(ts))

	k, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	out, err = Transform(testIssuer(t, "a", k))
	g.Expect(err).NotTo(HaveOccurred())
	cti := out.(*tokensv1.ClusterTokenIssuer)
	g.Expect(cti.ManagedFields).To(BeNil())
	g.Expect(cti.Annotations).To(BeNil())
	g.Expect(cti.Spec.Tenants).To(Equal(testIssuer(t, "a", k).Spec.Tenants), "the validator enforces the tenants policy")
	g.Expect(cti.Status.Conditions).To(HaveLen(1))
	g.Expect(cti.Status.Conditions[0].Message).To(BeEmpty())
	g.Expect(cti.Status.JWKS.Keys).To(HaveLen(1))

	cp := ts.DeepCopyObject().(*TokenSet)
	g.Expect(cp.Tokens[0].Owner).To(BeIdenticalTo(cp))
	g.Expect(cp.GetObjectMeta().GetName()).To(Equal("ci"))
}

func TestMarkUsed(t *testing.T) {
	g := NewWithT(t)
	cur := issued("CUR", tokensv1.FormatJWT, nil)
	ts := NewTokenSet(apiToken("acme", "ci", "u1", &cur))
	g.Expect(ts.MarkUsed(epoch, time.Minute)).To(BeTrue())
	g.Expect(ts.MarkUsed(epoch.Add(59*time.Second), time.Minute)).To(BeFalse())
	g.Expect(ts.MarkUsed(epoch.Add(time.Minute), time.Minute)).To(BeTrue())
}

// A multi-tenant token's record carries its memberships, and the set its creator;
// either changing is a change of the tokens, an unchanged set keeps the records.
func TestMembershipsAndCreator(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{})
	multi := issued("MULTI", tokensv1.FormatJWT, nil)
	multi.Claims.Tenant, multi.Claims.Role = "", ""
	multi.Claims.Memberships = []tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
	obj := apiToken("acme", "multi", "u1", &multi)
	obj.Annotations = map[string]string{tokensv1.CreatedByAnnotation: "alice"}
	x.PutTokenSet(NewTokenSet(obj))

	r := x.Token("MULTI")
	g.Expect(r.Memberships()).To(Equal([]validatorapi.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}))
	g.Expect(r.Tenant()).To(BeEmpty())
	g.Expect(r.Owner.Creator()).To(Equal("alice"))
	g.Expect(r.Owner.DeepCopyObject().(*TokenSet).Creator()).To(Equal("alice"))
	single := issued("SINGLE", tokensv1.FormatJWT, nil)
	x.PutTokenSet(NewTokenSet(apiToken("acme", "single", "u2", &single)))
	g.Expect(x.Token("SINGLE").Memberships()).To(BeNil(), "a single-tenant token has no memberships")
	g.Expect(x.Token("SINGLE").Owner.Creator()).To(BeEmpty(), "an APIToken from before the creator was recorded")

	gen := x.Generation()
	x.PutTokenSet(NewTokenSet(obj.DeepCopy()))
	g.Expect(x.Generation()).To(Equal(gen))
	g.Expect(x.Token("MULTI")).To(BeIdenticalTo(r))

	changed := obj.DeepCopy()
	changed.Status.Current.Claims.Memberships[1].Role = "editor"
	x.PutTokenSet(NewTokenSet(changed))
	g.Expect(x.Generation()).To(BeNumerically(">", gen))
	g.Expect(x.Token("MULTI").Memberships()[1].Role).To(Equal("editor"))

	gen = x.Generation()
	other := changed.DeepCopy()
	other.Annotations[tokensv1.CreatedByAnnotation] = "mallory"
	x.PutTokenSet(NewTokenSet(other))
	g.Expect(x.Generation()).To(BeNumerically(">", gen))
	g.Expect(x.Token("MULTI").Owner.Creator()).To(Equal("mallory"))
}

// TestDigest: a JWT's record keeps the digest of the token as minted; a status that
// changes only the digest is a change; a JWT's digest is no opaque hash; a record
// without a digest, or with an unreadable one, binds nothing.
func TestDigest(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{Clock: clocktesting.NewFakeClock(epoch)})
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJKV1QifQ.c2ln"
	jwt := issued("JWT", tokensv1.FormatJWT, nil)
	jwt.Digest = token.Digest(tok)
	x.PutTokenSet(NewTokenSet(apiToken("acme", "ci", "u1", &jwt)))
	r := x.Token("JWT")
	g.Expect(r.HasDigest()).To(BeTrue())
	g.Expect(r.MatchesDigest(token.DigestSum(tok))).To(BeTrue())
	g.Expect(r.MatchesDigest(token.DigestSum(tok + "x"))).To(BeFalse())
	g.Expect(r.Hash()).To(BeEmpty(), "a JWT has no opaque hash")
	g.Expect(x.ByHash(jwt.Digest)).To(BeNil(), "a JWT's digest does not find it as an opaque token")

	gen := x.Generation()
	other := jwt
	other.Digest = token.Digest(tok + "x")
	x.PutTokenSet(NewTokenSet(apiToken("acme", "ci", "u1", &other)))
	g.Expect(x.Generation()).NotTo(Equal(gen), "another digest is another token")
	g.Expect(x.Token("JWT").MatchesDigest(token.DigestSum(tok))).To(BeFalse())

	for _, d := range []string{"", "sha256:abc", "md5:" + hashOf("x")[len("sha256:"):]} {
		legacy := jwt
		legacy.Digest = d
		x.PutTokenSet(NewTokenSet(apiToken("acme", "ci", "u1", &legacy)))
		g.Expect(x.Token("JWT").HasDigest()).To(BeFalse(), "digest %q", d)
		g.Expect(x.Token("JWT").MatchesDigest(token.DigestSum(tok))).To(BeFalse())
	}

	// An opaque token's digest is its hash, and a stray digest field does not change it.
	op := issued("OPQ", tokensv1.FormatOpaque, nil)
	op.Digest = token.Digest(tok)
	x.PutTokenSet(NewTokenSet(apiToken("acme", "dash", "u2", &op)))
	g.Expect(x.Token("OPQ").Hash()).To(Equal(op.TokenHash))
	g.Expect(x.Token("OPQ").HasDigest()).To(BeFalse())
	g.Expect(x.ByHash(op.TokenHash)).To(Equal(x.Token("OPQ")))
}

// A TokenSet answers the informer with the metadata of its APIToken exactly as
// written, whatever form its fields hold it in: client-go tells an update from a
// resync by comparing resource versions as strings.
func TestTokenSetMetadata(t *testing.T) {
	for _, rv := range []string{"1", "18446744073709551615", "", "0", "007", "+7", "18446744073709551616", "abc"} {
		t.Run(rv, func(t *testing.T) {
			g := NewWithT(t)
			cur := issued("CUR", tokensv1.FormatOpaque, nil)
			obj := apiToken("acme", "ci", "6f1c2d1e-0000-4000-8000-000000000001", &cur)
			obj.ResourceVersion = rv
			obj.Spec.IssuerRef.Name = "other"
			ts := NewTokenSet(obj)
			for _, set := range []*TokenSet{ts, ts.DeepCopyObject().(*TokenSet)} {
				m := set.GetObjectMeta()
				g.Expect(m.GetNamespace()).To(Equal("acme"))
				g.Expect(m.GetName()).To(Equal("ci"))
				g.Expect(m.GetUID()).To(Equal(obj.UID))
				g.Expect(m.GetResourceVersion()).To(Equal(rv))
				g.Expect(set.ResourceVersion()).To(Equal(rv))
				g.Expect(set.Issuer()).To(Equal("other"))
				g.Expect(set.Revoked()).To(BeFalse())
				g.Expect(set.Tokens).To(HaveLen(1))
				g.Expect(set.Tokens[0].Owner).To(BeIdenticalTo(set), "a copy's records are the copy's")
			}
		})
	}
}

// Sets of one, two and more tokens read back every token in order, and a deep copy
// keeps each token's fields.
func TestTokenSetSizes(t *testing.T) {
	for n := range 5 {
		g := NewWithT(t)
		var cur *tokensv1.IssuedToken
		var prev []tokensv1.IssuedToken
		for i := range n {
			retire := epoch.Add(time.Duration(i) * time.Hour)
			it := issued(fmt.Sprintf("T%d", i), tokensv1.FormatJWT, &retire)
			if i == 0 {
				it.RetireAt = nil
				cur = &it
				continue
			}
			prev = append(prev, it)
		}
		ts := NewTokenSet(apiToken("acme", "ci", "u1", cur, prev...))
		cp := ts.DeepCopyObject().(*TokenSet)
		for _, set := range []*TokenSet{ts, cp} {
			g.Expect(set.Tokens).To(HaveLen(n))
			for i := range set.Tokens {
				r := &set.Tokens[i]
				g.Expect(r.TokenID).To(Equal(fmt.Sprintf("T%d", i)))
				g.Expect(r.Owner).To(BeIdenticalTo(set))
				g.Expect(r.Tenant()).To(Equal("acme"))
				g.Expect(r.Scopes()).To(Equal([]string{"reports:read"}))
				if i > 0 {
					g.Expect(r.RetireAt()).To(BeTemporally("==", epoch.Add(time.Duration(i)*time.Hour)))
				}
			}
		}
		if n > 0 {
			g.Expect(cp.CurrentIssuedAt()).To(BeTemporally("==", epoch), "a copy keeps when the current token was issued")
		}
	}
}

// A status write that changes only a resource version the set cannot hold as a
// number keeps the records, like any other.
func TestSameTokensOddResourceVersion(t *testing.T) {
	g := NewWithT(t)
	x := New(Config{})
	cur := issued("CUR", tokensv1.FormatJWT, nil)
	obj := apiToken("acme", "ci", "u1", &cur)
	obj.ResourceVersion = "v1"
	x.PutTokenSet(NewTokenSet(obj))
	r, gen := x.Token("CUR"), x.Generation()
	obj.ResourceVersion = "v2"
	x.PutTokenSet(NewTokenSet(obj))
	g.Expect(x.Generation()).To(Equal(gen))
	g.Expect(x.Token("CUR")).To(BeIdenticalTo(r))
}
