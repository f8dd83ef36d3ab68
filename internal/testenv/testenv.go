// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest)
// with the operator's CRDs installed, for the test suites of packages that talk to
// Kubernetes. The binaries come from KUBEBUILDER_ASSETS, which `make test` sets to the
// ones hack/envtest-build.sh builds from source.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// Scheme knows the built-in types and the operator's.
var Scheme = newScheme()

func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := tokensv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Codecs decodes manifests of the scheme's types.
var Codecs = serializer.NewCodecFactory(Scheme)

// Env is a running control plane.
type Env struct {
	env      *envtest.Environment
	Config   *rest.Config
	Client   client.Client
	cleanups []func()
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Option changes what Start sets up.
type Option func(*envtest.Environment)

// WithWebhooks installs the admission webhooks of config/webhook, pointed at a local
// webhook server whose address and certificates Env.Webhook describes.
func WithWebhooks() Option {
	return func(e *envtest.Environment) {
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(RepoRoot(), "config", "webhook")},
		}
	}
}

// Start starts kube-apiserver and etcd and installs the CRDs. It fails with a clear
// message when the binaries are missing, rather than letting envtest look elsewhere.
func Start(opts ...Option) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane binaries, or point it at a directory holding kube-apiserver and etcd")
	}
	e := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
	}
	for _, o := range opts {
		o(e)
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	return &Env{env: e, Config: cfg, Client: c}, nil
}

// Webhook describes the local webhook server the API server calls, when started
// WithWebhooks.
func (e *Env) Webhook() *envtest.WebhookInstallOptions { return &e.env.WebhookInstallOptions }

// Stop stops the control plane.
func (e *Env) Stop() error { return e.env.Stop() }

// Cleanup registers f to run when Main's tests are done, before the control plane
// stops, the last registered first: a setup that starts a manager or a broadcaster
// stops it there, while the API server it talks to is still up.
func (e *Env) Cleanup(f func()) { e.cleanups = append(e.cleanups, f) }

// KubeConfig returns a kubeconfig for a new cluster admin (system:masters) called
// user, for tests that run kubectl or another process against the control plane.
func (e *Env) KubeConfig(user string) ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// Main is a package's TestMain around a control plane: it starts one, sets *env, runs
// setup when given and then the tests, runs the cleanups setup registered, stops the
// control plane whatever happened (kube-apiserver and etcd must not outlive the test
// binary), and exits with the tests' code, or 1 when the control plane or setup
// failed.
func Main(m *testing.M, env **Env, setup func(*Env) error, opts ...Option) {
	os.Exit(run(m, env, setup, opts...))
}

func run(m *testing.M, env **Env, setup func(*Env) error, opts ...Option) int {
	e, err := Start(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	// Deferred after Stop, so it runs before, and Stop runs even if a cleanup panics.
	defer func() {
		for i := len(e.cleanups) - 1; i >= 0; i-- {
			e.cleanups[i]()
		}
	}()
	*env = e
	if setup != nil {
		if err := setup(e); err != nil {
			fmt.Fprintln(os.Stderr, "setting up the tests:", err)
			return 1
		}
	}
	return m.Run()
}

// Namespace returns a namespace object to create in a test.
func Namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// Buffer is a bytes.Buffer that a manager's or a server's goroutines may write to
// while the test reads it: a sink for logs and audit lines.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
