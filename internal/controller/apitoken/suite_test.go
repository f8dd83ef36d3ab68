package apitoken

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// operatorNS holds the issuers' key Secrets in these tests.
const operatorNS = "apitoken-system"

var (
	// env is the control plane every test of the package shares.
	env *testenv.Env
	// k8s is an uncached client of env.
	k8s client.Client
	// clientset lists events.
	clientset kubernetes.Interface
	// recorder writes events to env, like the manager's recorder.
	recorder events.EventRecorder
)

func TestMain(m *testing.M) {
	// The machine is shared and often loaded: waits are generous, polls frequent.
	SetDefaultEventuallyTimeout(time.Minute)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	testenv.Main(m, &env, func(e *testenv.Env) error {
		k8s = e.Client
		clientset = kubernetes.NewForConfigOrDie(e.Config)
		ctx, cancel := context.WithCancel(context.Background())
		e.Cleanup(cancel)
		b := events.NewBroadcaster(&events.EventSinkImpl{Interface: clientset.EventsV1()})
		if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
			return err
		}
		e.Cleanup(b.Shutdown)
		recorder = b.NewRecorder(testenv.Scheme, "apitoken-controller")
		return k8s.Create(ctx, testenv.Namespace(operatorNS))
	})
}
