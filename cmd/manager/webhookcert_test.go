package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.Main(m, &env, nil)
}

// TestSelfManagedCertificates runs the manager's certificate rotation as the install
// sets it up (empty Secrets, a webhook configuration without CA) with the test acting as
// the kubelet that mounts the Secrets, and checks that the webhook becomes ready only
// with a certificate the API server can trust.
func TestSelfManagedCertificates(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "cert-rotation"

	// What the install creates: the namespace, the empty Secrets, the webhook configuration.
	g.Expect(env.Client.Create(ctx, testenv.Namespace(ns))).To(Succeed())
	for _, name := range []string{"apitoken-webhook-cert", "apitoken-validator-cert", "apitoken-exchange-cert"} {
		g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
	}
	vwc := &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "apitoken-validating-webhook"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "vapitoken.apitoken.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
				Name: "apitoken-webhook", Namespace: ns, Path: ptr.To("/validate"),
			}},
			// Matches nothing this package creates: the webhook is never called here.
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{"example.invalid"}, APIVersions: []string{"v1"}, Resources: []string{"nothing"}},
			}},
		}},
	}
	g.Expect(env.Client.Create(ctx, vwc)).To(Succeed())
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "apitoken-mutating-webhook"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name:                    "mapitoken.apitoken.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
				Name: "apitoken-webhook", Namespace: ns, Path: ptr.To("/mutate"),
			}},
			Rules: vwc.Webhooks[0].Rules,
		}},
	}
	g.Expect(env.Client.Create(ctx, mwc)).To(Succeed())

	flags := certFlags{
		management:       certSelf,
		certDir:          t.TempDir(),
		secret:           "apitoken-webhook-cert",
		service:          "apitoken-webhook",
		webhookConfig:    vwc.Name,
		mutatingConfig:   mwc.Name,
		validatorSecret:  "apitoken-validator-cert",
		validatorService: "apitoken-validator",
		validatorCertDir: t.TempDir(),
		exchangeSecret:   "apitoken-exchange-cert",
		exchangeService:  "apitoken-exchange",
		exchangeCertDir:  t.TempDir(),
	}
	g.Expect(flags.validate()).To(Succeed())
	sc := newServingCert(&flags)
	port := freePort(t)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The manager's real cache: it hides unlabelled Secrets such as the rotator's.
		Cache: controller.CacheOptions(),
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: "127.0.0.1", Port: port, TLSOpts: []func(*tls.Config){sc.tlsOption},
		}),
	})
	g.Expect(err).NotTo(HaveOccurred())
	mgr.GetWebhookServer() // registers the server, as the admission webhook's setup does
	g.Expect(setupCertRotation(mgr, &flags, ns, sc)).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the manager stopped with an error: %v", err)
		}
	}()

	// The rotator fills both Secrets, though the manager's cache cannot see them.
	webhookSecret := eventuallyIssued(ctx, g, client.ObjectKey{Namespace: ns, Name: flags.secret})
	validatorSecret := eventuallyIssued(ctx, g, client.ObjectKey{Namespace: ns, Name: flags.validatorSecret})
	exchangeSecret := eventuallyIssued(ctx, g, client.ObjectKey{Namespace: ns, Name: flags.exchangeSecret})

	// Not mounted yet: not ready, and no handshake succeeds.
	g.Expect(sc.checker()(nil)).To(MatchError(ContainSubstring("not in place")))
	_, err = handshake(port, webhookSecret.Data["ca.crt"], "apitoken-webhook."+ns+".svc")
	g.Expect(err).To(HaveOccurred())

	// The kubelet mounts the Secrets.
	mount(g, flags.certDir, webhookSecret)
	mount(g, flags.validatorCertDir, validatorSecret)
	mount(g, flags.exchangeCertDir, exchangeSecret)

	g.Eventually(func() error { return sc.checker()(nil) }, time.Minute, 100*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(vwc), vwc)).To(Succeed())
		g.Expect(vwc.Webhooks[0].ClientConfig.CABundle).To(Equal(webhookSecret.Data["ca.crt"]))
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
		g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(webhookSecret.Data["ca.crt"]), "the mutating webhook is served by the same certificate")
	}, time.Minute, 100*time.Millisecond).Should(Succeed())

	// The API server, trusting the injected CA, can call the webhook under its Service name.
	cert, err := handshake(port, vwc.Webhooks[0].ClientConfig.CABundle, "apitoken-webhook."+ns+".svc")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cert.DNSNames).To(ContainElement("apitoken-webhook." + ns + ".svc"))

	// The validator's certificate is for its Service and chains to its own CA.
	g.Expect(verifyCert(validatorSecret.Data["tls.crt"], validatorSecret.Data["ca.crt"], "apitoken-validator."+ns+".svc")).To(Succeed())
	g.Expect(verifyCert(validatorSecret.Data["tls.crt"], validatorSecret.Data["ca.crt"], "apitoken-validator."+ns)).To(Succeed())

	// So is the exchange's, under a CA of its own: trusting one component's CA is not
	// trusting the other's certificate.
	g.Expect(verifyCert(exchangeSecret.Data["tls.crt"], exchangeSecret.Data["ca.crt"], "apitoken-exchange."+ns+".svc")).To(Succeed())
	g.Expect(verifyCert(exchangeSecret.Data["tls.crt"], exchangeSecret.Data["ca.crt"], "apitoken-exchange."+ns+".svc.cluster.local")).To(Succeed())
	g.Expect(verifyCert(exchangeSecret.Data["tls.crt"], validatorSecret.Data["ca.crt"], "apitoken-exchange."+ns+".svc")).NotTo(Succeed())
	g.Expect(verifyCert(exchangeSecret.Data["tls.crt"], exchangeSecret.Data["ca.crt"], "apitoken-validator."+ns+".svc")).NotTo(Succeed())
}

