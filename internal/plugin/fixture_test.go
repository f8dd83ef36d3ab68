package plugin

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// The golden tests run against APITokens and an issuer whose status the test writes,
// the way the controllers would leave them, at fixed times around now: the outputs
// are the same on every run. TestWithControllers runs the real controllers.

const fixtureIssuerURL = "https://tokens.example.test"

// Token IDs of the fixtures: fixed, so they can be in golden files.
const (
	idCI         = "01KAAAAAAAAAAAAAAAAAAAACI2"
	idCIPrevious = "01KAAAAAAAAAAAAAAAAAAAACI1"
	idDash       = "01KAAAAAAAAAAAAAAAAAAADASH"
	idOld        = "01KAAAAAAAAAAAAAAAAAAAAOLD"
	idLeaked     = "01KAAAAAAAAAAAAAAAAAAALEAK"
	idGlobex     = "01KAAAAAAAAAAAAAAAAAAGLOBX"
)

// fixtures is the seeded world.
type fixtures struct {
	key *token.SigningKey
	// tokens by name: ci, ciPrevious, dash, old, leaked, globex.
	tokens map[string]string
	// dashHash is the hash of the dash token, random like its secret.
	dashHash string
	// digests are the digests the ci APIToken lists its JWTs by, random like their
	// signatures.
	digests []string
}

var (
	seedOnce sync.Once
	seeded   *fixtures
	seedErr  error
)

// seed creates the fixtures once per package run.
func seed(t testing.TB) *fixtures {
	t.Helper()
	seedOnce.Do(func() { seeded, seedErr = createFixtures(context.Background()) })
	if seedErr != nil {
		t.Fatalf("seeding the fixtures: %v", seedErr)
	}
	return seeded
}

// replacements normalises what is new on every run: the issuer's key ID, the opaque
// token's hash, the JWTs' digests.
func (f *fixtures) replacements() []string {
	r := []string{f.key.ID, "<kid>", f.dashHash, "sha256:<hash>"}
	for _, d := range f.digests {
		r = append(r, d, "sha256:<digest>")
	}
	return r
}

func at(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(d)) }

func ptrTime(d time.Duration) *metav1.Time {
	t := at(d)
	return &t
}

func condition(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: at(-since), ObservedGeneration: 1}
}

const day = 24 * time.Hour

