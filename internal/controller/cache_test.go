package controller

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// fresh returns a copy of s in bytes of its own, as a decoder makes for each object.
func fresh(s string) string { return string([]byte(s)) }

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func cachedToken(i int) *tokensv1.APIToken {
	issued := func(id string) tokensv1.IssuedToken {
		return tokensv1.IssuedToken{
			TokenID: id, Format: tokensv1.TokenFormat(fresh("JWT")), SigningKeyID: fresh("kid-1"),
			Claims:   tokensv1.TokenClaims{Tenant: fresh("acme"), Role: fresh("editor"), Scopes: []string{fresh("reports:read")}, Audiences: []string{fresh("api")}},
			IssuedAt: metav1.NewTime(time.Unix(100, 0)), ExpiresAt: metav1.NewTime(time.Unix(200, 0)),
		}
	}
	cur := issued(fmt.Sprintf("id-%d", i))
	return &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("tok-%d", i), Namespace: fresh("acme"), UID: types.UID(fmt.Sprintf("uid-%d", i)), ResourceVersion: "7",
			Annotations:   map[string]string{fresh(lastApplied): "{}", fresh("team"): fmt.Sprintf("t%d", i)},
			Labels:        map[string]string{fresh("app"): fmt.Sprintf("a%d", i)},
			Finalizers:    []string{fresh(finalizer)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: tokensv1.APITokenSpec{
			IssuerRef: tokensv1.IssuerReference{Name: fresh("default")}, Tenant: fresh("acme"), Role: fresh("editor"),
			Format: tokensv1.TokenFormat(fresh("JWT")), Scopes: []string{fresh("reports:read")}, Lifetime: metav1.Duration{Duration: time.Hour},
		},
		Status: tokensv1.APITokenStatus{
			Conditions: []metav1.Condition{{
				Type: fresh("Ready"), Status: metav1.ConditionStatus(fresh("True")), Reason: fresh("Minted"),
				Message: fmt.Sprintf("Secret tok-%d holds token id-%d", i, i), LastTransitionTime: metav1.NewTime(time.Unix(100, 0)),
			}},
			Current:        &cur,
			PreviousTokens: []tokensv1.IssuedToken{issued(fmt.Sprintf("old-%d", i))},
			SecretName:     fmt.Sprintf("tok-%d", i),
		},
	}
}

// finalizer stands for the APIToken controller's, which this package cannot import.
const finalizer = "apitoken.dev/finalizer"

// TestCompactAPIToken: the cache keeps an APIToken packed; unpacked it is the API
// server's less its managed fields and kubectl's last-applied copy, and the strings
// of its metadata that APITokens hold alike share their bytes.
func TestCompactAPIToken(t *testing.T) {
	g := NewWithT(t)
	a, b := cachedToken(1), cachedToken(2)
	want := a.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, lastApplied)

	outA, err := compactAPIToken(a)
	g.Expect(err).NotTo(HaveOccurred())
	outB, _ := compactAPIToken(b)
	pa, pb := outA.(*Packed), outB.(*Packed)
	g.Expect(pa.DeepCopyObject()).To(Equal(want), "nothing but managed fields and last-applied goes")
	g.Expect(pa.GetObjectKind().GroupVersionKind()).To(Equal(tokensv1.GroupVersion.WithKind("APIToken")))
	g.Expect(len(pa.body)).To(BeNumerically("<", 400), "the spec and status are packed")

	for name, pair := range map[string][2]string{
		"namespace": {pa.Namespace, pb.Namespace},
		"finalizer": {pa.Finalizers[0], pb.Finalizers[0]},
	} {
		g.Expect(sameBytes(pair[0], pair[1])).To(BeTrue(), "%s is shared", name)
	}

	// Packing twice changes nothing: client-go may hand the transform its own output.
	again, err := compactAPIToken(pa)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(pa))

	// Anything else passes through as the default transform would.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	out, err := compactAPIToken(sec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.(*corev1.Secret).ManagedFields).To(BeNil())
}

