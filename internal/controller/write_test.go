package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, nil) }

// newNamespace creates a namespace of a random name.
func newNamespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "ns-" + hex.EncodeToString(b)
	NewWithT(t).Expect(env.Client.Create(context.Background(), testenv.Namespace(ns))).To(Succeed())
	return ns
}

// newAPIToken creates an APIToken in a namespace of its own.
func newAPIToken(t *testing.T) *tokensv1.APIToken {
	t.Helper()
	g := NewWithT(t)
	ns := newNamespace(t)
	tok := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok"},
		Spec:       tokensv1.APITokenSpec{Tenant: ns, Role: "viewer", Lifetime: metav1.Duration{Duration: time.Hour}},
	}
	g.Expect(env.Client.Create(context.Background(), tok)).To(Succeed())
	return tok
}

func get(t *testing.T, tok *tokensv1.APIToken) *tokensv1.APIToken {
	t.Helper()
	out := &tokensv1.APIToken{}
	NewWithT(t).Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(tok), out)).To(Succeed())
	return out
}

// TestPatchStatus: a status patch carries only what the pass changed, is refused when
// computed from a stale read, and is not sent when nothing changed.
func TestPatchStatus(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tok := newAPIToken(t)

	// Another writer (the validator) sets lastUsedTime after the pass read the object.
	read := get(t, tok)
	used := read.DeepCopy()
	used.Status.LastUsedTime = &metav1.Time{Time: time.Now().Truncate(time.Second)}
	g.Expect(env.Client.Status().Update(ctx, used)).To(Succeed())

	// A patch computed from the stale read conflicts instead of overwriting.
	stale := read.DeepCopy()
	stale.Status.Rotations = 1
	err := PatchStatus(ctx, env.Client, read, stale)
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "a patch from a stale read: %v", err)

	// Nothing changed: nothing is sent, so even a stale object raises no conflict.
	g.Expect(PatchStatus(ctx, env.Client, read, read.DeepCopy())).To(Succeed())

	// From a fresh read: the change is written, the other writer's field survives,
	// and obj is what the API server now holds.
	before := get(t, tok)
	after := before.DeepCopy()
	after.Status.Rotations = 2
	g.Expect(PatchStatus(ctx, env.Client, before, after)).To(Succeed())
	got := get(t, tok)
	g.Expect(got.Status.Rotations).To(Equal(int64(2)))
	g.Expect(got.Status.LastUsedTime).NotTo(BeNil(), "the validator's lastUsedTime survives")
	g.Expect(after.ResourceVersion).To(Equal(got.ResourceVersion))
}

func TestPatchMetadata(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tok := newAPIToken(t)
	read := get(t, tok)

	other := read.DeepCopy()
	other.Annotations = map[string]string{"team": "ci"}
	g.Expect(env.Client.Update(ctx, other)).To(Succeed())

	stale := read.DeepCopy()
	controllerutil.AddFinalizer(stale, "apitoken.dev/test")
	g.Expect(apierrors.IsConflict(PatchMetadata(ctx, env.Client, read, stale))).To(BeTrue())

	before := get(t, tok)
	after := before.DeepCopy()
	controllerutil.AddFinalizer(after, "apitoken.dev/test")
	g.Expect(PatchMetadata(ctx, env.Client, before, after)).To(Succeed())
	got := get(t, tok)
	g.Expect(got.Finalizers).To(ConsistOf("apitoken.dev/test"))
	g.Expect(got.Annotations).To(HaveKeyWithValue("team", "ci"))

	controllerutil.RemoveFinalizer(after, "apitoken.dev/test")
	g.Expect(PatchMetadata(ctx, env.Client, got, after)).To(Succeed())
	g.Expect(get(t, tok).Finalizers).To(BeEmpty())
}

// TestOwnerReference: a Secret applied with the reference under FieldManager is
// controlled by its owner, and garbage collection waits for it.
func TestOwnerReference(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tok := get(t, newAPIToken(t))
	ac := corev1ac.Secret("owned", tok.Namespace).
		WithOwnerReferences(OwnerReference(tok, "APIToken")).
		WithStringData(map[string]string{"k": "v"})
	g.Expect(env.Client.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership)).To(Succeed())

	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: tok.Namespace, Name: "owned"}, sec)).To(Succeed())
	ref := metav1.GetControllerOf(sec)
	g.Expect(ref).NotTo(BeNil())
	g.Expect(*ref).To(Equal(metav1.OwnerReference{
		APIVersion:         tokensv1.GroupVersion.String(),
		Kind:               "APIToken",
		Name:               tok.Name,
		UID:                tok.UID,
		Controller:         new(true),
		BlockOwnerDeletion: new(true),
	}))
	g.Expect(sec.ManagedFields).To(ContainElement(HaveField("Manager", FieldManager)))
}

