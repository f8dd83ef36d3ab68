// Package localenv runs the operator on one machine, with no cluster: a local
// kube-apiserver and etcd (the envtest binaries hack/envtest-build.sh builds) with the
// CRDs and the admission webhook configuration installed, and the manager and the
// validator as child processes. `make dev` (hack/dev) and the end-to-end tests
// (test/e2e) both stand on it.
package localenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// ControlPlane is a running kube-apiserver and etcd with the operator's CRDs and its
// ValidatingWebhookConfiguration installed. The webhook configuration points at
// Webhook().LocalServingHost:LocalServingPort, with the certificates of
// Webhook().LocalServingCertDir.
type ControlPlane struct {
	// Config and Client act as a cluster admin (system:masters).
	Config *rest.Config
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for the same admin, for processes
	// and kubectl.
	Kubeconfig string

	env *envtest.Environment
}

// Start starts etcd and kube-apiserver, installs the CRDs and the webhook
// configuration, and writes an admin kubeconfig into dir. The API server keeps its
// serving certificates in dir rather than in a directory envtest would delete on
// stop, so RestartAPIServer brings it back on the same address with the same
// certificates, and clients reconnect on their own.
func Start(dir string) (*ControlPlane, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run through make, which builds the control plane first, or point it at a directory holding kube-apiserver, etcd and kubectl")
	}
	// The certificates are made afresh by every Start: envtest creates them only in
	// an empty directory, and otherwise would not know their CA.
	certDir := filepath.Join(dir, "kube-apiserver")
	if err := os.RemoveAll(certDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	root := testenv.RepoRoot()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                testenv.Scheme,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}},
	}
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.CertDir = certDir
	logFile, err := os.OpenFile(filepath.Join(dir, "kube-apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	apiServer.Out, apiServer.Err = logFile, logFile
	// Without a grace period for watches, a stopping kube-apiserver waits for its
	// clients to hang up their watches, which informers never do: the stop would
	// time out and end with SIGKILL.
	apiServer.Configure().Set("shutdown-watch-termination-grace-period", "2s")
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cp := &ControlPlane{env: env}
	if err := cp.setUp(dir, cfg); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cp, nil
}

// setUp writes a kubeconfig for an admin of its own: envtest's admin has no
// kubeconfig of its own to hand to processes.
func (cp *ControlPlane) setUp(dir string, base *rest.Config) error {
	admin, err := cp.env.AddUser(envtest.User{Name: "localenv-admin", Groups: []string{"system:masters"}}, base)
	if err != nil {
		return err
	}
	cp.Config = admin.Config()
	raw, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, raw, 0o600); err != nil {
		return err
	}
	cp.Client, err = client.New(cp.Config, client.Options{Scheme: testenv.Scheme})
	return err
}

// Webhook says where the API server sends admission reviews: the manager's webhook
// server must listen there (--webhook-host, --webhook-port) with the certificates of
// LocalServingCertDir (--webhook-cert-dir).
func (cp *ControlPlane) Webhook() *envtest.WebhookInstallOptions {
	return &cp.env.WebhookInstallOptions
}

// WebhookAddress is LocalServingHost:LocalServingPort of Webhook.
func (cp *ControlPlane) WebhookAddress() string {
	wh := cp.Webhook()
	return net.JoinHostPort(wh.LocalServingHost, fmt.Sprint(wh.LocalServingPort))
}

// StopAPIServer stops kube-apiserver and leaves etcd running: clients see the API
// go away as they would during a control-plane upgrade.
func (cp *ControlPlane) StopAPIServer() error {
	return cp.env.ControlPlane.GetAPIServer().Stop()
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same
// address, with the same certificates and the same etcd, and returns once it is
// healthy.
func (cp *ControlPlane) StartAPIServer() error {
	return cp.env.ControlPlane.GetAPIServer().Start()
}

// Stop stops kube-apiserver and etcd.
func (cp *ControlPlane) Stop() error { return cp.env.Stop() }
