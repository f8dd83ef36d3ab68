package plugin

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/exchange"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator"
	"github.com/apitoken-operator/apitoken-operator/pkg/exchangeapi"
)

// The exchange tests run the real exchange service, as cmd/exchange assembles it
// (informers on the API server, the validator's authenticator, the key Secret read
// by name from the API server), on a local TLS listener, at the fake time now.
// Their APITokens are in namespace tools, under an issuer of their own that allows
// exchange, so the other golden files do not see them.

const (
	exchangeIssuerURL = "https://tokens.exchange.test"
	// exchangeKeysNS holds the exchange issuer's key Secret; the live test owns
	// operatorNS.
	exchangeKeysNS = "exchange-system"
	idTools        = "01KAAAAAAAAAAAAAAAAAAATX01"
	idToolsListed  = "01KAAAAAAAAAAAAAAAAAAATX02"
	idToolsEdited  = "01KAAAAAAAAAAAAAAAAAAATX03"
	idToolsRevoked = "01KAAAAAAAAAAAAAAAAAAATX04"
	idToolsLost    = "01KAAAAAAAAAAAAAAAAAAATX05"
)

// exchangeFixture is the running exchange and what it serves.
type exchangeFixture struct {
	url, caFile string
	authn       *validator.Server
	// tokens by APIToken name: ci, edited (the token its Secret holds), revoked.
	tokens map[string]string
}

