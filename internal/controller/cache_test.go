package controller

import (
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

// TestCompactAPIToken: the cache's APIToken is the API server's less its managed
// fields and kubectl's last-applied copy, and the strings APITokens hold alike share
// their bytes, while the ones of each token stay its own.
func TestCompactAPIToken(t *testing.T) {
	g := NewWithT(t)
	a, b := cachedToken(1), cachedToken(2)
	want := a.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, lastApplied)

	outA, err := compactAPIToken(a)
	g.Expect(err).NotTo(HaveOccurred())
	outB, _ := compactAPIToken(b)
	ca, cb := outA.(*tokensv1.APIToken), outB.(*tokensv1.APIToken)
	g.Expect(ca).To(Equal(want), "nothing but managed fields and last-applied goes")

	for name, pair := range map[string][2]string{
		"namespace":        {ca.Namespace, cb.Namespace},
		"finalizer":        {ca.Finalizers[0], cb.Finalizers[0]},
		"issuer":           {ca.Spec.IssuerRef.Name, cb.Spec.IssuerRef.Name},
		"tenant":           {ca.Spec.Tenant, cb.Spec.Tenant},
		"role":             {ca.Spec.Role, cb.Spec.Role},
		"condition type":   {ca.Status.Conditions[0].Type, cb.Status.Conditions[0].Type},
		"condition reason": {ca.Status.Conditions[0].Reason, cb.Status.Conditions[0].Reason},
		"claims role":      {ca.Status.Current.Claims.Role, cb.Status.Current.Claims.Role},
		"previous key ID":  {ca.Status.PreviousTokens[0].SigningKeyID, cb.Status.PreviousTokens[0].SigningKeyID},
	} {
		g.Expect(sameBytes(pair[0], pair[1])).To(BeTrue(), "%s is shared", name)
	}
	// Free-form values may be one per APIToken: shared, they would pile up.
	g.Expect(sameBytes(ca.Spec.Scopes[0], cb.Spec.Scopes[0])).To(BeFalse(), "scopes are the user's")

	// Anything else passes through as the default transform would.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	out, err := compactAPIToken(sec)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.(*corev1.Secret).ManagedFields).To(BeNil())
}

// TestCompactSecret: a token Secret loses only its managed fields; its namespace,
// type, label and data keys, managed-by value and owner kind are shared, the values
// of its data and of other labels stay its own.
func TestCompactSecret(t *testing.T) {
	g := NewWithT(t)
	secret := func(i int) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("s-%d", i), Namespace: fresh("acme"),
				Labels:          map[string]string{fresh(tokensv1.ManagedByLabel): fresh(tokensv1.ManagedByValue), fresh("team"): fresh("gold")},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: fresh("tokens.apitoken.dev/v1alpha1"), Kind: fresh("APIToken"), Name: fmt.Sprintf("tok-%d", i), UID: "u"}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "apitoken-operator"}},
			},
			Type: corev1.SecretType(fresh(tokensv1.TokenSecretType)),
			Data: map[string][]byte{fresh("token"): []byte(fmt.Sprintf("v%d", i)), fresh("tokenID"): []byte("id")},
		}
	}
	a, b := secret(1), secret(2)
	want := a.DeepCopy()
	want.ManagedFields = nil
	outA, err := compactSecret(a)
	g.Expect(err).NotTo(HaveOccurred())
	outB, _ := compactSecret(b)
	ca, cb := outA.(*corev1.Secret), outB.(*corev1.Secret)
	g.Expect(ca).To(Equal(want))

	g.Expect(sameBytes(ca.Namespace, cb.Namespace)).To(BeTrue())
	g.Expect(sameBytes(string(ca.Type), string(cb.Type))).To(BeTrue())
	g.Expect(sameBytes(ca.Labels[tokensv1.ManagedByLabel], cb.Labels[tokensv1.ManagedByLabel])).To(BeTrue())
	g.Expect(sameBytes(ca.OwnerReferences[0].Kind, cb.OwnerReferences[0].Kind)).To(BeTrue())
	keys := func(m map[string][]byte) map[string]string {
		out := map[string]string{}
		for k := range m {
			out[k] = k
		}
		return out
	}
	ka, kb := keys(ca.Data), keys(cb.Data)
	for k := range ka {
		g.Expect(sameBytes(ka[k], kb[k])).To(BeTrue(), "data key %s is shared", k)
	}
	g.Expect(sameBytes(ca.Labels["team"], cb.Labels["team"])).To(BeFalse())

	// The labels of most token Secrets, the managed-by label alone, are one map for all.
	only := func() *corev1.Secret {
		s := secret(3)
		s.Labels = map[string]string{fresh(tokensv1.ManagedByLabel): fresh(tokensv1.ManagedByValue)}
		return s
	}
	x, _ := compactSecret(only())
	y, _ := compactSecret(only())
	g.Expect(x.(*corev1.Secret).Labels).To(Equal(map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue}))
	g.Expect(reflect.ValueOf(x.(*corev1.Secret).Labels).UnsafePointer()).To(Equal(reflect.ValueOf(y.(*corev1.Secret).Labels).UnsafePointer()))
	// A copy handed out by the cache is the caller's to change.
	c := x.(*corev1.Secret).DeepCopy()
	c.Labels["extra"] = "1"
	g.Expect(managedByOnly).To(HaveLen(1))
}
