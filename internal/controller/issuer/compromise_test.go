package issuer

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// compromise asks for a rotation for a compromised key with request value v.
func compromise(g Gomega, name, v string) {
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: v, tokensv1.KeyCompromisedAnnotation: "true"})
}

// listedToken creates an APIToken in ns whose status lists a current token of
// format signed with kid, as the APIToken controller would leave it.
func listedToken(t *testing.T, ns, issuerName string, format tokensv1.TokenFormat, kid string, mutate func(*tokensv1.APIToken)) *tokensv1.APIToken {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	tok := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok-" + rand.String(6)},
		Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: issuerName}, Tenant: ns, Role: "viewer", Format: format},
	}
	if mutate != nil {
		mutate(tok)
	}
	st := tok.Status
	g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
	tok.Status = st
	if tok.Status.Current == nil {
		tok.Status.Current = &tokensv1.IssuedToken{TokenID: token.NewTokenID(), Format: format, SigningKeyID: kid,
			Claims: tokensv1.TokenClaims{Tenant: ns, Role: "viewer"}, IssuedAt: metav1.NewTime(start), ExpiresAt: metav1.NewTime(start.Add(1000 * time.Hour))}
	}
	g.Expect(env.Client.Status().Update(ctx, tok)).To(Succeed())
	return tok
}

// remint moves tok's current token to kid, as a re-mint would.
func remint(g Gomega, tok *tokensv1.APIToken, kid string) {
	cur := &tokensv1.APIToken{}
	g.ExpectWithOffset(1, env.Client.Get(context.Background(), client.ObjectKeyFromObject(tok), cur)).To(Succeed())
	cur.Status.Current.TokenID = token.NewTokenID()
	cur.Status.Current.SigningKeyID = kid
	g.ExpectWithOffset(1, env.Client.Status().Update(context.Background(), cur)).To(Succeed())
}

