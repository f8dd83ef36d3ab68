package install

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

var (
	env *testenv.Env
	// k8s is an admin client that also knows CRDs, to wait for them to be established.
	k8s client.Client
)

func TestMain(m *testing.M) {
	testenv.Main(m, &env, func(e *testenv.Env) error {
		scheme := k8sruntime.NewScheme()
		for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme} {
			if err := add(scheme); err != nil {
				return err
			}
		}
		var err error
		k8s, err = client.New(e.Config, client.Options{Scheme: scheme})
		return err
	})
}

var (
	chartDir  = filepath.Join(testenv.RepoRoot(), "charts", "apitoken-operator")
	configDir = filepath.Join(testenv.RepoRoot(), "config")
)

// tool is the path of a pinned tool binary: $HELM or $KUSTOMIZE as `make test` sets
// them, else the one version of it built into bin/.
func tool(t *testing.T, envVar string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	name := strings.ToLower(envVar)
	matches, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "bin", name+"-v*"))
	if len(matches) != 1 {
		t.Fatalf("$%s is not set and bin/ holds %d %s binaries: run the tests with `make test`, which builds the pinned %s into bin/ and sets $%s", envVar, len(matches), name, name, envVar)
	}
	return matches[0]
}

// manifest is a rendered install: its objects, in the order they were rendered.
type manifest []*unstructured.Unstructured

// helmTemplate renders the chart, CRDs included, into a namespace with extra --set values.
func helmTemplate(t *testing.T, namespace string, set ...string) manifest {
	t.Helper()
	args := []string{"template", "apitoken", chartDir, "--namespace", namespace, "--include-crds"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return decode(t, run(t, tool(t, "HELM"), args...))
}

// kustomizeBuild builds a kustomization of config/.
func kustomizeBuild(t *testing.T, dir string) manifest {
	t.Helper()
	return decode(t, run(t, tool(t, "KUSTOMIZE"), "build", filepath.Join(configDir, dir)))
}

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func decode(t *testing.T, data []byte) manifest {
	t.Helper()
	var m manifest
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return m
		} else if err != nil {
			t.Fatalf("decoding the rendered manifest: %v", err)
		}
		if len(obj) > 0 { // an empty document between two ---
			m = append(m, &unstructured.Unstructured{Object: obj})
		}
	}
}

// key names an object in a manifest: "Kind namespace/name".
func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// get returns the object of a kind and name, failing the test if there is none.
func (m manifest) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	if o := m.find(kind, name); o != nil {
		return o
	}
	t.Fatalf("the manifest holds no %s %q", kind, name)
	return nil
}

func (m manifest) find(kind, name string) *unstructured.Unstructured {
	for _, o := range m {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// as converts a rendered object into its typed form.
func as[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	typed := new(T)
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(o.Object, typed); err != nil {
		t.Fatalf("converting %s: %v", key(o), err)
	}
	return typed
}

// install applies every object of a manifest to the API server with server-side apply,
// as `kubectl apply --server-side` would, CRDs first, and expects each to be accepted.
func install(ctx context.Context, t *testing.T, m manifest) {
	t.Helper()
	g := NewWithT(t)
	var crds []string
	for _, o := range m {
		if o.GetKind() == "CustomResourceDefinition" {
			g.Expect(apply(ctx, o)).To(Succeed(), "applying %s", key(o))
			crds = append(crds, o.GetName())
		}
	}
	for _, name := range crds {
		eventuallyEstablished(ctx, g, name)
	}
	for _, o := range m {
		if o.GetKind() != "CustomResourceDefinition" {
			g.Expect(apply(ctx, o)).To(Succeed(), "applying %s", key(o))
		}
	}
}

func apply(ctx context.Context, o *unstructured.Unstructured) error {
	return k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
		client.FieldOwner("install-test"), client.ForceOwnership)
}

func eventuallyEstablished(ctx context.Context, g Gomega, name string) {
	g.Eventually(func(g Gomega) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, crd)).To(Succeed())
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
		}
		g.Expect(established).To(BeTrue(), "CRD %s is not established", name)
	}, 30*time.Second, 50*time.Millisecond).Should(Succeed())
}

// installThirdPartyCRDs installs stand-ins for cert-manager's and the Prometheus
// Operator's CRDs.
func installThirdPartyCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "thirdparty-crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	install(ctx, t, decode(t, data))
}

// restrictedNamespace creates a namespace that enforces the restricted Pod Security
// Standard, as the chart's NOTES suggest.
func restrictedNamespace(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	ns := testenv.Namespace(name)
	ns.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	NewWithT(t).Expect(k8s.Create(ctx, ns)).To(Succeed())
}

// expectPodsAdmitted creates, in dry-run, a pod from each Deployment's template in its
// namespace: Pod Security admission judges pods, not Deployments, and refuses them
// there when the namespace enforces a level the template does not meet.
func expectPodsAdmitted(ctx context.Context, t *testing.T, m manifest) {
	t.Helper()
	g := NewWithT(t)
	deployments := 0
	for _, o := range m {
		if o.GetKind() != "Deployment" {
			continue
		}
		deployments++
		d := as[appsv1.Deployment](t, o)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-pod", Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
			Spec:       d.Spec.Template.Spec,
		}
		g.Expect(k8s.Create(ctx, pod, client.DryRunAll)).To(Succeed(), "the pod of Deployment %s", d.Name)
	}
	g.Expect(deployments).To(BeNumerically(">", 0))
}

// serviceAccount is the user name of a ServiceAccount, for access reviews.
func serviceAccount(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// can asks the API server's authorizer whether a user may do something.
func can(ctx context.Context, g Gomega, user string, attrs authorizationv1.ResourceAttributes) bool {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, ResourceAttributes: &attrs,
	}}
	g.Expect(k8s.Create(ctx, sar)).To(Succeed())
	return sar.Status.Allowed
}

// configRules reads the rules of a Role or ClusterRole of config/rbac.
func configRules(t *testing.T, file string) any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(configDir, "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	var role map[string]any
	if err := yaml.Unmarshal(data, &role); err != nil {
		t.Fatal(err)
	}
	return role["rules"]
}

// privilegedPod is refused wherever the restricted level is enforced; the tests use it
// to show that Pod Security admission does run.
func privilegedPod(namespace string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: namespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
}
