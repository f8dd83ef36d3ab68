package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, nil) }

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeKubeconfig writes a kubeconfig for the test API server, as a pod's would be.
func writeKubeconfig(t *testing.T) string {
	cfg := env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRun runs the command as a deployment would, against a real API server, and
// checks it becomes ready, validates a token and stops cleanly.
func TestRun(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("KUBECONFIG", writeKubeconfig(t))
	addr, probes := freeAddr(t), freeAddr(t)
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--listen-address=" + addr, "--insecure-http", "--metrics-bind-address=" + probes,
			"--token-header=x-api-key", "--tenant-mismatch-status=403", "--audit-log=" + auditLog,
			// One request per 100s once a burst of 5 is spent: slow enough that the
			// limit shows in the test whatever the machine's speed.
			"--token-rate-limit=0.01", "--token-rate-burst=5",
		})
	}()
	defer func() {
		cancel()
		g.Eventually(done).WithTimeout(30 * time.Second).Should(Receive(BeNil()))
	}()

	do := func(url string, headers map[string]string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp, nil
	}
	get := func(url string, headers map[string]string) (int, error) {
		resp, err := do(url, headers)
		if err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	g.Eventually(func() (int, error) { return get("http://"+probes+"/readyz", nil) }).WithTimeout(30 * time.Second).Should(Equal(200))
	g.Expect(get("http://"+addr+"/readyz", nil)).To(Equal(200))

	// An issuer and a token, as the controllers would write them.
	key, err := token.GenerateKey(token.ES256)
	g.Expect(err).NotTo(HaveOccurred())
	j := key.PublicJWK()
	iss := &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: "main-test"}, Spec: tokensv1.ClusterTokenIssuerSpec{Issuer: "https://main-test.example"}}
	g.Expect(env.Client.Create(ctx, iss)).To(Succeed())
	iss.Status.JWKS = &tokensv1.JSONWebKeySet{Keys: []tokensv1.JSONWebKey{{Kty: j.Kty, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Crv: j.Crv, X: j.X, Y: j.Y}}}
	meta.SetStatusCondition(&iss.Status.Conditions, metav1.Condition{Type: tokensv1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1.ReasonKeyGenerated})
	g.Expect(env.Client.Status().Update(ctx, iss)).To(Succeed())
	g.Expect(env.Client.Create(ctx, testenv.Namespace("acme"))).To(Succeed())
	tok := &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "ci"}, Spec: tokensv1.APITokenSpec{IssuerRef: tokensv1.IssuerReference{Name: iss.Name}, Tenant: "acme", Role: "editor"}}
	g.Expect(env.Client.Create(ctx, tok)).To(Succeed())
	now := time.Now()
	id := token.NewTokenID()
	jwt, err := token.MintJWT(key, token.Claims{Issuer: iss.Spec.Issuer, Subject: "apitoken:acme:ci", ExpiresAt: now.Add(time.Hour), ID: id, Tenant: "acme", Role: "editor"})
	g.Expect(err).NotTo(HaveOccurred())
	tok.Status.Current = &tokensv1.IssuedToken{TokenID: id, Format: tokensv1.FormatJWT, SigningKeyID: key.ID,
		Claims: tokensv1.TokenClaims{Tenant: "acme", Role: "editor"}, IssuedAt: metav1.NewTime(now), ExpiresAt: metav1.NewTime(now.Add(time.Hour))}
	g.Expect(env.Client.Status().Update(ctx, tok)).To(Succeed())

	authorize := "http://" + addr + "/authorize?tenant=acme&role=viewer"
	g.Eventually(func() (int, error) { return get(authorize, map[string]string{"X-Api-Key": jwt}) }).WithTimeout(10 * time.Second).Should(Equal(200))
	g.Expect(get(authorize, map[string]string{"Authorization": "Bearer " + jwt})).To(Equal(200))
	g.Expect(get("http://"+addr+"/authorize?tenant=globex", map[string]string{"Authorization": "Bearer " + jwt})).To(Equal(403))
	g.Expect(get(authorize, nil)).To(Equal(401))

	// --token-rate-limit and --token-rate-burst took effect: the three requests above
	// spent three of the token's burst of five, so at most two more pass, and the 429
	// that follows says to come back in about 1/0.01s.
	var limited *http.Response
	allowed := 0
	for range 5 {
		resp, err := do(authorize, map[string]string{"Authorization": "Bearer " + jwt})
		g.Expect(err).NotTo(HaveOccurred())
		if resp.StatusCode != http.StatusOK {
			limited = resp
			break
		}
		allowed++
	}
	g.Expect(allowed).To(BeNumerically("<=", 2))
	g.Expect(limited).NotTo(BeNil(), "the token's burst is spent")
	g.Expect(limited.StatusCode).To(Equal(http.StatusTooManyRequests))
	retryAfter, err := strconv.Atoi(limited.Header.Get("Retry-After"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(retryAfter).To(BeNumerically("~", 100, 40), "Retry-After is the time one request takes to refill at 0.01/s")
	g.Expect(get("http://"+addr+"/.well-known/jwks.json?issuer=main-test", nil)).To(Equal(200))
	g.Expect(get("http://"+probes+"/metrics", nil)).To(Equal(200))
	g.Expect(get("http://"+probes+"/authorize", nil)).To(Equal(404), "the probe listener serves probes only")
	g.Expect(get("http://"+addr+"/metrics", nil)).To(Equal(404), "the API listener serves no metrics")

	// --audit-log: one JSON line per decision, naming the APIToken, never the token;
	// --tenant-header's default reads a partner's X-Tenant-Id.
	g.Expect(get("http://"+addr+"/authorize", map[string]string{"X-Tenant-Id": "globex"})).To(Equal(401))
	g.Eventually(func() (string, error) {
		b, err := os.ReadFile(auditLog)
		return string(b), err
	}).Should(And(ContainSubstring(`"decision":"allowed"`), ContainSubstring(`"apiToken":"acme/ci"`), ContainSubstring(`"reason":"Missing","required":{"tenant":"globex"}`)))
	raw, err := os.ReadFile(auditLog)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring(jwt))
}

func TestRunRefusesBadFlags(t *testing.T) {
	g := NewWithT(t)
	for _, args := range [][]string{
		{"--tenant-mismatch-status=500"},
		{"--token-id-header=x-id"},
		{"--trusted-proxies=not-a-cidr"},
		{"--audit-log=" + filepath.Join(t.TempDir(), "no-such-dir", "audit.log")},
		{"--no-such-flag"},
	} {
		g.Expect(run(context.Background(), args)).To(HaveOccurred(), fmt.Sprint(args))
	}
}