func createFixtures(ctx context.Context) (*fixtures, error) {
	c := env.Client
	key, err := token.GenerateKey(token.ES256)
	if err != nil {
		return nil, err
	}
	f := &fixtures{key: key, tokens: map[string]string{}}

	for _, ns := range []string{"acme", "globex", "empty"} {
		if err := c.Create(ctx, testenv.Namespace(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       tokensv1.ClusterTokenIssuerSpec{Issuer: fixtureIssuerURL, Audiences: []string{"acme-apis"}},
	}
	if err := c.Create(ctx, iss); err != nil {
		return nil, err
	}
	iss.Status = tokensv1.ClusterTokenIssuerStatus{
		CurrentKeyID: key.ID,
		JWKS:         &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{jwk.FromToken(key.PublicJWK())}},
		Conditions:   []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonKeyGenerated, "key generated", 60*day)},
	}
	if err := c.Status().Update(ctx, iss); err != nil {
		return nil, err
	}

	jwt := func(ns, name, id string, cl tokensv1.TokenClaims, issued, expires time.Duration) (string, error) {
		return token.MintJWT(key, token.Claims{
			Issuer: fixtureIssuerURL, Subject: "apitoken:" + ns + ":" + name, Audience: cl.Audiences,
			IssuedAt: now.Add(issued), NotBefore: now.Add(issued), ExpiresAt: now.Add(expires), ID: id,
			Tenant: cl.Tenant, SubTenant: cl.SubTenant, Role: cl.Role, Scopes: cl.Scopes,
		})
	}
	labels := map[string]string{"fixture": "plugin"}

	// acme/ci: a JWT rotated once, the previous token in its grace period, used 5m ago.
	ciClaims := tokensv1.TokenClaims{Tenant: "acme", SubTenant: "payments", Role: "editor", Scopes: []string{"reports:read"}, Audiences: []string{"billing-api"}}
	if f.tokens["ci"], err = jwt("acme", "ci", idCI, ciClaims, -10*day, 20*day); err != nil {
		return nil, err
	}
	if f.tokens["ciPrevious"], err = jwt("acme", "ci", idCIPrevious, ciClaims, -25*day, 5*day); err != nil {
		return nil, err
	}
	ci := &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "ci", Labels: labels},
		Spec: tokensv1.APITokenSpec{
			Tenant: "acme", SubTenant: "payments", Role: "editor", Scopes: []string{"reports:read"}, Audiences: []string{"billing-api"},
			Format: tokensv1.FormatJWT, Lifetime: metav1.Duration{Duration: 30 * day},
			Rotation:    &tokensv1.RotationSpec{RenewBefore: &metav1.Duration{Duration: 10 * day}, GracePeriod: &metav1.Duration{Duration: 10 * time.Minute}},
			Secret:      &tokensv1.SecretSpec{Name: "ci-token"},
			Description: "token for the CI pipeline",
		},
	}
	// The ci APIToken lists its JWTs by digest, as the controller does; the others
	// were minted before digests were recorded.
	f.digests = []string{token.Digest(f.tokens["ci"]), token.Digest(f.tokens["ciPrevious"])}
	ciStatus := tokensv1.APITokenStatus{
		Current: &tokensv1.IssuedToken{TokenID: idCI, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Digest: f.digests[0], Claims: ciClaims,
			IssuedAt: at(-10 * day), ExpiresAt: at(20 * day)},
		PreviousTokens: []tokensv1.IssuedToken{{TokenID: idCIPrevious, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Digest: f.digests[1], Claims: ciClaims,
			IssuedAt: at(-25 * day), ExpiresAt: at(5 * day), RetireAt: ptrTime(5 * time.Minute)}},
		RenewalTime: ptrTime(10 * day), Rotations: 1, SecretName: "ci-token", LastUsedTime: ptrTime(-5 * time.Minute),
		Conditions: []metav1.Condition{
			condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonRotated, "token "+idCI+" minted", 10*day),
			condition(tokensv1.ConditionRevoked, metav1.ConditionFalse, tokensv1.ReasonNotRevoked, "", 25*day),
		},
	}
	if err := createToken(ctx, ci, ciStatus, f.tokens["ci"], idCI, 20*day); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		name, reason, note, typ string
		when                    time.Duration
		count                   int32
	}{
		{"ci.minted", tokensv1.ReasonMinted, "Minted token " + idCIPrevious, corev1.EventTypeNormal, -25 * day, 0},
		{"ci.short", tokensv1.ReasonShortGracePeriod, "rotation.gracePeriod 10m0s leaves pods enough time", corev1.EventTypeNormal, -20 * day, 0},
		{"ci.rotated", tokensv1.ReasonRotated, "Rotated: token " + idCI + " replaces " + idCIPrevious, corev1.EventTypeNormal, -10 * day, 0},
		{"ci.repaired", tokensv1.ReasonSecretRepaired, "Secret ci-token was edited and has been rewritten", corev1.EventTypeWarning, -2 * time.Hour, 3},
	} {
		ev := &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: e.name},
			EventTime:  metav1.NewMicroTime(now.Add(e.when)),
			Regarding: corev1.ObjectReference{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken",
				Namespace: "acme", Name: "ci", UID: ci.UID},
			Reason: e.reason, Note: e.note, Type: e.typ, Action: "Reconcile",
			ReportingController: "apitoken-controller", ReportingInstance: "apitoken-controller-0",
		}
		if e.count > 0 {
			ev.Series = &eventsv1.EventSeries{Count: e.count, LastObservedTime: metav1.NewMicroTime(now.Add(e.when + time.Hour))}
		}
		if err := c.Create(ctx, ev); err != nil {
			return nil, err
		}
	}

	// acme/dash: an opaque viewer token, never used.
	dashTok, err := token.MintOpaque("apt", idDash)
	if err != nil {
		return nil, err
	}
	f.tokens["dash"], f.dashHash = dashTok.Token, dashTok.Hash
	dashClaims := tokensv1.TokenClaims{Tenant: "acme", Role: "viewer", Audiences: []string{"acme-apis"}}
	if err := createToken(ctx, &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "dash", Labels: labels},
		Spec:       tokensv1.APITokenSpec{Tenant: "acme", Role: "viewer", Format: tokensv1.FormatOpaque},
	}, tokensv1.APITokenStatus{
		Current:     &tokensv1.IssuedToken{TokenID: idDash, Format: tokensv1.FormatOpaque, TokenHash: dashTok.Hash, Claims: dashClaims, IssuedAt: at(-1 * day), ExpiresAt: at(29 * day)},
		RenewalTime: ptrTime(19 * day), SecretName: "dash",
		Conditions: []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonMinted, "token "+idDash+" minted", day)},
	}, dashTok.Token, idDash, 29*day); err != nil {
		return nil, err
	}

	// acme/old: rotation disabled, expired two hours ago.
	oldClaims := tokensv1.TokenClaims{Tenant: "acme", Role: "editor", Audiences: []string{"acme-apis"}}
	if f.tokens["old"], err = jwt("acme", "old", idOld, oldClaims, -3*time.Hour, -2*time.Hour); err != nil {
		return nil, err
	}
	if err := createToken(ctx, &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "old", Labels: labels},
		Spec: tokensv1.APITokenSpec{Tenant: "acme", Role: "editor", Lifetime: metav1.Duration{Duration: time.Hour},
			Rotation: &tokensv1.RotationSpec{Policy: tokensv1.RotationDisabled}},
	}, tokensv1.APITokenStatus{
		Current:    &tokensv1.IssuedToken{TokenID: idOld, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Claims: oldClaims, IssuedAt: at(-3 * time.Hour), ExpiresAt: at(-2 * time.Hour)},
		SecretName: "old", LastUsedTime: ptrTime(-150 * time.Minute),
		Conditions: []metav1.Condition{
			condition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonExpired, "token "+idOld+" expired and rotation is disabled", 2*time.Hour),
			condition(tokensv1.ConditionExpired, metav1.ConditionTrue, tokensv1.ReasonExpired, "token "+idOld+" expired", 2*time.Hour),
		},
	}, f.tokens["old"], idOld, -2*time.Hour); err != nil {
		return nil, err
	}

	// acme/leaked: revoked; its token is no longer listed.
	leakedClaims := tokensv1.TokenClaims{Tenant: "acme", Role: "admin", Audiences: []string{"acme-apis"}}
	if f.tokens["leaked"], err = jwt("acme", "leaked", idLeaked, leakedClaims, -5*day, 25*day); err != nil {
		return nil, err
	}
	if err := createToken(ctx, &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "leaked", Labels: labels},
		Spec:       tokensv1.APITokenSpec{Tenant: "acme", Role: "admin", Revoked: true},
	}, tokensv1.APITokenStatus{
		SecretName: "leaked", Rotations: 2, LastUsedTime: ptrTime(-26 * time.Hour),
		Conditions: []metav1.Condition{
			condition(tokensv1.ConditionReady, metav1.ConditionFalse, tokensv1.ReasonRevoked, "the APIToken is revoked", day),
			condition(tokensv1.ConditionRevoked, metav1.ConditionTrue, tokensv1.ReasonRevoked, "every token was revoked", day),
		},
	}, "", "", 0); err != nil {
		return nil, err
	}

	// acme/pending: just applied, nothing served yet.
	if err := createToken(ctx, &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "pending", Labels: labels},
		Spec:       tokensv1.APITokenSpec{Tenant: "acme", Role: "viewer"},
	}, tokensv1.APITokenStatus{}, "", "", 0); err != nil {
		return nil, err
	}

	// globex/ci: another tenant.
	globexClaims := tokensv1.TokenClaims{Tenant: "globex", Role: "admin", Audiences: []string{"acme-apis"}}
	if f.tokens["globex"], err = jwt("globex", "ci", idGlobex, globexClaims, -time.Hour, 719*time.Hour); err != nil {
		return nil, err
	}
	if err := createToken(ctx, &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "globex", Name: "ci", Labels: labels},
		Spec:       tokensv1.APITokenSpec{Tenant: "globex", Role: "admin"},
	}, tokensv1.APITokenStatus{
		Current:     &tokensv1.IssuedToken{TokenID: idGlobex, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Claims: globexClaims, IssuedAt: at(-time.Hour), ExpiresAt: at(719 * time.Hour)},
		RenewalTime: ptrTime(479 * time.Hour), SecretName: "ci", LastUsedTime: ptrTime(-30 * time.Second),
		Conditions: []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonMinted, "token "+idGlobex+" minted", time.Hour)},
	}, f.tokens["globex"], idGlobex, 719*time.Hour); err != nil {
		return nil, err
	}
	return f, nil
}

