package issuer

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/apitoken"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// keyNamespace plays the operator's namespace.
const keyNamespace = "apitoken-system"

var (
	env *testenv.Env
	// start is where every fake clock starts: a whole second, as metav1.Time keeps.
	start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// globalLogs receives what logs through controller-runtime's global logger.
	globalLogs = &testenv.Buffer{}
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(newLogger(globalLogs))
	testenv.Main(m, &env, func(e *testenv.Env) error {
		return e.Client.Create(context.Background(), testenv.Namespace(keyNamespace))
	})
}

// newLogger logs everything, at every verbosity, as JSON into w.
func newLogger(w *testenv.Buffer) logr.Logger {
	return zap.New(zap.WriteTo(w), zap.Level(zapcore.Level(-10)))
}

// startManager runs the controller in a real manager, with the operator's cache
// options and clk, until the test ends. It returns what the manager logged.
func startManager(t *testing.T, clk clock.PassiveClock) *testenv.Buffer {
	t.Helper()
	return startManagerWith(t, clk, false)
}

// startManagerWith is startManager, running the APIToken controller beside the
// issuer controller when withTokens is set.
func startManagerWith(t testing.TB, clk clock.PassiveClock, withTokens bool) *testenv.Buffer {
	t.Helper()
	logs := &testenv.Buffer{}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Cache:                  controller.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 newLogger(logs),
		// Every test starts its own manager in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Namespace: keyNamespace, Clock: clk, Recorder: mgr.GetEventRecorder("apitoken-issuer")}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if withTokens {
		tr := &apitoken.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Namespace: keyNamespace, Clock: clk,
			Recorder: mgr.GetEventRecorder("apitoken-controller"), MaxConcurrentReconciles: 4}
		if err := tr.SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return logs
}

// direct is a reconciler a test calls itself, with a fake clock, reading and writing
// the API server without a cache: the way to run passes at fake times, since the
// manager's queue waits out RequeueAfter in real time.
type direct struct {
	r      *Reconciler
	clock  *clocktesting.FakeClock
	events *events.FakeRecorder
	logs   *testenv.Buffer
}

func newDirect() *direct {
	d := &direct{clock: clocktesting.NewFakeClock(start), events: events.NewFakeRecorder(4096), logs: &testenv.Buffer{}}
	d.r = &Reconciler{Client: env.Client, Namespace: keyNamespace, Clock: d.clock, Recorder: d.events}
	return d
}

// reconcile runs one pass over the issuer and fails the test on an error.
func (d *direct) reconcile(t *testing.T, name string) ctrl.Result {
	t.Helper()
	res, err := d.reconcileErr(name)
	if err != nil {
		t.Fatalf("reconciling issuer %s: %v", name, err)
	}
	return res
}

func (d *direct) reconcileErr(name string) (ctrl.Result, error) {
	ctx := ctrl.LoggerInto(context.Background(), newLogger(d.logs).WithValues("issuer", name))
	return d.r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Name: name}})
}

// drainEvents returns the events recorded since the last call, as "Type Reason Note".
func (d *direct) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-d.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// newIssuer is an issuer rotating every 720h whose tokens live at most 2160h, and
// whose new keys sign as soon as they are published (publishBefore 0s); the tests of
// pre-publication set publishBefore themselves.
func newIssuer(name string, alg tokensv1.SigningAlgorithm) *tokensv1.ClusterTokenIssuer {
	return &tokensv1.ClusterTokenIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1.ClusterTokenIssuerSpec{
			Issuer:    "https://tokens.example.test",
			Audiences: []string{"test"},
			Signing: tokensv1.SigningSpec{Algorithm: alg, KeyRotationInterval: metav1.Duration{Duration: 720 * time.Hour},
				PublishBefore: &metav1.Duration{}},
			MaxLifetime: metav1.Duration{Duration: 2160 * time.Hour},
		},
	}
}

// create creates the issuer and deletes it, and its key Secret, when the test ends:
// envtest runs no garbage collector.
func create(t testing.TB, iss *tokensv1.ClusterTokenIssuer) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, iss); err != nil {
		t.Fatalf("creating issuer %s: %v", iss.Name, err)
	}
	t.Cleanup(func() {
		for _, o := range []client.Object{
			&tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: iss.Name}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: keyNamespace, Name: keystore.SecretName(iss.Name)}},
		} {
			if err := env.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Errorf("cleaning up: %v", err)
			}
		}
	})
}

func getIssuer(g Gomega, name string) *tokensv1.ClusterTokenIssuer {
	iss := &tokensv1.ClusterTokenIssuer{}
	g.ExpectWithOffset(1, env.Client.Get(context.Background(), client.ObjectKey{Name: name}, iss)).To(Succeed())
	return iss
}

// getSecret returns the issuer's key Secret, or nil if there is none.
func getSecret(g Gomega, issuer string) *corev1.Secret {
	s := &corev1.Secret{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: keyNamespace, Name: keystore.SecretName(issuer)}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return s
}