// A compromised rotation withdraws every key the Secret held, current, next and
// retired, signs with a new key at once, and counts the APITokens that must be
// re-minted: those whose current JWT a withdrawn key signed and that the APIToken
// controller will re-mint. The count goes down as they are, then KeysWithdrawn says
// so; it clears at the next rotation.
func TestCompromisedRotation(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	name := "compromised-" + rand.String(4)
	create(t, prePublished(name))
	ns := "c-" + rand.String(6)
	g.Expect(env.Client.Create(context.Background(), testenv.Namespace(ns))).To(Succeed())

	// k1 retired, k2 current, k3 published next.
	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID
	d.clock.Step(time.Hour)
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: "1"})
	d.reconcile(t, name)
	d.clock.Step(tokensv1.DefaultPublishBefore)
	d.reconcile(t, name)
	k2 := getIssuer(g, name).Status.CurrentKeyID
	d.clock.Step(time.Hour)
	setAnnotations(g, name, map[string]string{tokensv1.RotateKeyAnnotation: "2"})
	d.reconcile(t, name)
	before := getIssuer(g, name)
	k3 := before.Status.NextKeyID
	g.Expect(statusKeyIDs(before)).To(ConsistOf(k1, k2, k3))
	d.drainEvents()

	onK1 := listedToken(t, ns, name, tokensv1.FormatJWT, k1, nil)
	onK2 := listedToken(t, ns, name, tokensv1.FormatJWT, k2, nil)
	// None of these is re-minted, so none is counted.
	listedToken(t, ns, name, tokensv1.FormatOpaque, "", nil)
	listedToken(t, ns, name, tokensv1.FormatJWT, k2, func(a *tokensv1.APIToken) { a.Spec.Revoked = true })
	listedToken(t, ns, "another-issuer", tokensv1.FormatJWT, k2, nil)
	listedToken(t, ns, name, tokensv1.FormatJWT, k2, func(a *tokensv1.APIToken) {
		a.Status.Conditions = []metav1.Condition{{Type: tokensv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonPolicyViolation,
			Message: "stalled", LastTransitionTime: metav1.NewTime(start)}}
	})

	d.clock.Step(time.Minute)
	withdrawnAt := d.clock.Now()
	compromise(g, name, "3")
	res := d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(remintPoll), "counts again soon")
	iss := getIssuer(g, name)
	checkPublished(g, iss, withdrawnAt)
	k4 := iss.Status.CurrentKeyID
	g.Expect(statusKeyIDs(iss)).To(Equal([]string{k4}), "every old key left the status and the JWKS")
	g.Expect(secretKeyIDs(getSecret(g, name))).To(Equal([]string{k4}), "and the Secret")
	g.Expect(iss.Status.NextKeyID).To(BeEmpty())
	g.Expect(iss.Status.Keys[0].ActivatedAt.Time).To(BeTemporally("==", withdrawnAt), "the new key signs at once")
	g.Expect(iss.Status.LastRotateKeyRequest).To(Equal("3"))
	w := iss.Status.LastWithdrawal
	g.Expect(w).NotTo(BeNil())
	g.Expect(w.KeyIDs).To(ConsistOf(k1, k2, k3))
	g.Expect(w.WithdrawnAt.Time).To(BeTemporally("==", withdrawnAt))
	g.Expect(w.Tokens).To(Equal(int32(2)))
	g.Expect(w.Remaining).To(Equal(int32(2)))
	withdrawn := meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysWithdrawn)
	g.Expect(withdrawn.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(withdrawn.Reason).To(Equal(tokensv1.ReasonReminting))
	g.Expect(withdrawn.Message).To(ContainSubstring("0 of 2 APITokens that held a JWT signed with them were re-minted, 2 to go"))
	g.Expect(iss.Status.Conditions).NotTo(ContainElement(HaveField("Type", tokensv1.ConditionKeysLost)), "withdrawn, not lost")
	g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionReady).Reason).To(Equal(tokensv1.ReasonKeyRotated))
	g.Expect(d.drainEvents()).To(ConsistOf(
		And(HavePrefix("Warning KeysWithdrawn"), ContainSubstring(k1), ContainSubstring("2 APITokens hold a JWT signed with them")),
		HavePrefix("Normal KeyRotated"),
	))

	// Nothing re-minted yet: the pass writes nothing.
	d.clock.Step(remintPoll)
	d.reconcile(t, name)
	g.Expect(getIssuer(g, name).ResourceVersion).To(Equal(iss.ResourceVersion))

	remint(g, onK1, k4)
	d.clock.Step(remintPoll)
	g.Expect(d.reconcile(t, name).RequeueAfter).To(Equal(remintPoll))
	iss = getIssuer(g, name)
	g.Expect(iss.Status.LastWithdrawal.Remaining).To(Equal(int32(1)))
	g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysWithdrawn).Message).To(ContainSubstring("1 of 2 APITokens"))

	remint(g, onK2, k4)
	d.clock.Step(remintPoll)
	res = d.reconcile(t, name)
	g.Expect(res.RequeueAfter).To(Equal(withdrawnAt.Add(720*time.Hour-tokensv1.DefaultPublishBefore).Sub(d.clock.Now())), "done: back to the key schedule")
	iss = getIssuer(g, name)
	g.Expect(iss.Status.LastWithdrawal.Remaining).To(BeZero())
	withdrawn = meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysWithdrawn)
	g.Expect(withdrawn.Reason).To(Equal(tokensv1.ReasonReminted))
	g.Expect(withdrawn.Message).To(ContainSubstring("all 2 APITokens that held a JWT signed with them were re-minted"))
	g.Expect(withdrawn.LastTransitionTime.Time).To(BeTemporally("==", withdrawnAt), "still True")
	g.Expect(d.drainEvents()).To(ConsistOf(And(HavePrefix("Normal Reminted"), ContainSubstring("All 2 APITokens"))))

	// The next rotation clears it.
	d.clock.SetTime(withdrawnAt.Add(720 * time.Hour))
	d.reconcile(t, name)
	d.clock.Step(tokensv1.DefaultPublishBefore)
	d.reconcile(t, name)
	iss = getIssuer(g, name)
	g.Expect(iss.Status.CurrentKeyID).NotTo(Equal(k4))
	withdrawn = meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysWithdrawn)
	g.Expect(withdrawn.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(withdrawn.Reason).To(Equal(tokensv1.ReasonKeysIntact))
}