// createToken creates t, writes its status and, when tok is set, its Secret the way
// the controller does (owned by t, labelled, typed).
func createToken(ctx context.Context, t *tokensv1.APIToken, st tokensv1.APITokenStatus, tok, id string, expires time.Duration) error {
	c := env.Client
	if err := c.Create(ctx, t); err != nil {
		return err
	}
	if st.Current != nil || len(st.Conditions) > 0 {
		st.ObservedGeneration = t.Generation
		t.Status = st
		if err := c.Status().Update(ctx, t); err != nil {
			return err
		}
	}
	if tok == "" {
		return nil
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: t.Namespace, Name: secretName(t),
			Labels: map[string]string{tokensv1.ManagedByLabel: tokensv1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1.GroupVersion.String(), Kind: "APIToken",
				Name: t.Name, UID: t.UID, Controller: new(true)}},
		},
		Type: tokensv1.TokenSecretType,
		StringData: map[string]string{
			tokensv1.SecretKeyToken: tok, tokensv1.SecretKeyTokenID: id,
			tokensv1.SecretKeyExpiresAt: now.Add(expires).Format(time.RFC3339),
			tokensv1.SecretKeyTenant:    t.Spec.Tenant, tokensv1.SecretKeyRole: t.Spec.Role,
		},
	}
	return c.Create(ctx, sec)
}

// getAPIToken reads an APIToken afresh.
func getAPIToken(t testing.TB, ns, name string) *tokensv1.APIToken {
	t.Helper()
	out := &tokensv1.APIToken{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, out); err != nil {
		t.Fatal(err)
	}
	return out
}
