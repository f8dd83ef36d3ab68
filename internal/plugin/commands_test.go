package plugin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

func TestList(t *testing.T) {
	f := seed(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"list", []string{"list"}}, // the kubeconfig's namespace, acme
		{"list-wide", []string{"list", "-n", "acme", "-o", "wide"}},
		{"list-all-namespaces", []string{"list", "-A", "-l", "fixture=plugin"}},
		{"list-yaml", []string{"list", "-n", "globex", "-o", "yaml"}},
		{"list-json", []string{"list", "-n", "globex", "-o", "json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			golden(t, tc.golden, normalize(mustRun(t, "", tc.args...), f.replacements()...))
		})
	}

	t.Run("no tokens", func(t *testing.T) {
		r := run("", "list", "-n", "empty")
		NewWithT(t).Expect(r.err).NotTo(HaveOccurred())
		NewWithT(t).Expect(r.out).To(BeEmpty())
		NewWithT(t).Expect(r.errOut).To(Equal("No APITokens found in namespace empty.\n"))
	})
	t.Run("unknown output", func(t *testing.T) {
		NewWithT(t).Expect(run("", "list", "-o", "xml").err).To(MatchError(ContainSubstring(`unknown output format "xml"`)))
	})
}

func TestDescribe(t *testing.T) {
	f := seed(t)
	for _, name := range []string{"ci", "dash", "old", "leaked", "pending"} {
		t.Run(name, func(t *testing.T) {
			golden(t, "describe-"+name, normalize(mustRun(t, "", "describe", name, "-n", "acme"), f.replacements()...))
		})
	}
	t.Run("not found", func(t *testing.T) {
		NewWithT(t).Expect(run("", "describe", "nope", "-n", "acme").err).To(MatchError(`APIToken "nope" not found in namespace "acme"`))
	})
}

func TestInspect(t *testing.T) {
	f := seed(t)
	g := NewWithT(t)
	stranger, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	forged, err := token.MintJWT(stranger, token.Claims{Issuer: fixtureIssuerURL, Subject: "apitoken:acme:ci", IssuedAt: now, ExpiresAt: now.Add(time.Hour), ID: idCI, Tenant: "acme", Role: "admin"})
	g.Expect(err).NotTo(HaveOccurred())
	// tampered is the ci token with its claims swapped for the globex token's: each
	// part is well formed, the signature no longer matches.
	ci, gx := strings.Split(f.tokens["ci"], "."), strings.Split(f.tokens["globex"], ".")
	tampered := ci[0] + "." + gx[1] + "." + ci[2]
	// resigned is the ci token signed again with the issuer's own key, its audience
	// widened: the ID and the signature are good, the token is not the one listed.
	resigned, err := token.MintJWT(f.key, token.Claims{Issuer: fixtureIssuerURL, Subject: "apitoken:acme:ci", Audience: []string{"billing-api", "admin-api"},
		IssuedAt: now.Add(-10 * day), NotBefore: now.Add(-10 * day), ExpiresAt: now.Add(20 * day), ID: idCI, Tenant: "acme", SubTenant: "payments", Role: "editor", Scopes: []string{"reports:read"}})
	g.Expect(err).NotTo(HaveOccurred())
	wrongSecret, err := token.MintOpaque("apt", idDash)
	g.Expect(err).NotTo(HaveOccurred())
	unknownOpaque, err := token.MintOpaque("apt", "01KAAAAAAAAAAAAAAAAAAAAAAA")
	g.Expect(err).NotTo(HaveOccurred())
	dash := f.tokens["dash"]
	// A typo in the secret part: the checksum catches it.
	i := len(dash) - 10
	typo := dash[:i] + map[bool]string{true: "B", false: "A"}[dash[i] == 'A'] + dash[i+1:]
	file := filepath.Join(t.TempDir(), "old.token")
	g.Expect(os.WriteFile(file, []byte(f.tokens["old"]+"\n"), 0o600)).To(Succeed())

	for _, tc := range []struct {
		golden string
		stdin  string
		args   []string
	}{
		{"inspect-secret-jwt", "", []string{"--secret", "ci-token", "-n", "acme"}},
		{"inspect-secret-opaque", "", []string{"--secret", "dash"}},
		{"inspect-previous", f.tokens["ciPrevious"], nil},
		{"inspect-expired-file", "", []string{"-f", file}},
		{"inspect-unknown-key", forged, nil},
		{"inspect-bad-signature", "Bearer " + tampered, nil},
		{"inspect-resigned", resigned, nil},
		{"inspect-revoked", f.tokens["leaked"], nil},
		{"inspect-other-namespace", f.tokens["globex"], nil},
		{"inspect-bad-checksum", typo, nil},
		{"inspect-wrong-secret", wrongSecret.Token, nil},
		{"inspect-unknown-opaque", unknownOpaque.Token, []string{"-A"}},
		{"inspect-malformed", "hello", nil},
		{"inspect-json", "", []string{"--secret", "ci-token", "-o", "json"}},
		{"inspect-yaml", f.tokens["ciPrevious"], []string{"-o", "yaml"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out := mustRun(t, tc.stdin, append([]string{"inspect"}, tc.args...)...)
			for name, tok := range f.tokens {
				NewWithT(t).Expect(out).NotTo(ContainSubstring(tok), "the %s token is printed without --show-token", name)
			}
			for _, tok := range []string{forged, tampered, resigned, wrongSecret.Token, typo} {
				NewWithT(t).Expect(out).NotTo(ContainSubstring(tok))
			}
			golden(t, tc.golden, normalize(out, append(f.replacements(), stranger.ID, "<stranger-kid>", file, "<file>")...))
		})
	}

	t.Run("show-token", func(t *testing.T) {
		g := NewWithT(t)
		out := mustRun(t, "", "inspect", "--secret", "ci-token", "--show-token")
		g.Expect(out).To(ContainSubstring("Token:      " + f.tokens["ci"] + "\n"))
		out = mustRun(t, "", "inspect", "--secret", "ci-token", "--show-token", "-o", "json")
		g.Expect(out).To(ContainSubstring(`"token": "` + f.tokens["ci"] + `"`))
	})
	t.Run("errors", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(run("", "inspect", "--secret", "nope").err).To(MatchError(`secret "nope" not found in namespace "acme"`))
		g.Expect(run("", "inspect").err).To(MatchError("no token in stdin"))
		g.Expect(run("", "inspect", "--secret", "ci-token", "-f", file).err).To(MatchError(ContainSubstring("exclusive")))
		g.Expect(run(f.tokens["ci"], "inspect", "--issuer", "nope").err).To(MatchError(`no ClusterTokenIssuer named "nope"`))
	})
}