// A compromised rotation that crashed between writing the Secret and the status is
// served again by the next pass: the keys it withdrew are withdrawn, not lost, and
// the key it wrote, which an attacker holding the old Secret never saw, is replaced
// all the same rather than adopted, since nothing tells it from an orphan that was
// in the leaked Secret.
func TestCompromisedRotationCrash(t *testing.T) {
	g := NewWithT(t)
	d := newDirect()
	name := "compromised-crash"
	create(t, newIssuer(name, tokensv1.AlgorithmES256))
	d.reconcile(t, name)
	k1 := getIssuer(g, name).Status.CurrentKeyID

	compromise(g, name, "1")
	d.r.Client = failingStatus(g)
	_, err := d.reconcileErr(name)
	g.Expect(err).To(MatchError(errCrash))
	written := secretKeyIDs(getSecret(g, name))
	g.Expect(written).To(HaveLen(1))
	g.Expect(written).NotTo(ContainElement(k1), "the Secret lost the compromised key first")

	d.r.Client = env.Client
	d.drainEvents()
	d.reconcile(t, name)
	iss := getIssuer(g, name)
	checkPublished(g, iss, d.clock.Now())
	g.Expect(statusKeyIDs(iss)).NotTo(ContainElement(k1))
	g.Expect(statusKeyIDs(iss)).NotTo(ContainElement(written[0]))
	g.Expect(iss.Status.LastWithdrawal.KeyIDs).To(Equal([]string{k1}))
	g.Expect(iss.Status.Conditions).NotTo(ContainElement(HaveField("Type", tokensv1.ConditionKeysLost)))
	g.Expect(d.drainEvents()).To(ContainElement(HavePrefix("Warning KeysWithdrawn")))
}