func TestSetCondition(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	conds := &tok.Status.Conditions

	SetCondition(tok, conds, t0, tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonProgressing, "minting")
	c := meta.FindStatusCondition(*conds, tokensv1.ConditionReady)
	g.Expect(c).NotTo(BeNil())
	g.Expect(*c).To(Equal(metav1.Condition{
		Type: tokensv1.ConditionReady, Status: metav1.ConditionFalse, Reason: tokensv1.ReasonProgressing, Message: "minting",
		ObservedGeneration: 3, LastTransitionTime: metav1.NewTime(t0),
	}))

	// A later pass that keeps the status keeps the transition time, and stamps its generation.
	tok.Generation = 4
	SetCondition(tok, conds, t0.Add(time.Hour), tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonProgressing, "still minting")
	c = meta.FindStatusCondition(*conds, tokensv1.ConditionReady)
	g.Expect(c.LastTransitionTime.Time).To(Equal(t0))
	g.Expect(c.ObservedGeneration).To(Equal(int64(4)))
	g.Expect(c.Message).To(Equal("still minting"))

	// A transition is stamped with the pass's time, not the wall clock.
	SetCondition(tok, conds, t0.Add(2*time.Hour), tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonActive, "ready")
	g.Expect(meta.FindStatusCondition(*conds, tokensv1.ConditionReady).LastTransitionTime.Time).To(Equal(t0.Add(2 * time.Hour)))
}

func TestReader(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Reader(nil, env.Client)).To(BeIdenticalTo(env.Client))
	var api client.Reader = struct{ client.Reader }{env.Client}
	g.Expect(Reader(api, env.Client)).To(BeIdenticalTo(api))
}

// TestAdoptCreatedFields: a field FieldManager set by a create stays when its applies
// stop setting it, until AdoptCreatedFields hands it to the apply; fields of other
// writers are not taken; a second call has nothing to do.
func TestAdoptCreatedFields(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := get(t, newAPIToken(t)).Namespace
	key := client.ObjectKey{Namespace: ns, Name: "created"}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "created", Labels: map[string]string{"keep": "1", "drop": "1"}}}
	g.Expect(env.Client.Create(ctx, sec, client.FieldOwner(FieldManager))).To(Succeed())
	live := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, key, live)).To(Succeed())
	live.Labels["theirs"] = "1"
	g.Expect(env.Client.Update(ctx, live, client.FieldOwner("someone-else"))).To(Succeed())

	apply := func() {
		t.Helper()
		ac := corev1ac.Secret("created", ns).WithLabels(map[string]string{"keep": "1"})
		g.Expect(env.Client.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership)).To(Succeed())
	}
	labels := func() map[string]string {
		got := &corev1.Secret{}
		g.Expect(env.Client.Get(ctx, key, got)).To(Succeed())
		return got.Labels
	}
	apply()
	g.Expect(labels()).To(HaveKey("drop"), "the create still owns it")

	g.Expect(env.Client.Get(ctx, key, live)).To(Succeed())
	g.Expect(AdoptCreatedFields(ctx, env.Client, live)).To(Succeed())
	apply()
	g.Expect(labels()).To(Equal(map[string]string{"keep": "1", "theirs": "1"}))

	g.Expect(env.Client.Get(ctx, key, live)).To(Succeed())
	rv := live.ResourceVersion
	g.Expect(AdoptCreatedFields(ctx, env.Client, live)).To(Succeed())
	g.Expect(env.Client.Get(ctx, key, live)).To(Succeed())
	g.Expect(live.ResourceVersion).To(Equal(rv), "nothing left to hand over: nothing written")

	// From a stale read: a conflict, not a lost write.
	stale := live.DeepCopy()
	g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stale"}}, client.FieldOwner(FieldManager))).To(Succeed())
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stale"}, stale)).To(Succeed())
	fresh := stale.DeepCopy()
	fresh.Labels = map[string]string{"x": "1"}
	g.Expect(env.Client.Update(ctx, fresh, client.FieldOwner("someone-else"))).To(Succeed())
	g.Expect(apierrors.IsConflict(AdoptCreatedFields(ctx, env.Client, stale))).To(BeTrue())
}