func TestRotate(t *testing.T) {
	seed(t)
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, testenv.Namespace("rotations"))).To(Succeed())
	for _, name := range []string{"r1", "gone"} {
		g.Expect(env.Client.Create(ctx, &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: "rotations", Name: name},
			Spec:       tokensv1.APITokenSpec{Tenant: "rotations", Role: "viewer", Revoked: name == "gone"},
		})).To(Succeed())
	}

	clk := clocktesting.NewFakePassiveClock(now)
	r := runAt(clk, "", "rotate", "r1", "-n", "rotations")
	g.Expect(r.err).NotTo(HaveOccurred())
	golden(t, "rotate", r.out)
	g.Expect(getAPIToken(t, "rotations", "r1").Annotations).To(Equal(map[string]string{tokensv1.RotateAnnotation: "2026-11-22T06:00:00Z"}))

	// The same instant again would not rotate: refused rather than silently ignored.
	g.Expect(runAt(clk, "", "rotate", "r1", "-n", "rotations").err).To(MatchError(ContainSubstring("requested at 2026-11-22T06:00:00Z already")))

	clk.SetTime(now.Add(1500 * time.Millisecond))
	r = runAt(clk, "", "rotate", "r1", "-n", "rotations", "--retire-previous")
	g.Expect(r.err).NotTo(HaveOccurred())
	golden(t, "rotate-retire-previous", r.out)
	g.Expect(getAPIToken(t, "rotations", "r1").Annotations).To(Equal(map[string]string{
		tokensv1.RotateAnnotation: "2026-11-22T06:00:01.5Z", tokensv1.RetirePreviousAnnotation: "true",
	}))

	// A later plain rotation does not retire the previous token again.
	clk.SetTime(now.Add(time.Minute))
	g.Expect(runAt(clk, "", "rotate", "r1", "-n", "rotations").err).NotTo(HaveOccurred())
	g.Expect(getAPIToken(t, "rotations", "r1").Annotations).To(Equal(map[string]string{tokensv1.RotateAnnotation: "2026-11-22T06:01:00Z"}))

	g.Expect(run("", "rotate", "gone", "-n", "rotations").err).To(MatchError(ContainSubstring("is revoked")))
	g.Expect(getAPIToken(t, "rotations", "gone").Annotations).To(BeEmpty())
	g.Expect(run("", "rotate", "nope", "-n", "rotations").err).To(MatchError(ContainSubstring("not found")))
}

