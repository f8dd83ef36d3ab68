package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// The webhook-cert role: cert-controller's cache lists and watches webhook
// configurations, and the rotator writes the CA bundle into ours only. Secrets need no
// rule here: the manager's ClusterRole already covers them (it writes token Secrets
// in every namespace). `make manifests` writes config/rbac/webhook-cert/role.yaml.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations;mutatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=update,resourceNames=apitoken-validating-webhook
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=update,resourceNames=apitoken-mutating-webhook

// Ways the webhook's serving certificate can be managed.
const (
	// certSelf: the manager issues and rotates the certificate itself (cert-controller),
	// and writes its CA into the validating and the mutating webhook configurations.
	certSelf = "self"
	// certExternal: something else (cert-manager, an administrator) puts tls.crt and
	// tls.key in --webhook-cert-dir and the CA bundle in the webhook configuration.
	certExternal = "external"
)

// certFlags say where the webhook's (and optionally the validator's and the
// exchange's) serving certificates come from.
type certFlags struct {
	management     string
	certDir        string
	secret         string
	service        string
	webhookConfig  string
	mutatingConfig string

	// The validator's and the exchange's certificates, each issued by a rotator of its
	// own when its Secret is named, so that an install without cert-manager still
	// serves both over TLS.
	validatorSecret  string
	validatorService string
	validatorCertDir string
	exchangeSecret   string
	exchangeService  string
	exchangeCertDir  string
}

func (f *certFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.management, "webhook-cert-management", certExternal, "Who manages the webhook's serving certificate: self (the manager issues and rotates it, and injects its CA into the webhook configuration) or external (cert-manager or an administrator fills --webhook-cert-dir).")
	fs.StringVar(&f.certDir, "webhook-cert-dir", "", "Directory with the webhook's tls.crt and tls.key, reloaded when they change (default: controller-runtime's). With self management, the Secret --webhook-cert-secret mounted there.")
	fs.StringVar(&f.secret, "webhook-cert-secret", "apitoken-webhook-cert", "Self management: Secret in --namespace holding the webhook's certificate and its CA; it must exist (the install creates it empty).")
	fs.StringVar(&f.service, "webhook-service", "apitoken-webhook", "Self management: Service in front of the webhook; the certificate is issued for <service>.<namespace>.svc.")
	fs.StringVar(&f.webhookConfig, "webhook-configuration", "apitoken-validating-webhook", "Self management: ValidatingWebhookConfiguration that receives the CA bundle.")
	fs.StringVar(&f.mutatingConfig, "mutating-webhook-configuration", "apitoken-mutating-webhook", "Self management: MutatingWebhookConfiguration (the creator annotation) that receives the CA bundle; empty: none.")
	fs.StringVar(&f.validatorSecret, "validator-cert-secret", "", "Self management: also issue the validator's serving certificate into this Secret in --namespace (it must exist); empty: do not.")
	fs.StringVar(&f.validatorService, "validator-service", "apitoken-validator", "Self management: Service in front of the validator; its certificate is issued for <service>.<namespace>.svc.")
	fs.StringVar(&f.validatorCertDir, "validator-cert-dir", "", "Self management: directory where the validator's Secret is mounted in the manager's pod; the rotator reports ready only once the certificate shows up there.")
	fs.StringVar(&f.exchangeSecret, "exchange-cert-secret", "", "Self management: also issue the token exchange's serving certificate into this Secret in --namespace (it must exist); empty: do not.")
	fs.StringVar(&f.exchangeService, "exchange-service", "apitoken-exchange", "Self management: Service in front of the token exchange; its certificate is issued for <service>.<namespace>.svc.")
	fs.StringVar(&f.exchangeCertDir, "exchange-cert-dir", "", "Self management: directory where the exchange's Secret is mounted in the manager's pod; the rotator reports ready only once the certificate shows up there.")
}

func (f *certFlags) validate() error {
	switch f.management {
	case certExternal:
		return nil
	case certSelf:
	default:
		return fmt.Errorf("--webhook-cert-management must be %q or %q, not %q", certSelf, certExternal, f.management)
	}
	if f.certDir == "" {
		// The webhook server's own default, so that the rotator watches where it reads.
		f.certDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	if f.validatorSecret != "" && f.validatorCertDir == "" {
		return errors.New("--validator-cert-secret needs --validator-cert-dir: the rotator waits for the certificate to be mounted there")
	}
	if f.exchangeSecret != "" && f.exchangeCertDir == "" {
		return errors.New("--exchange-cert-secret needs --exchange-cert-dir: the rotator waits for the certificate to be mounted there")
	}
	return nil
}

// servingCert is the webhook server's certificate under self management. The server
// starts at once, but completes no handshake until the rotator has put a valid
// certificate in the mounted Secret and its CA in the webhook configuration: until
// then the API server could not trust it anyway, and the webhook fails closed.
type servingCert struct {
	dir     string
	ready   chan struct{}
	watcher atomic.Pointer[certwatcher.CertWatcher]
}

// tlsOption makes the webhook server take its certificate from s.
func (s *servingCert) tlsOption(c *tls.Config) { c.GetCertificate = s.getCertificate }

func (s *servingCert) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	w := s.watcher.Load()
	if w == nil {
		return nil, errors.New("the webhook's serving certificate is not in place yet")
	}
	return w.GetCertificate(hello)
}