// TestPackedRoundTrip: every field of an APIToken survives the packing, and each
// copy handed out is the caller's own.
func TestPackedRoundTrip(t *testing.T) {
	g := NewWithT(t)
	full := cachedToken(3)
	full.ManagedFields = nil
	delete(full.Annotations, lastApplied)
	now := metav1.NewTime(time.Unix(1900000000, 0).UTC())
	full.DeletionTimestamp = &now
	full.Spec.SubTenant = "payments"
	full.Spec.Memberships = []tokensv1.Membership{{Tenant: "acme", Role: "viewer"}, {Tenant: "globex", SubTenant: "eu", Role: "editor"}}
	full.Spec.Audiences = []string{"api", "kubernetes"}
	full.Spec.Description = "the CI pipeline's token, \u00e9\"quoted\""
	full.Spec.Revoked = true
	full.Spec.Rotation = &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled, RenewBefore: &metav1.Duration{Duration: time.Minute}, GracePeriod: &metav1.Duration{Duration: 0}}
	full.Spec.Secret = &tokensv1.SecretSpec{Name: "s", DeletionPolicy: tokensv1.DeletionRetain,
		Template: &tokensv1.SecretTemplate{Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}}}
	full.Spec.RolloutRestartTargets = []tokensv1.RolloutRestartTarget{{Kind: "Deployment", Name: "web"}}
	full.Status.PreviousTokens[0].RetireAt = &now
	full.Status.PreviousTokens[0].TokenHash = "sha256:00"
	full.Status.LastUsedTime, full.Status.RenewalTime = &now, &now
	full.Status.Rotations, full.Status.LastRotateRequest, full.Status.ObservedGeneration = 4, "r1", 9
	// As a watch decodes it: times in UTC, to the second.
	raw, err := json.Marshal(full)
	g.Expect(err).NotTo(HaveOccurred())
	full = &tokensv1.APIToken{}
	g.Expect(json.Unmarshal(raw, full)).To(Succeed())

	out, err := compactAPIToken(full.DeepCopy())
	g.Expect(err).NotTo(HaveOccurred())
	p := out.(*Packed)
	first := p.DeepCopyObject().(*tokensv1.APIToken)
	g.Expect(first).To(Equal(full))
	first.Spec.Memberships[0].Role = "changed"
	first.Labels["app"] = "changed"
	g.Expect(p.DeepCopyObject()).To(Equal(full), "a copy shares nothing with the cache")

	got, err := Unpack(p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(full))
	same, err := Unpack(full)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(same).To(BeIdenticalTo(full), "an object that is not packed is itself")
}