func TestRevoke(t *testing.T) {
	seed(t)
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, testenv.Namespace("revocations"))).To(Succeed())
	for _, name := range []string{"a", "b"} {
		g.Expect(env.Client.Create(ctx, &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: "revocations", Name: name},
			Spec:       tokensv1.APITokenSpec{Tenant: "revocations", Role: "editor"},
		})).To(Succeed())
	}

	for _, answer := range []string{"", "n\n", "nope\n"} {
		r := run(answer, "revoke", "a", "-n", "revocations")
		g.Expect(r.err).To(MatchError(errNotConfirmed))
		g.Expect(getAPIToken(t, "revocations", "a").Spec.Revoked).To(BeFalse())
	}
	golden(t, "revoke-declined", run("n\n", "revoke", "a", "-n", "revocations").out)

	r := run("y\n", "revoke", "a", "-n", "revocations")
	g.Expect(r.err).NotTo(HaveOccurred())
	golden(t, "revoke-confirmed", r.out)
	g.Expect(getAPIToken(t, "revocations", "a").Spec.Revoked).To(BeTrue())

	r = run("", "revoke", "b", "-n", "revocations", "--yes")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.out).To(Equal("apitoken/b revoked\n"))
	g.Expect(getAPIToken(t, "revocations", "b").Spec.Revoked).To(BeTrue())

	g.Expect(mustRun(t, "", "revoke", "b", "-n", "revocations")).To(Equal("apitoken/b is already revoked\n"))
	g.Expect(run("", "revoke", "nope", "-n", "revocations", "-y").err).To(MatchError(ContainSubstring("not found")))
}

func TestCreate(t *testing.T) {
	seed(t)
	full := []string{"create", "billing", "-n", "acme", "--tenant", "acme", "--sub-tenant", "payments", "--role", "editor",
		"--lifetime", "24h", "--renew-before", "8h", "--grace-period", "10m", "--format", "Opaque", "--scopes", "reports:read,reports:write",
		"--audiences", "billing-api", "--issuer", "default", "--secret-name", "billing-token", "--description", "billing exports"}
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"create-minimal", []string{"create", "ci2", "--tenant", "acme", "--role", "viewer"}},
		{"create-full", full},
		{"create-json", append(full, "-o", "json")},
		{"create-no-rotation", []string{"create", "once", "--tenant", "acme", "--role", "viewer", "--no-rotation", "--lifetime", "2h"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out := mustRun(t, "", tc.args...)
			golden(t, tc.golden, out)
			// The API server (OpenAPI schema and CEL rules) accepts the manifest as printed.
			obj, _, err := testenv.Codecs.UniversalDeserializer().Decode([]byte(out), nil, nil)
			NewWithT(t).Expect(err).NotTo(HaveOccurred())
			NewWithT(t).Expect(env.Client.Create(context.Background(), obj.(client.Object), client.DryRunAll)).To(Succeed())
		})
	}

	t.Run("apply", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(mustRun(t, "", append(full, "--apply")...)).To(Equal("apitoken/billing applied in namespace acme\n"))
		got := getAPIToken(t, "acme", "billing")
		g.Expect(got.Spec.Format).To(Equal(tokensv1.FormatOpaque))
		g.Expect(got.Spec.Lifetime.Duration).To(Equal(24 * time.Hour))
		g.Expect(got.Spec.Rotation.RenewBefore.Duration).To(Equal(8 * time.Hour))
		g.Expect(got.Spec.Secret.Name).To(Equal("billing-token"))
		g.Expect(got.Spec.Scopes).To(Equal([]string{"reports:read", "reports:write"}))
		g.Expect(got.Spec.IssuerRef.Name).To(Equal("default"))
		g.Expect(got.ManagedFields).To(ContainElement(HaveField("Manager", FieldManager)))

		// Applying again with another role changes the object, as kubectl apply would.
		args := append([]string{}, full...)
		args[9] = "viewer"
		mustRun(t, "", append(args, "--apply")...)
		g.Expect(getAPIToken(t, "acme", "billing").Spec.Role).To(Equal("viewer"))

		// The defaults the manifest leaves out are the API's.
		mustRun(t, "", "create", "defaults", "-n", "acme", "--tenant", "acme", "--role", "viewer", "--apply")
		d := getAPIToken(t, "acme", "defaults")
		g.Expect(d.Spec.Lifetime.Duration).To(Equal(720 * time.Hour))
		g.Expect(d.Spec.IssuerRef.Name).To(Equal("default"))
		g.Expect(env.Client.Delete(context.Background(), d)).To(Succeed())
		g.Expect(env.Client.Delete(context.Background(), &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "billing"}})).To(Succeed())
	})

	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"no tenant", []string{"--role", "viewer"}, `required flag(s) "tenant" not set`},
		{"bad format", []string{"--tenant", "acme", "--role", "viewer", "--format", "PASETO"}, `--format "PASETO": use JWT or Opaque`},
		{"short lifetime", []string{"--tenant", "acme", "--role", "viewer", "--lifetime", "30s"}, "the minimum is 1m"},
		{"renew after expiry", []string{"--tenant", "acme", "--role", "viewer", "--lifetime", "1h", "--renew-before", "2h"}, "must be shorter than --lifetime"},
		{"bad role", []string{"--tenant", "acme", "--role", "Editor"}, `--role "Editor" is not a DNS label`},
		{"bad output", []string{"--tenant", "acme", "--role", "viewer", "-o", "wide"}, `unknown output format "wide"`},
		{"no rotation with a window", []string{"--tenant", "acme", "--role", "viewer", "--no-rotation", "--grace-period", "1m"}, "--no-rotation does not go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run("", append([]string{"create", "x"}, tc.args...)...)
			NewWithT(t).Expect(r.err).To(MatchError(ContainSubstring(tc.err)))
			NewWithT(t).Expect(r.out).To(BeEmpty())
		})
	}
}