// Start waits for the rotator, then loads the mounted certificate and follows its
// rotations (the kubelet rewrites the mounted Secret, the watcher reloads it).
func (s *servingCert) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.ready:
	}
	w, err := certwatcher.New(filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the webhook's serving certificate: %w", err)
	}
	s.watcher.Store(w)
	ctrl.Log.WithName("webhook-cert").Info("Serving the webhook with the operator's certificate", "dir", s.dir)
	return w.Start(ctx)
}

// NeedLeaderElection is false: every replica serves the webhook.
func (s *servingCert) NeedLeaderElection() bool { return false }

// checker reports ready once the certificate is loaded.
func (s *servingCert) checker() healthz.Checker {
	return func(*http.Request) error {
		if s.watcher.Load() == nil {
			return errors.New("webhook serving certificate not in place")
		}
		return nil
	}
}

// newServingCert returns the certificate source of the webhook server under self
// management, or nil when the certificate is managed externally.
func newServingCert(f *certFlags) *servingCert {
	if f.management != certSelf {
		return nil
	}
	return &servingCert{dir: f.certDir, ready: make(chan struct{})}
}

// setupCertRotation adds cert-controller's rotators to the manager: one for the webhook
// (its CA injected into the webhook configuration), and one each for the validator and
// the exchange when asked. They run on every replica, not only the leader, since every
// replica serves the webhook and must have a certificate to become ready; replicas
// racing to write the first certificate are settled by the API server's optimistic
// concurrency.
//
// The rotators read their Secrets through a cache of their own, scoped to the
// operator's namespace, so the manager's cache, which holds only Secrets labelled
// apitoken.dev/managed-by, does not hide them.
func setupCertRotation(mgr ctrl.Manager, f *certFlags, namespace string, sc *servingCert) error {
	if sc == nil {
		return nil
	}
	webhooks := []rotator.WebhookInfo{{Name: f.webhookConfig, Type: rotator.Validating}}
	if f.mutatingConfig != "" {
		webhooks = append(webhooks, rotator.WebhookInfo{Name: f.mutatingConfig, Type: rotator.Mutating})
	}
	webhook := &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: namespace, Name: f.secret},
		CertDir:        f.certDir,
		CAName:         "apitoken-webhook-ca",
		CAOrganization: "apitoken-operator",
		DNSName:        serviceDNSName(f.service, namespace),
		ExtraDNSNames:  extraDNSNames(f.service, namespace),
		IsReady:        sc.ready,
		Webhooks:       webhooks,
		FieldOwner:     "apitoken-operator",
		// Inject the CA only once this replica can serve the matching certificate.
		EnableReadinessCheck: true,
		ControllerName:       "webhook-cert-rotator",
	}
	if err := rotator.AddRotator(mgr, webhook); err != nil {
		return fmt.Errorf("setting up the webhook certificate rotation: %w", err)
	}
	if err := mgr.Add(sc); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook-cert", sc.checker()); err != nil {
		return err
	}

	if f.validatorSecret != "" {
		if err := addServiceCertRotator(mgr, "validator", namespace, f.validatorSecret, f.validatorService, f.validatorCertDir); err != nil {
			return err
		}
	}
	if f.exchangeSecret != "" {
		if err := addServiceCertRotator(mgr, "exchange", namespace, f.exchangeSecret, f.exchangeService, f.exchangeCertDir); err != nil {
			return err
		}
	}
	return nil
}

// addServiceCertRotator issues and rotates the serving certificate of a component
// that reloads its mounted files itself (the validator, the exchange), under a CA of
// its own, into Secret secret for Service service.
func addServiceCertRotator(mgr ctrl.Manager, component, namespace, secret, service, certDir string) error {
	r := &rotator.CertRotator{
		SecretKey:            types.NamespacedName{Namespace: namespace, Name: secret},
		CertDir:              certDir,
		CAName:               "apitoken-" + component + "-ca",
		CAOrganization:       "apitoken-operator",
		DNSName:              serviceDNSName(service, namespace),
		ExtraDNSNames:        extraDNSNames(service, namespace),
		IsReady:              make(chan struct{}), // nobody waits: the component reloads its files
		FieldOwner:           "apitoken-operator",
		EnableReadinessCheck: true,
		ControllerName:       component + "-cert-rotator",
	}
	if err := rotator.AddRotator(mgr, r); err != nil {
		return fmt.Errorf("setting up the %s certificate rotation: %w", component, err)
	}
	return nil
}

// serviceDNSName is the name the API server uses to call a webhook Service.
func serviceDNSName(service, namespace string) string {
	return service + "." + namespace + ".svc"
}

// extraDNSNames are the other names in-cluster clients commonly use for a Service.
func extraDNSNames(service, namespace string) []string {
	return []string{service + "." + namespace, serviceDNSName(service, namespace) + ".cluster.local"}
}