// TestCompactSecret: the cache keeps a Secret packed; unpacked it is the API
// server's less its managed fields, and, for a token Secret, with its JWT replaced
// by the JWT's SHA-256 and iss claim (CachedJWT). Opaque tokens stay. Strings of
// its metadata that Secrets hold alike share their bytes.
func TestCompactSecret(t *testing.T) {
	g := NewWithT(t)
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	jwt, err := token.MintJWT(key, token.Claims{Issuer: "https://issuer.test", Subject: "apitoken:acme:t", IssuedAt: time.Unix(100, 0), NotBefore: time.Unix(100, 0),
		ExpiresAt: time.Unix(200, 0), ID: "id", Tenant: "acme", Role: "viewer"})
	g.Expect(err).NotTo(HaveOccurred())
	secret := func(i int, value string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("s-%d", i), Namespace: fresh("acme"),
				Labels:          map[string]string{fresh(tokensv1.ManagedByLabel): fresh(tokensv1.ManagedByValue), fresh("team"): fresh("gold")},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: fresh("tokens.apitoken.dev/v1alpha1"), Kind: fresh("APIToken"), Name: fmt.Sprintf("tok-%d", i), UID: "u"}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "apitoken-operator"}},
			},
			Type: corev1.SecretType(fresh(tokensv1.TokenSecretType)),
			Data: map[string][]byte{fresh("token"): []byte(value), fresh("tokenID"): []byte("id")},
		}
	}
	a, b := secret(1, jwt), secret(2, "apt_opaque")
	wantA, wantB := a.DeepCopy(), b.DeepCopy()
	wantA.ManagedFields, wantB.ManagedFields = nil, nil
	outA, err := compactSecret(a)
	g.Expect(err).NotTo(HaveOccurred())
	outB, _ := compactSecret(b)
	pa, pb := outA.(*Packed), outB.(*Packed)
	ca, cb := pa.DeepCopyObject().(*corev1.Secret), pb.DeepCopyObject().(*corev1.Secret)

	g.Expect(cb).To(Equal(wantB), "an opaque token stays")
	_, _, cached := CachedJWT(cb)
	g.Expect(cached).To(BeFalse())

	g.Expect(ca.Data).NotTo(HaveKey(tokensv1.SecretKeyToken), "a JWT is not kept")
	sum, iss, cached := CachedJWT(ca)
	g.Expect(cached).To(BeTrue())
	g.Expect(sum).To(Equal(token.DigestSum(jwt)))
	g.Expect(iss).To(Equal("https://issuer.test"))
	delete(ca.Data, cachedJWTKey)
	delete(wantA.Data, tokensv1.SecretKeyToken)
	g.Expect(ca).To(Equal(wantA), "all else is kept")

	g.Expect(sameBytes(pa.Namespace, pb.Namespace)).To(BeTrue())
	g.Expect(sameBytes(pa.Labels[tokensv1.ManagedByLabel], pb.Labels[tokensv1.ManagedByLabel])).To(BeTrue())
	g.Expect(sameBytes(pa.OwnerReferences[0].Kind, pb.OwnerReferences[0].Kind)).To(BeTrue())
	g.Expect(sameBytes(pa.Labels["team"], pb.Labels["team"])).To(BeFalse())

	// The labels of most token Secrets, the managed-by label alone, are one map for all.
	only := func() *corev1.Secret {
		s := secret(3, "apt_x")
		s.Labels = map[string]string{fresh(tokensv1.ManagedByLabel): fresh(tokensv1.ManagedByValue)}
		return s
	}
	x, _ := compactSecret(only())
	y, _ := compactSecret(only())
	g.Expect(x.(*Packed).Labels).To(Equal(map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}))
	g.Expect(reflect.ValueOf(x.(*Packed).Labels).UnsafePointer()).To(Equal(reflect.ValueOf(y.(*Packed).Labels).UnsafePointer()))
	// A copy handed out by the cache is the caller's to change.
	c := x.(*Packed).DeepCopyObject().(*corev1.Secret)
	c.Labels["extra"] = "1"
	g.Expect(managedByOnly).To(HaveLen(1))
}

// BenchmarkPackAPIToken and BenchmarkUnpackAPIToken: what the cache's packing costs
// per watch event and per read of an APIToken.
func BenchmarkPackAPIToken(b *testing.B) {
	tok := cachedToken(1)
	for b.Loop() {
		if _, err := apiTokenPacking.pack(tok.DeepCopy()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpackAPIToken(b *testing.B) {
	out, err := compactAPIToken(cachedToken(1))
	if err != nil {
		b.Fatal(err)
	}
	p := out.(*Packed)
	b.ReportAllocs()
	for b.Loop() {
		_ = p.DeepCopyObject()
	}
}

// BenchmarkDeepCopyAPIToken is what a read cost before the packing: a deep copy.
func BenchmarkDeepCopyAPIToken(b *testing.B) {
	tok := cachedToken(1)
	b.ReportAllocs()
	for b.Loop() {
		_ = tok.DeepCopyObject()
	}
}