func startExchange(t *testing.T) *exchangeFixture {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	c := env.Client
	for _, ns := range []string{"tools", exchangeKeysNS} {
		g.Expect(c.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	}
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	x := &exchangeFixture{tokens: map[string]string{}}

	iss := &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "exchanging"},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer: exchangeIssuerURL, Audiences: []string{"tools-api"},
			Roles:    []tokensv1.Role{{Name: "viewer"}, {Name: "editor", Includes: []string{"viewer"}}, {Name: "admin", Includes: []string{"editor"}}},
			Exchange: &tokensv1.ExchangeSpec{Enabled: true, MaxLifetime: metav1.Duration{Duration: time.Hour}},
		},
	}
	// Sent with an explicit requireSubTenant: false, since the CRD's rule that
	// requireSubTenant needs requireTenant fails on an object without the key.
	u, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(iss)
	g.Expect(err).NotTo(HaveOccurred())
	obj := &unstructured.Unstructured{Object: u}
	obj.SetGroupVersionKind(tokensv1.GroupVersion.WithKind("ClusterTokenIssuer"))
	g.Expect(unstructured.SetNestedField(obj.Object, false, "spec", "exchange", "requireSubTenant")).To(Succeed())
	g.Expect(c.Create(ctx, obj)).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Name: iss.Name}, iss)).To(Succeed())
	jwk := key.PublicJWK()
	iss.Status = tokensv1.ClusterTokenIssuerStatus{
		CurrentKeyID: key.ID,
		JWKS:         &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: jwk.Kty, Kid: jwk.Kid, Alg: jwk.Alg, Use: jwk.Use, Crv: jwk.Crv, X: jwk.X, Y: jwk.Y}}},
		Conditions:   []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonKeyGenerated, "key generated", day)},
	}
	g.Expect(c.Status().Update(ctx, iss)).To(Succeed())
	keyPEM, err := key.MarshalPrivateKey()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: exchangeKeysNS, Name: keystore.SecretName(iss.Name)},
		Data:       map[string][]byte{keystore.DataKey(key.ID): keyPEM},
	})).To(Succeed())

	claims := tokensv1.TokenClaims{Tenant: "tools", Role: "editor", Scopes: []string{"reports:read", "reports:write"}, Audiences: []string{"tools-api"}}
	mint := func(name, id string) string {
		tok, err := token.MintJWT(key, token.Claims{
			Issuer: exchangeIssuerURL, Subject: token.Subject("tools", name), Audience: claims.Audiences,
			IssuedAt: now.Add(-day), NotBefore: now.Add(-day), ExpiresAt: now.Add(20 * day), ID: id,
			Tenant: claims.Tenant, Role: claims.Role, Scopes: claims.Scopes,
		})
		g.Expect(err).NotTo(HaveOccurred())
		return tok
	}
	listed := func(id string) tokensv1.APITokenStatus {
		return tokensv1.APITokenStatus{
			Current: &tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, SigningKeyID: key.ID, Claims: claims,
				IssuedAt: at(-day), ExpiresAt: at(20 * day)},
			Conditions: []metav1.Condition{condition(tokensv1.ConditionReady, metav1.ConditionTrue, tokensv1.ReasonMinted, "token "+id+" minted", day)},
		}
	}
	spec := func(revoked bool) tokensv1.APITokenSpec {
		return tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.Name}, Tenant: claims.Tenant, Role: claims.Role,
			Scopes: claims.Scopes, Audiences: claims.Audiences, Revoked: revoked}
	}
	// tools/ci: a listed token in its Secret.
	x.tokens["ci"] = mint("ci", idTools)
	g.Expect(createToken(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "ci"}, Spec: spec(false)},
		listed(idTools), x.tokens["ci"], idTools, 20*day)).To(Succeed())
	// tools/edited: its Secret holds a well-signed token the status does not list.
	x.tokens["edited"] = mint("edited", idToolsEdited)
	g.Expect(createToken(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "edited"}, Spec: spec(false)},
		listed(idToolsListed), x.tokens["edited"], idToolsEdited, 20*day)).To(Succeed())
	// tools/revoked: revoked, its Secret not yet emptied.
	x.tokens["revoked"] = mint("revoked", idToolsRevoked)
	g.Expect(createToken(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "revoked"}, Spec: spec(true)},
		tokensv1.APITokenStatus{}, x.tokens["revoked"], idToolsRevoked, 20*day)).To(Succeed())
	// tools/lost: a listed token whose Secret someone deleted.
	g.Expect(createToken(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "lost"}, Spec: spec(false)},
		listed(idToolsLost), "", "", 0)).To(Succeed())
	// tools/pending: nothing minted yet.
	g.Expect(createToken(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "pending"}, Spec: spec(false)},
		tokensv1.APITokenStatus{}, "", "", 0)).To(Succeed())

	clk := clocktesting.NewFakeClock(now)
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	fr, err := validator.NewFront(runCtx, env.Config, &validator.FrontFlags{KubeAPIQPS: 20, KubeAPIBurst: 40}, nil, clk, logr.Discard())
	g.Expect(err).NotTo(HaveOccurred())
	x.authn = validator.New(fr.Index, validator.Options{Clock: clk, Ready: fr.Synced})
	// The key Secret is read with a client whose scheme knows Secrets: the Front's
	// knows only the operator's types.
	srv := exchange.New(x.authn, fr.Index, exchange.NewKeys(env.Client, exchangeKeysNS), exchange.Options{Clock: clk, Ready: fr.Synced, Log: testr.New(t)})
	go func() { _ = fr.Cache.Start(runCtx) }()
	g.Eventually(func() bool { return fr.Synced() && fr.Index.Token(idTools) != nil && fr.Index.Issuer(iss.Name) != nil }).
		WithTimeout(30 * time.Second).Should(BeTrue())

	hs := httptest.NewUnstartedServer(srv.Handler())
	// The unknown-CA case makes the client hang up during the handshake, on purpose.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	x.url = hs.URL
	x.caFile = filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(x.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600)).To(Succeed())
	return x
}

// exchangeArgs are the flags that reach the test's exchange.
func (x *exchangeFixture) exchangeArgs(name string, args ...string) []string {
	return append([]string{"exchange", name, "-n", "tools", "--exchange-url", x.url, "--exchange-ca-file", x.caFile}, args...)
}