func TestRotateKey(t *testing.T) {
	seed(t)
	g := NewWithT(t)
	ctx := context.Background()
	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "rotations"},
		Spec:       tokensv1.ClusterTokenIssuerSpec{Issuer: "https://rotations.example.test"},
	}
	g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	iss.Status.Keys = []tokensv1.SigningKeyStatus{{KeyID: "kid-1", Algorithm: tokensv1.AlgorithmES256, CreatedAt: at(-day)}}
	g.Expect(env.Client.Status().Update(ctx, iss)).To(Succeed())
	annotations := func() map[string]string {
		got := &tokensv1.ClusterTokenIssuer{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "rotations"}, got)).To(Succeed())
		return got.Annotations
	}

	clk := clocktesting.NewFakePassiveClock(now)
	r := runAt(clk, "", "rotate-key", "rotations")
	g.Expect(r.err).NotTo(HaveOccurred())
	golden(t, "rotate-key", r.out)
	g.Expect(annotations()).To(Equal(map[string]string{tokensv1.RotateKeyAnnotation: "2026-11-22T06:00:00Z"}))
	g.Expect(runAt(clk, "", "rotate-key", "rotations").err).To(MatchError(ContainSubstring("requested at 2026-11-22T06:00:00Z already")))

	// --compromised asks first, and does nothing unless confirmed.
	clk.SetTime(now.Add(time.Second))
	for _, answer := range []string{"", "n\n"} {
		r = runAt(clk, answer, "rotate-key", "rotations", "--compromised")
		g.Expect(r.err).To(MatchError(errKeyRotationNotConfirmed))
		g.Expect(annotations()).To(Equal(map[string]string{tokensv1.RotateKeyAnnotation: "2026-11-22T06:00:00Z"}))
	}
	r = runAt(clk, "yes\n", "rotate-key", "rotations", "--compromised")
	g.Expect(r.err).NotTo(HaveOccurred())
	golden(t, "rotate-key-compromised", r.out)
	g.Expect(annotations()).To(Equal(map[string]string{
		tokensv1.RotateKeyAnnotation: "2026-11-22T06:00:01Z", tokensv1.KeyCompromisedAnnotation: "true",
	}))

	// A later plain rotation does not withdraw the keys again.
	clk.SetTime(now.Add(time.Minute))
	g.Expect(runAt(clk, "", "rotate-key", "rotations").err).NotTo(HaveOccurred())
	g.Expect(annotations()).To(Equal(map[string]string{tokensv1.RotateKeyAnnotation: "2026-11-22T06:01:00Z"}))

	clk.SetTime(now.Add(2 * time.Minute))
	g.Expect(runAt(clk, "", "rotate-key", "rotations", "--compromised", "--yes").err).NotTo(HaveOccurred())
	g.Expect(annotations()).To(HaveKeyWithValue(tokensv1.KeyCompromisedAnnotation, "true"))

	g.Expect(run("", "rotate-key", "nope").err).To(MatchError(`no ClusterTokenIssuer named "nope"`))
}
