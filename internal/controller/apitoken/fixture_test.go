package apitoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// The issuers of these tests are made by hand, the way the issuer controller would
// leave them, so that this package depends on the keystore contract only.

// issuerFixture is a Ready ClusterTokenIssuer with its keys.
type issuerFixture struct {
	name string
	// keys are the private keys in the key Secret, the current one last.
	keys []*token.SigningKey
}

// current is the key new tokens are signed with.
func (f *issuerFixture) current() *token.SigningKey { return f.keys[len(f.keys)-1] }

// randName returns prefix followed by 8 random hex digits.
func randName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// newIssuer creates a Ready issuer with one ES256 key (or the algorithm mutate sets).
func newIssuer(t testing.TB, mutate func(*tokensv1.ClusterTokenIssuer)) *issuerFixture {
	t.Helper()
	return newIssuerNamed(t, randName("iss"), mutate)
}

// newIssuerNamed is newIssuer with a given name.
func newIssuerNamed(t testing.TB, name string, mutate func(*tokensv1.ClusterTokenIssuer)) *issuerFixture {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:    "https://tokens.example.test/" + name,
			Audiences: []string{"test-api"},
		},
	}
	if mutate != nil {
		mutate(iss)
	}
	g.Expect(k8s.Create(ctx, iss)).To(Succeed())
	f := &issuerFixture{name: name}
	f.addKey(t, false)
	return f
}

// addKey generates a key of the issuer's algorithm, stores it in the key Secret and
// makes it current. With dropOld the older keys vanish from the Secret and the
// JWKS, as when keys are lost.
func (f *issuerFixture) addKey(t testing.TB, dropOld bool) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	iss := f.get(t)
	key, err := token.GenerateKey(token.Algorithm(iss.Spec.Signing.Algorithm))
	g.Expect(err).NotTo(HaveOccurred())
	if dropOld {
		f.keys = nil
	}
	f.keys = append(f.keys, key)

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: keystore.SecretName(f.name)}}
	err = k8s.Get(ctx, client.ObjectKeyFromObject(sec), sec)
	missing := apierrors.IsNotFound(err)
	g.Expect(missing || err == nil).To(BeTrue(), "reading the key Secret: %v", err)
	sec.Labels = map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue, keystore.IssuerLabel: f.name}
	sec.Type = tokensv1.SigningKeySecretType
	sec.Data = map[string][]byte{}
	for _, k := range f.keys {
		pem, err := k.MarshalPrivateKey()
		g.Expect(err).NotTo(HaveOccurred())
		sec.Data[keystore.DataKey(k.ID)] = pem
	}
	if missing {
		g.Expect(k8s.Create(ctx, sec)).To(Succeed())
	} else {
		g.Expect(k8s.Update(ctx, sec)).To(Succeed())
	}

	now := metav1.Now()
	iss.Status.CurrentKeyID = key.ID
	iss.Status.KeySecretName = sec.Name
	iss.Status.Keys = nil
	iss.Status.JWKS = &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{}}
	for _, k := range f.keys {
		ks := tokensv1.SigningKeyStatus{KeyID: k.ID, Algorithm: tokensv1.SigningAlgorithm(k.Algorithm), CreatedAt: now}
		if k != key {
			ks.RetiredAt = &now
		}
		iss.Status.Keys = append(iss.Status.Keys, ks)
		iss.Status.JWKS.Keys = append(iss.Status.JWKS.Keys, jwk.FromToken(k.PublicJWK()))
	}
	meta.SetStatusCondition(&iss.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonKeyGenerated, Message: "test fixture", ObservedGeneration: iss.Generation})
	g.Expect(k8s.Status().Update(ctx, iss)).To(Succeed())
}

// setReady sets the issuer's Ready condition.
func (f *issuerFixture) setReady(t testing.TB, ready bool) {
	t.Helper()
	iss := f.get(t)
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&iss.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: status, Reason: tokensv1.ReasonKeyGenerated, Message: "test fixture"})
	NewWithT(t).Expect(k8s.Status().Update(context.Background(), iss)).To(Succeed())
}

func (f *issuerFixture) get(t testing.TB) *tokensv1.ClusterTokenIssuer {
	t.Helper()
	iss := &tokensv1.ClusterTokenIssuer{}
	NewWithT(t).Expect(k8s.Get(context.Background(), types.NamespacedName{Name: f.name}, iss)).To(Succeed())
	return iss
}

// verifier checks JWTs of the issuer as the validator would, at the clock's time.
func (f *issuerFixture) verifier(t testing.TB, now func() time.Time) *token.Verifier {
	t.Helper()
	iss := f.get(t)
	keys, err := token.NewKeySet(jwk.ToToken(iss.Status.JWKS))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return &token.Verifier{Keys: keys, Issuer: iss.Spec.Issuer, Now: now, Leeway: -1}
}

