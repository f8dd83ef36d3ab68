package plugin

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// The APITokens of namespace members, each recorded as created by someone: by the
// user the tests' kubeconfig authenticates as (me), by a GitOps controller, or, for an
// APIToken older than the record, by nobody known.
const (
	membersNS = "members"
	gitopsSA  = "system:serviceaccount:argocd:argocd-application-controller"
	idSupport = "01KAAAAAAAAAAAAAAAAAASUPRT"
)

var (
	membersOnce sync.Once
	me          string
)

// seedMembers creates the members fixtures once and returns who the tests are.
func seedMembers(t *testing.T) string {
	t.Helper()
	membersOnce.Do(func() {
		g := NewWithT(t)
		ctx := context.Background()
		review := &authnv1.SelfSubjectReview{}
		g.Expect(env.Client.Create(ctx, review)).To(Succeed())
		me = review.Status.UserInfo.Username
		g.Expect(me).NotTo(BeEmpty())
		g.Expect(env.Client.Create(ctx, testenv.Namespace(membersNS))).To(Succeed())

		ms := []tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}
		support := &tokensv1.APIToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: membersNS, Name: "support", Annotations: map[string]string{tokensv1.CreatedByAnnotation: me}},
			Spec:       tokensv1.APITokenSpec{Memberships: ms, Lifetime: metav1.Duration{Duration: 30 * day}},
		}
		g.Expect(createToken(ctx, support, tokensv1.APITokenStatus{
			Current: &tokensv1.IssuedToken{TokenID: idSupport, Format: tokensv1.FormatOpaque, TokenHash: "sha256:<hash>",
				Claims:   tokensv1.TokenClaims{Memberships: ms, Audiences: []string{"acme-apis"}},
				IssuedAt: at(-day), ExpiresAt: at(29 * day)},
			Conditions: []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonMinted, "token "+idSupport+" minted", day)},
		}, "", "", 0)).To(Succeed())
		for name, creator := range map[string]string{"bot": gitopsSA, "legacy": ""} {
			tok := &tokensv1.APIToken{
				ObjectMeta: metav1.ObjectMeta{Namespace: membersNS, Name: name},
				Spec:       tokensv1.APITokenSpec{Tenant: membersNS, Role: "viewer", Lifetime: metav1.Duration{Duration: day}},
			}
			if creator != "" {
				tok.Annotations = map[string]string{tokensv1.CreatedByAnnotation: creator}
			}
			g.Expect(createToken(ctx, tok, tokensv1.APITokenStatus{}, "", "", 0)).To(Succeed())
		}
	})
	if me == "" {
		t.Fatal("seeding the members fixtures failed")
	}
	return me
}

func TestListByCreator(t *testing.T) {
	me := seedMembers(t)
	names := func(args ...string) []string {
		t.Helper()
		var out []string
		r := run("", append([]string{"list", "-n", membersNS, "-o", "json"}, args...)...)
		NewWithT(t).Expect(r.err).NotTo(HaveOccurred())
		var list tokensv1.APITokenList
		obj, _, err := testenv.Codecs.UniversalDeserializer().Decode([]byte(r.out), nil, &list)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		for _, i := range obj.(*tokensv1.APITokenList).Items {
			out = append(out, i.Name)
		}
		return out
	}
	g := NewWithT(t)
	g.Expect(names()).To(Equal([]string{"bot", "legacy", "support"}))
	g.Expect(names("--mine")).To(Equal([]string{"support"}), "the tokens %s created", me)
	g.Expect(names("--created-by", gitopsSA)).To(Equal([]string{"bot"}))

	r := run("", "list", "-n", membersNS, "--created-by", "nobody")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.errOut).To(Equal("No APITokens created by nobody found in namespace members.\n"))
	g.Expect(run("", "list", "--mine", "--created-by", "x").err).To(MatchError(ContainSubstring("none of the others can be")))
}

// Multi-tenant APITokens: list puts each tenant and its role in the same place of the
// TENANT and ROLE columns, describe lists the memberships and who created the token.
func TestMembershipsOutput(t *testing.T) {
	me := seedMembers(t)
	golden(t, "list-memberships", normalize(mustRun(t, "", "list", "-n", membersNS), me, "<me>"))
	golden(t, "describe-memberships", normalize(mustRun(t, "", "describe", "support", "-n", membersNS), me, "<me>"))
}

func TestCreateMemberships(t *testing.T) {
	g := NewWithT(t)
	out := mustRun(t, "", "create", "support", "-n", "platform", "--membership", "acme:editor", "--membership", "globex/eu:viewer", "--lifetime", "24h")
	golden(t, "create-memberships", out)
	// The API server (OpenAPI schema and CEL rules) accepts the manifest as printed.
	obj, _, err := testenv.Codecs.UniversalDeserializer().Decode([]byte(out), nil, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Create(context.Background(), testenv.Namespace("platform"))).To(Succeed())
	g.Expect(env.Client.Create(context.Background(), obj.(client.Object), client.DryRunAll)).To(Succeed())
	g.Expect(obj.(*tokensv1.APIToken).Spec.Memberships).To(Equal([]tokensv1.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}))

	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"beside a tenant", []string{"--tenant", "acme", "--membership", "acme:editor"}, "--membership replaces --tenant, --sub-tenant and --role"},
		{"beside a role", []string{"--role", "viewer", "--membership", "acme:editor"}, "--membership replaces"},
		{"not a membership", []string{"--membership", "acme"}, `--membership "acme": a membership is "tenant:role"`},
		{"bad role", []string{"--membership", "acme:Editor"}, `--membership "acme:Editor": the membership's role is not a DNS label`},
		{"a tenant twice", []string{"--membership", "acme:editor", "--membership", "acme/eu:viewer"}, `tenant "acme" is named twice`},
		{"no role and no membership", []string{"--tenant", "acme"}, `required flag(s) "role" not set, or give --membership for each tenant`},
		{"nothing", nil, `required flag(s) "tenant", "role" not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run("", append([]string{"create", "x"}, tc.args...)...)
			NewWithT(t).Expect(r.err).To(MatchError(ContainSubstring(tc.err)))
			NewWithT(t).Expect(r.out).To(BeEmpty())
		})
	}
}

// inspect decodes the memberships claim of a multi-tenant JWT.
func TestInspectDecodesMemberships(t *testing.T) {
	g := NewWithT(t)
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	tok, err := token.MintJWT(key, token.Claims{Issuer: fixtureIssuerURL, ExpiresAt: now.Add(time.Hour), ID: idSupport,
		Memberships: []token.Membership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}})
	g.Expect(err).NotTo(HaveOccurred())
	_, c, err := decodeJWT(tok)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Memberships).To(Equal([]ClaimedMembership{{Tenant: "acme", Role: "editor"}, {Tenant: "globex", SubTenant: "eu", Role: "viewer"}}))
	g.Expect(claimedList(c.Memberships)).To(Equal("acme:editor,globex/eu:viewer"))
}