// secretKeyIDs are the key IDs of the key entries of s.
func secretKeyIDs(s *corev1.Secret) []string {
	var ids []string
	if s == nil {
		return ids
	}
	for dataKey := range s.Data {
		if kid, ok := keystore.KeyID(dataKey); ok {
			ids = append(ids, kid)
		}
	}
	slices.Sort(ids)
	return ids
}

// statusKeyIDs are the key IDs the status lists, sorted.
func statusKeyIDs(iss *tokensv1.ClusterTokenIssuer) []string {
	ids := []string{}
	for _, k := range iss.Status.Keys {
		ids = append(ids, k.KeyID)
	}
	slices.Sort(ids)
	return ids
}

// checkPublished asserts what must hold after every successful pass at now: one
// current key, then the next key if one is published, every retired key still
// needed, the JWKS listing exactly the status's keys in the same order, and the
// Secret holding exactly their intact private keys, whose public halves are the
// published ones.
func checkPublished(g Gomega, iss *tokensv1.ClusterTokenIssuer, now time.Time) {
	st := iss.Status
	g.ExpectWithOffset(1, st.Keys).NotTo(BeEmpty())
	g.ExpectWithOffset(1, st.Keys[0].KeyID).To(Equal(st.CurrentKeyID), "the current key comes first")
	g.ExpectWithOffset(1, st.Keys[0].RetiredAt).To(BeNil())
	g.ExpectWithOffset(1, st.Keys[0].ActivatedAt).NotTo(BeNil(), "the current key records when it began to sign")
	g.ExpectWithOffset(1, st.NextRotationTime).NotTo(BeNil())
	retired := st.Keys[1:]
	if st.NextKeyID == "" {
		g.ExpectWithOffset(1, st.NextRotationTime.Time).To(BeTemporally("==", st.Keys[0].ActivatedAt.Add(iss.Spec.Signing.KeyRotationInterval.Duration)))
	} else {
		next := st.Keys[1]
		g.ExpectWithOffset(1, next.KeyID).To(Equal(st.NextKeyID), "the next key comes second")
		g.ExpectWithOffset(1, next.RetiredAt).To(BeNil())
		g.ExpectWithOffset(1, next.ActivatedAt).To(BeNil(), "the next key signs nothing yet")
		g.ExpectWithOffset(1, st.NextRotationTime.Time).To(BeTemporally("==", next.CreatedAt.Add(iss.Spec.Signing.PublishBeforeOrDefault())))
		retired = st.Keys[2:]
	}
	g.ExpectWithOffset(1, st.NextRotationTime.Time.After(now)).To(BeTrue(), "the current key is due for rotation")
	for _, k := range retired {
		g.ExpectWithOffset(1, k.RetiredAt).NotTo(BeNil(), "key %s", k.KeyID)
		g.ExpectWithOffset(1, k.ExpiresAt).NotTo(BeNil(), "key %s", k.KeyID)
		g.ExpectWithOffset(1, k.ExpiresAt.Time.After(now)).To(BeTrue(), "retired key %s expired at %s but is still published", k.KeyID, k.ExpiresAt)
	}
	g.ExpectWithOffset(1, st.KeySecretName).To(Equal(keystore.SecretName(iss.Name)))
	g.ExpectWithOffset(1, st.JWKS).NotTo(BeNil())
	g.ExpectWithOffset(1, st.JWKS.Keys).To(HaveLen(len(st.Keys)))

	secret := getSecret(g, iss.Name)
	g.ExpectWithOffset(1, secret).NotTo(BeNil())
	g.ExpectWithOffset(1, secretKeyIDs(secret)).To(Equal(statusKeyIDs(iss)), "the Secret holds exactly the published keys")
	for i, k := range st.Keys {
		key, ok := keystore.Parse(secret.Data, k.KeyID, k.Algorithm)
		g.ExpectWithOffset(1, ok).To(BeTrue(), "the private key of %s parses and its thumbprint is its kid", k.KeyID)
		g.ExpectWithOffset(1, st.JWKS.Keys[i]).To(Equal(jwk.FromToken(key.PublicJWK())))
	}
}

// issuerEvents are the events.k8s.io Events about the issuer, in any namespace.
func issuerEvents(g Gomega, name string) []eventsv1.Event {
	var list eventsv1.EventList
	g.ExpectWithOffset(1, env.Client.List(context.Background(), &list)).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "ClusterTokenIssuer" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// deleteTokens deletes the APITokens of ns and waits until their finalizers let
// them go; a manager running the APIToken controller must still run.
func deleteTokens(t testing.TB, ns string) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.DeleteAllOf(ctx, &tokensv1.APIToken{}, client.InNamespace(ns))).To(Succeed())
	g.Eventually(func(g Gomega) {
		var list tokensv1.APITokenList
		g.Expect(env.Client.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty())
	}).WithTimeout(10 * time.Minute).Should(Succeed())
}

// secretValue is the token the Secret name of ns holds.
func secretValue(g Gomega, ns, name string) string {
	s := &corev1.Secret{}
	g.ExpectWithOffset(1, env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	return string(s.Data[tokensv1.SecretKeyToken])
}

// errCrash stands for the manager dying between two writes.
var errCrash = errors.New("simulated crash")
