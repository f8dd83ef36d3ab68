package v1alpha1_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// The objects below are shaped as the controllers write them (see report, stall,
// revoke and finish in internal/controller/apitoken, checkSpec and publish in
// internal/controller/issuer): the same condition types, reasons, messages and
// observedGeneration rules, in the order a first pass sets them. The health checks
// of docs/health-checks.md and the kubectl columns are judged against them.

// fixtureNow is the time of the passes that wrote the fixtures.
var fixtureNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// state is an object in one state a user can meet.
type state struct {
	name string
	obj  client.Object
}

// tokenStates are the APIToken states of docs/health-checks.md, in its order.
func tokenStates() []state {
	return []state{
		{"created, no status yet", newToken(1, false)},
		{"minting, retried after an error", retrying(newToken(1, false))},
		{"Ready", ready(newToken(1, false), tokensv1.ReasonMinted)},
		{"Ready, written by an earlier version", writtenBefore(ready(newToken(1, false), tokensv1.ReasonMinted))},
		{"edited, not yet served", edited(ready(newToken(1, false), tokensv1.ReasonMinted))},
		{"Stalled when created", stalled(newToken(1, false), tokensv1.ReasonIssuerNotFound, "ClusterTokenIssuer default does not exist")},
		{"Stalled after an edit", stalled(edited(ready(newToken(1, false), tokensv1.ReasonMinted)), tokensv1.ReasonSecretConflict,
			"Secret ci-pipeline already exists and is not managed by this APIToken; it is left alone")},
		{"Expired", expired(ready(newToken(1, true), tokensv1.ReasonMinted))},
		// Revoking is a spec change: the first generation was served, the second revokes.
		{"Revoked", revoked(ready(newToken(1, false), tokensv1.ReasonMinted))},
	}
}

func tokenStateNamed(t *testing.T, name string) *tokensv1.APIToken {
	t.Helper()
	for _, s := range tokenStates() {
		if s.name == name {
			return s.obj.(*tokensv1.APIToken).DeepCopy()
		}
	}
	t.Fatalf("no token state %q", name)
	return nil
}

// newToken is acme/ci-pipeline as applied, with the finalizer the first pass adds.
func newToken(generation int64, rotationDisabled bool) *tokensv1.APIToken {
	tok := &tokensv1.APIToken{
		TypeMeta: metav1.TypeMeta{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "ci-pipeline", Namespace: "acme", Generation: generation,
			CreationTimestamp: metav1.NewTime(fixtureNow.Add(-time.Hour)),
			Finalizers:        []string{"apitoken.dev/finalizer"},
		},
		Spec: tokensv1.APITokenSpec{
			IssuerRef: tokensv1.IssuerReference{Name: tokensv1.DefaultIssuerName},
			Tenant:    "acme", Role: "editor",
			Lifetime: metav1.Duration{Duration: 720 * time.Hour},
		},
	}
	if rotationDisabled {
		tok.Spec.Rotation = &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled}
	}
	return tok
}

func setCondition(tok *tokensv1.APIToken, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&tok.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: tok.Generation, LastTransitionTime: metav1.NewTime(fixtureNow),
	})
}

// retrying is a pass that failed with an error retried with backoff: Ready=False
// (Progressing) with the error, observedGeneration left as it was.
func retrying(tok *tokensv1.APIToken) *tokensv1.APIToken {
	setCondition(tok, tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonProgressing,
		"writing Secret ci-pipeline: Internal error occurred: etcdserver: request timed out")
	return tok
}

// writtenBefore adds the Revoked=False and Expired=False conditions earlier versions
// set on every APIToken, which an upgraded controller keeps until its next status
// write.
func writtenBefore(tok *tokensv1.APIToken) *tokensv1.APIToken {
	setCondition(tok, tokensv1.ConditionRevoked, metav1.ConditionFalse, tokensv1.ReasonNotRevoked, "The tokens of this APIToken are not revoked")
	setCondition(tok, tokensv1.ConditionExpired, metav1.ConditionFalse, tokensv1.ReasonNotExpired, "The current token has not expired")
	return tok
}