// newNamespace creates a namespace for one test; tokens there default to the tenant
// named like it.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := randName("ns")
	NewWithT(t).Expect(k8s.Create(context.Background(), testenv.Namespace(ns))).To(Succeed())
	return ns
}

// newToken creates an APIToken for tenant ns, role editor, lifetime 3h.
func newToken(t testing.TB, ns, issuer string, mutate func(*tokensv1.APIToken)) *tokensv1.APIToken {
	t.Helper()
	tok := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: randName("tok")},
		Spec: tokensv1.APITokenSpec{
			IssuerRef: tokensv1.IssuerReference{Name: issuer},
			Tenant:    ns,
			Role:      "editor",
			Lifetime:  metav1.Duration{Duration: 3 * time.Hour},
		},
	}
	if mutate != nil {
		mutate(tok)
	}
	NewWithT(t).Expect(k8s.Create(context.Background(), tok)).To(Succeed())
	return tok
}

// harness calls Reconcile directly with a fake clock.
type harness struct {
	t     testing.TB
	clock *clocktesting.FakeClock
	r     *Reconciler
	// ctx carries the logger of the passes.
	ctx context.Context
}

func newHarness(t testing.TB) *harness {
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	return &harness{t: t, clock: clk, r: newReconciler(clk), ctx: context.Background()}
}

// newReconciler is a reconciler with no memory, reading the API server directly.
func newReconciler(clk *clocktesting.FakeClock) *Reconciler {
	return &Reconciler{Client: k8s, APIReader: k8s, Namespace: operatorNS, Clock: clk, Recorder: recorder}
}

// reconcile runs one pass for tok.
func (h *harness) reconcile(tok *tokensv1.APIToken) (ctrl.Result, error) {
	return h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tok)})
}

// mustReconcile runs one pass that must succeed.
func (h *harness) mustReconcile(tok *tokensv1.APIToken) ctrl.Result {
	h.t.Helper()
	res, err := h.reconcile(tok)
	NewWithT(h.t).Expect(err).NotTo(HaveOccurred())
	return res
}

// getToken reads tok afresh.
func getToken(t testing.TB, tok *tokensv1.APIToken) *tokensv1.APIToken {
	t.Helper()
	out := &tokensv1.APIToken{}
	NewWithT(t).Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(tok), out)).To(Succeed())
	return out
}

// getSecret reads the Secret named name in ns, or nil.
func getSecret(t testing.TB, ns, name string) *corev1.Secret {
	t.Helper()
	sec := &corev1.Secret{}
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, sec)
	if apierrors.IsNotFound(err) {
		return nil
	}
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return sec
}

// update changes tok with mutate, retrying on conflicts.
func update(t testing.TB, tok *tokensv1.APIToken, mutate func(*tokensv1.APIToken)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		cur := getToken(t, tok)
		mutate(cur)
		return k8s.Update(context.Background(), cur)
	}).Should(Succeed())
}

// condition returns the condition typ of tok, or nil.
func condition(tok *tokensv1.APIToken, typ string) *metav1.Condition {
	return meta.FindStatusCondition(tok.Status.Conditions, typ)
}

// accepted says whether the validator accepts value at now, judged by the validator's
// own code: an index built, as the validator's informers build it, from tok and from
// f's issuer as the API server holds it, asked through the validator's Authenticator.
// A token the controller lists but the validator would refuse fails the test.
func accepted(t testing.TB, f *issuerFixture, tok *tokensv1.APIToken, value string, now time.Time) bool {
	t.Helper()
	clk := clocktesting.NewFakePassiveClock(now)
	idx := index.New(index.Config{Clock: clk})
	iss, _ := idx.PutIssuer(f.get(t))
	if iss.KeyError != nil {
		t.Fatalf("the validator refuses the JWKS of ClusterTokenIssuer %s: %v", f.name, iss.KeyError)
	}
	if conflicts := idx.PutTokenSet(index.NewTokenSet(tok)); len(conflicts) > 0 {
		t.Fatalf("the index refuses tokens %v of APIToken %s", conflicts, tok.Name)
	}
	_, refusal := validator.NewAuthenticator(idx, clk, nil, 0).Authenticate(value)
	if refusal != nil {
		t.Logf("the validator refuses token %q of APIToken %s: %s", refusal.TokenID, tok.Name, refusal.Reason)
	}
	return refusal == nil
}

// eventReasons lists the reasons of the events about the APIToken named name.
func eventReasons(t testing.TB, ns, name string) []string {
	t.Helper()
	list, err := clientset.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// opaqueSecret returns the secret part of an opaque token.
func opaqueSecret(value string) string {
	parts := strings.SplitN(value, "_", 3)
	if len(parts) != 3 {
		return ""
	}
	return parts[2]
}