// TestCompromisedRotationRemints runs both controllers: after a compromised rotation
// every APIToken whose JWT a withdrawn key signed is re-minted with the new key, the
// validator refuses the old tokens as soon as it sees the issuer's new status, and
// opaque tokens are left alone.
func TestCompromisedRotationRemints(t *testing.T) {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(time.Minute)
	ctx := context.Background()
	ns := "remint-" + rand.String(6)
	g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	startManagerWith(t, clock.RealClock{}, true)
	name := "remint-" + rand.String(4)
	create(t, prePublished(name))

	var toks []*tokensv1.APIToken
	for i, format := range []tokensv1.TokenFormat{tokensv1.FormatJWT, tokensv1.FormatJWT, tokensv1.FormatJWT, tokensv1.FormatOpaque} {
		tok := &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok-" + string(rune('a'+i))},
			Spec:       tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: name}, Tenant: ns, Role: "viewer", Format: format},
		}
		g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
		toks = append(toks, tok)
	}
	t.Cleanup(func() { deleteTokens(t, ns) })
	ready := func(g Gomega) []tokensv1.APIToken {
		var list tokensv1.APITokenList
		g.Expect(env.Client.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(len(toks)))
		for _, tok := range list.Items {
			g.Expect(meta.IsStatusConditionTrue(tok.Status.Conditions, tokensv1.ConditionReady)).To(BeTrue(), tok.Name)
			g.Expect(tok.Status.ObservedGeneration).To(Equal(tok.Generation))
		}
		return list.Items
	}
	var old []tokensv1.APIToken
	g.Eventually(func(g Gomega) { old = ready(g) }).Should(Succeed())
	oldValues := map[string]string{}
	for _, tok := range old {
		oldValues[tok.Name] = secretValue(g, ns, tok.Name)
	}
	k1 := getIssuer(g, name).Status.CurrentKeyID

	compromise(g, name, "now")
	var withdrawnIssuer *tokensv1.ClusterTokenIssuer
	g.Eventually(func(g Gomega) {
		withdrawnIssuer = getIssuer(g, name)
		g.Expect(withdrawnIssuer.Status.LastWithdrawal).NotTo(BeNil())
	}).Should(Succeed())
	g.Expect(withdrawnIssuer.Status.LastWithdrawal.KeyIDs).To(Equal([]string{k1}))
	g.Expect(withdrawnIssuer.Status.LastWithdrawal.Tokens).To(Equal(int32(3)))
	g.Expect(statusKeyIDs(withdrawnIssuer)).NotTo(ContainElement(k1))

	// The validator, as soon as its informer delivers this issuer: every JWT signed
	// with the withdrawn key is refused, whatever its APIToken still lists.
	for _, tok := range old {
		ok, reason := validates(withdrawnIssuer, &tok, oldValues[tok.Name])
		if tok.Spec.Format == tokensv1.FormatOpaque {
			g.Expect(ok).To(BeTrue(), "opaque tokens are not signed")
			continue
		}
		g.Expect(ok).To(BeFalse(), tok.Name)
		g.Expect(reason).To(Equal(validatorapi.ReasonUnknownKey))
	}

	var reminted []tokensv1.APIToken
	g.Eventually(func(g Gomega) {
		reminted = ready(g)
		iss := getIssuer(g, name)
		g.Expect(iss.Status.LastWithdrawal.Remaining).To(BeZero())
		g.Expect(meta.FindStatusCondition(iss.Status.Conditions, tokensv1.ConditionKeysWithdrawn).Reason).To(Equal(tokensv1.ReasonReminted))
		for _, tok := range reminted {
			if tok.Spec.Format == tokensv1.FormatJWT {
				g.Expect(tok.Status.Current.SigningKeyID).To(Equal(iss.Status.CurrentKeyID), tok.Name)
			}
		}
	}).Should(Succeed())
	iss := getIssuer(g, name)
	for i, tok := range reminted {
		value := secretValue(g, ns, tok.Name)
		ok, reason := validates(iss, &tok, value)
		g.Expect(ok).To(BeTrue(), "%s: %s", tok.Name, reason)
		if tok.Spec.Format == tokensv1.FormatOpaque {
			g.Expect(tok.Status.Current.TokenID).To(Equal(old[i].Status.Current.TokenID), "opaque tokens are not re-minted")
			continue
		}
		g.Expect(value).NotTo(Equal(oldValues[tok.Name]))
		g.Expect(tok.Status.PreviousTokens).To(BeEmpty(), "a token its key no longer verifies is not kept as previous")
		ok, _ = validates(iss, &tok, oldValues[tok.Name])
		g.Expect(ok).To(BeFalse())
	}
	g.Eventually(func() []string {
		var reasons []string
		for _, e := range issuerEvents(g, name) {
			reasons = append(reasons, e.Reason)
		}
		return reasons
	}).Should(ContainElements(tokensv1.ReasonKeysWithdrawn, tokensv1.ReasonReminted))
}

// validates asks the validator's own code whether it accepts value, with an index
// holding iss and tok as its informers would deliver them.
func validates(iss *tokensv1.ClusterTokenIssuer, tok *tokensv1.APIToken, value string) (bool, string) {
	idx := index.New(index.Config{})
	idx.PutIssuer(iss)
	idx.PutTokenSet(index.NewTokenSet(tok))
	_, refusal := validator.NewAuthenticator(idx, clock.RealClock{}, nil, 0).Authenticate(value)
	if refusal != nil {
		return false, refusal.Reason
	}
	return true, ""
}