// ready is a served APIToken: its Secret holds the current token.
func ready(tok *tokensv1.APIToken, reason string) *tokensv1.APIToken {
	issued := fixtureNow.Add(-time.Hour)
	expires := issued.Add(tok.Spec.Lifetime.Duration)
	tok.Status.Current = &tokensv1.IssuedToken{
		TokenID: "01JQ3Z8W5X7K2M4N6P8R0T2V4Y", Format: tokensv1.FormatJWT, SigningKeyID: "kid-1",
		Claims:   tokensv1.TokenClaims{Tenant: tok.Spec.Tenant, Role: tok.Spec.Role, Audiences: []string{"apitoken"}},
		IssuedAt: metav1.NewTime(issued), ExpiresAt: metav1.NewTime(expires),
	}
	tok.Status.SecretName = tok.Name
	tok.Status.ObservedGeneration = tok.Generation
	setCondition(tok, tokensv1.ConditionReady, metav1.ConditionTrue, reason, readyMessage(tok))
	if tok.Spec.Rotation == nil || tok.Spec.Rotation.Policy != tokensv1.RotationDisabled {
		renew := expires.Add(-tok.Spec.Lifetime.Duration / 3)
		tok.Status.RenewalTime = &metav1.Time{Time: renew}
	}
	return tok
}

func readyMessage(tok *tokensv1.APIToken) string {
	cur := tok.Status.Current
	return fmt.Sprintf("Secret %s holds token %s, valid until %s", tok.Status.SecretName, cur.TokenID, cur.ExpiresAt.UTC().Format(time.RFC3339))
}

// edited is a spec change the controller has not served yet.
func edited(tok *tokensv1.APIToken) *tokensv1.APIToken {
	tok.Generation++
	tok.Spec.Role = "viewer"
	return tok
}

// stalled is a pass that found the spec cannot be served: Ready=False and
// Stalled=True with the same reason, and the generation observed.
func stalled(tok *tokensv1.APIToken, reason, msg string) *tokensv1.APIToken {
	setCondition(tok, tokensv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(tok, tokensv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	tok.Status.ObservedGeneration = tok.Generation
	return tok
}

// expired is a token with rotation disabled that ran out.
func expired(tok *tokensv1.APIToken) *tokensv1.APIToken {
	cur := tok.Status.Current
	cur.IssuedAt = metav1.NewTime(fixtureNow.Add(-tok.Spec.Lifetime.Duration - time.Hour))
	cur.ExpiresAt = metav1.NewTime(fixtureNow.Add(-time.Hour))
	msg := fmt.Sprintf("Token %s expired at %s and rotation is disabled", cur.TokenID, cur.ExpiresAt.UTC().Format(time.RFC3339))
	setCondition(tok, tokensv1.ConditionExpired, metav1.ConditionTrue, tokensv1.ReasonExpired, msg)
	setCondition(tok, tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonExpired, msg)
	return tok
}

// revoked is spec.revoked set on a served token, and the pass that revoked it.
func revoked(tok *tokensv1.APIToken) *tokensv1.APIToken {
	tok.Generation++
	tok.Spec.Revoked = true
	tok.Status.Current, tok.Status.PreviousTokens, tok.Status.RenewalTime = nil, nil, nil
	msg := "All tokens of this APIToken are revoked"
	setCondition(tok, tokensv1.ConditionRevoked, metav1.ConditionTrue, tokensv1.ReasonRevoked, msg)
	setCondition(tok, tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonRevoked, msg)
	meta.RemoveStatusCondition(&tok.Status.Conditions, tokensv1.ConditionStalled)
	tok.Status.ObservedGeneration = tok.Generation
	return tok
}

// issuerStates are the ClusterTokenIssuer states of docs/health-checks.md.
func issuerStates() []state {
	return []state{
		{"created, no status yet", newIssuer()},
		{"Ready", issuerReady(newIssuer())},
		{"Ready after losing keys", issuerKeysLost(issuerReady(newIssuer()))},
		{"Stalled: invalid policy", issuerStalled(issuerReady(newIssuer()))},
	}
}

func newIssuer() *tokensv1.ClusterTokenIssuer {
	return &tokensv1.ClusterTokenIssuer{
		TypeMeta: metav1.TypeMeta{APIVersion: tokensv1.GroupVersion.String(), Kind: "ClusterTokenIssuer"},
		ObjectMeta: metav1.ObjectMeta{
			Name: tokensv1.DefaultIssuerName, Generation: 1,
			CreationTimestamp: metav1.NewTime(fixtureNow.Add(-24 * time.Hour)),
		},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:    "https://apitoken-validator.apitoken-system.svc",
			Audiences: []string{"apitoken"},
			Signing:   tokensv1.SigningSpec{Algorithm: tokensv1.AlgorithmES256, KeyRotationInterval: metav1.Duration{Duration: 2160 * time.Hour}},
		},
	}
}

func setIssuerCondition(iss *tokensv1.ClusterTokenIssuer, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&iss.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: iss.Generation, LastTransitionTime: metav1.NewTime(fixtureNow),
	})
}