func TestCertFlagsValidate(t *testing.T) {
	tests := []struct {
		name    string
		flags   certFlags
		wantErr string
	}{
		{name: "external needs nothing", flags: certFlags{management: certExternal}},
		{name: "self defaults the cert dir", flags: certFlags{management: certSelf}},
		{name: "unknown mode", flags: certFlags{management: "cert-manager"}, wantErr: "must be"},
		{name: "validator secret without its dir", flags: certFlags{management: certSelf, validatorSecret: "v"}, wantErr: "--validator-cert-dir"},
		{name: "exchange secret without its dir", flags: certFlags{management: certSelf, exchangeSecret: "x"}, wantErr: "--exchange-cert-dir"},
		{name: "exchange secret with its dir", flags: certFlags{management: certSelf, exchangeSecret: "x", exchangeCertDir: "/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := tt.flags.validate()
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			if tt.flags.management == certSelf {
				g.Expect(tt.flags.certDir).NotTo(BeEmpty())
			}
		})
	}
}

// eventuallyIssued waits for the rotator to write a certificate into a Secret.
func eventuallyIssued(ctx context.Context, g *WithT, key client.ObjectKey) *corev1.Secret {
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, key, sec)).To(Succeed())
		g.Expect(sec.Data).To(HaveKey("tls.crt"))
		g.Expect(sec.Data).To(HaveKey("tls.key"))
		g.Expect(sec.Data).To(HaveKey("ca.crt"))
	}, time.Minute, 100*time.Millisecond).Should(Succeed())
	return sec
}

// mount writes a Secret's keys as files, as the kubelet does for a Secret volume.
func mount(g *WithT, dir string, sec *corev1.Secret) {
	for k, v := range sec.Data {
		g.Expect(os.WriteFile(filepath.Join(dir, k), v, 0o600)).To(Succeed())
	}
}

// handshake connects to the webhook server as the API server would, trusting caPEM.
func handshake(port int, caPEM []byte, serverName string) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), &tls.Config{
		RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func verifyCert(certPEM, caPEM []byte, dnsName string) error {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return fmt.Errorf("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName})
	return err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