func TestExchange(t *testing.T) {
	x := startExchange(t)
	noTokens := func(g Gomega, out string) {
		for name, tok := range x.tokens {
			g.Expect(out).NotTo(ContainSubstring(tok), "the %s token is printed", name)
		}
	}

	t.Run("token alone", func(t *testing.T) {
		g := NewWithT(t)
		r := run("", x.exchangeArgs("ci")...)
		g.Expect(r.err).NotTo(HaveOccurred(), r.errOut)
		g.Expect(r.errOut).To(BeEmpty())
		noTokens(g, r.out)
		g.Expect(r.out).To(HaveSuffix("\n"))
		tok := strings.TrimSuffix(r.out, "\n")
		g.Expect(tok).NotTo(ContainSubstring("\n"), "stdout is the token and nothing else")
		d := x.authn.Authenticate(tok, "")
		g.Expect(d.Status).To(BeZero(), "the validator refuses the exchanged token: %s", d.Reason)
		g.Expect(d.Identity).To(HaveField("ParentTokenID", idTools))
		g.Expect(d.Identity).To(HaveField("Subject", "apitoken:tools:ci"))
		g.Expect(d.Identity).To(HaveField("Role", "editor"))
		g.Expect(d.Identity).To(HaveField("Scopes", []string{"reports:read", "reports:write"}))
		g.Expect(d.Identity).To(HaveField("ExpiresAt", BeTemporally("==", now.Add(600*time.Second))))
	})

	t.Run("narrowed", func(t *testing.T) {
		g := NewWithT(t)
		out := mustRun(t, "", x.exchangeArgs("ci", "--role", "viewer", "--scope", "reports:read", "--audience", "tools-api", "--expiration", "5m")...)
		d := x.authn.Authenticate(strings.TrimSpace(out), "")
		g.Expect(d.Status).To(BeZero(), "the validator refuses the exchanged token: %s", d.Reason)
		g.Expect(d.Identity).To(HaveField("Role", "viewer"))
		g.Expect(d.Identity).To(HaveField("Scopes", []string{"reports:read"}))
		g.Expect(d.Identity).To(HaveField("Audiences", []string{"tools-api"}))
		g.Expect(d.Identity).To(HaveField("ExpiresAt", BeTemporally("==", now.Add(5*time.Minute))))
	})

	t.Run("json", func(t *testing.T) {
		g := NewWithT(t)
		out := mustRun(t, "", x.exchangeArgs("ci", "-o", "json", "--expiration", "10m")...)
		noTokens(g, out)
		var resp exchangeapi.TokenResponse
		g.Expect(json.Unmarshal([]byte(out), &resp)).To(Succeed())
		g.Expect(x.authn.Authenticate(resp.Token, "").Identity).To(HaveField("TokenID", resp.TokenID))
		golden(t, "exchange-json", normalize(out, resp.Token, "<token>", resp.TokenID, "<token-id>"))
	})

	t.Run("refused", func(t *testing.T) {
		// One line per failed command: its arguments, then its error.
		var lines []string
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"ci", []string{"--role", "admin"}},
			{"ci", []string{"--scope", "billing:write"}},
			{"ci", []string{"--tenant", "acme"}},
			{"ci", []string{"--audience", "billing-api"}},
			{"ci", []string{"--expiration", "2h"}},
			{"ci", []string{"--expiration", "1500ms"}},
			{"ci", []string{"-o", "yaml"}},
			{"edited", nil},
			{"revoked", nil},
			{"lost", nil},
			{"pending", nil},
			{"nope", nil},
		} {
			r := run("", x.exchangeArgs(tc.name, tc.args...)...)
			g := NewWithT(t)
			g.Expect(r.err).To(HaveOccurred(), "exchange %s %v", tc.name, tc.args)
			g.Expect(r.out).To(BeEmpty())
			noTokens(g, r.err.Error())
			lines = append(lines, fmt.Sprintf("exchange %s\n  %v", strings.Join(append([]string{tc.name}, tc.args...), " "), r.err))
		}
		golden(t, "exchange-refused", strings.Join(lines, "\n")+"\n")
	})

	t.Run("unknown CA", func(t *testing.T) {
		r := run("", "exchange", "ci", "-n", "tools", "--exchange-url", x.url)
		NewWithT(t).Expect(r.err).To(MatchError(And(
			ContainSubstring("exchanging the token of APIToken tools/ci: "),
			ContainSubstring("x509: certificate signed by unknown authority (--exchange-ca-file names the CA of the exchange's certificate)"),
		)))
	})

	t.Run("default URL", func(t *testing.T) {
		g := NewWithT(t)
		cmd := NewCommand(&Options{})
		sub, _, err := cmd.Find([]string{"exchange"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sub.Flags().Lookup("exchange-url").DefValue).To(Equal("https://apitoken-exchange.apitoken-system.svc"))
	})
}