func issuerReady(iss *tokensv1.ClusterTokenIssuer) *tokensv1.ClusterTokenIssuer {
	created := fixtureNow.Add(-24 * time.Hour)
	next := created.Add(iss.Spec.Signing.KeyRotationInterval.Duration)
	iss.Status.CurrentKeyID = "kid-1"
	iss.Status.Keys = []tokensv1.SigningKeyStatus{{KeyID: "kid-1", Algorithm: iss.Spec.Signing.Algorithm, CreatedAt: metav1.NewTime(created)}}
	iss.Status.JWKS = &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: "EC", Kid: "kid-1", Alg: "ES256", Use: "sig", Crv: "P-256", X: "x", Y: "y"}}}
	iss.Status.NextRotationTime = &metav1.Time{Time: next}
	iss.Status.KeySecretName = "apitoken-issuer-default-keys"
	iss.Status.ObservedGeneration = iss.Generation
	setIssuerCondition(iss, tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonKeyGenerated,
		fmt.Sprintf("Signing key kid-1 (ES256) signs new tokens; next rotation at %s.", next.Format(time.RFC3339)))
	return iss
}

func issuerKeysLost(iss *tokensv1.ClusterTokenIssuer) *tokensv1.ClusterTokenIssuer {
	setIssuerCondition(iss, tokensv1.ConditionKeysLost, metav1.ConditionTrue, tokensv1.ReasonKeysLost,
		"The private keys kid-0 are missing or corrupt in Secret apitoken-system/apitoken-issuer-default-keys: they were dropped from the JWKS, "+
			"so tokens they signed no longer verify and are re-minted.")
	return iss
}

// issuerStalled is an edit the policy refuses; the keys already published stay.
func issuerStalled(iss *tokensv1.ClusterTokenIssuer) *tokensv1.ClusterTokenIssuer {
	iss.Generation++
	msg := "The spec cannot be served: role admin includes itself through editor"
	setIssuerCondition(iss, tokensv1.ConditionStalled, metav1.ConditionTrue, tokensv1.ReasonInvalidSpec, msg)
	setIssuerCondition(iss, tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonInvalidSpec, msg)
	iss.Status.ObservedGeneration = iss.Generation
	return iss
}

// forEachState runs check, in a subtest, on every state in its JSON form, with what
// want expects of it; a state without an expectation, or an expectation without a
// state, fails the test.
func forEachState[W any](t *testing.T, states []state, want map[string]W, check func(t *testing.T, obj *unstructured.Unstructured, want W)) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.name] = true
		t.Run(s.name, func(t *testing.T) {
			w, ok := want[s.name]
			if !ok {
				t.Fatalf("no expectation for state %q", s.name)
			}
			check(t, toUnstructured(t, s.obj), w)
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("an expectation names no state: %q", name)
		}
	}
}

// toUnstructured turns a typed object into the JSON form tools read.
func toUnstructured(t *testing.T, obj k8sruntime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}
