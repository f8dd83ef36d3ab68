// Command manager runs the apitoken-operator controllers: the ClusterTokenIssuer
// controller (signing keys) and the APIToken controller (mint, rotate, revoke), under
// leader election so that exactly one replica acts at a time.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/admission"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/apitoken"
	"github.com/apitoken-operator/apitoken-operator/internal/controller/issuer"
	"github.com/apitoken-operator/apitoken-operator/internal/leader"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
)

// Defaults of the flags that set the manager's pace, from the measurements of
// docs/performance.md: more workers than 4 did not make the API server faster, and
// the client's limit is per resource, a request of each per token minted, so it must
// stay above the ~200 tokens a second the API server served at best. The rotation
// budget is well above what a steady state needs (100k tokens of 1h lifetime rotate
// 42 a second) and well below a storm's.
const (
	defaultWorkers       = 4
	defaultQPS           = 300
	defaultBurst         = 500
	defaultRotationRate  = 50
	defaultRotationBurst = 500
	// eventQueue is how many APIToken events may wait to be written: a few seconds
	// of mints at the API server's pace.
	eventQueue = 4096
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		namespace      string
		metricsAddr    string
		probeAddr      string
		pprofAddr      string
		leaderElect    bool
		leaderElectNS  string
		leaseDuration  time.Duration
		renewDeadline  time.Duration
		retryPeriod    time.Duration
		maxConcurrency int
		kubeAPIQPS     float64
		kubeAPIBurst   int
		rotationRate   float64
		rotationBurst  int
		webhookHost    string
		webhookPort    int
		certs          certFlags
	)
	flag.StringVar(&namespace, "namespace", os.Getenv("POD_NAMESPACE"), "Namespace holding the issuers' signing-key Secrets (default: $POD_NAMESPACE).")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the /metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's /debug/pprof endpoints, for profiling; empty: none.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader, so that only one replica acts at a time.")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election lease (default: --namespace).")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a standby waits, after the leader last renewed the lease, before it takes over.")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew the lease before it gives up leadership (and exits); shorter than the lease duration.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often the leader renews the lease and standbys try to take it.")
	// The defaults come from docs/performance.md (make scale-bench): the API server,
	// not the manager, sets the pace, so more workers or requests only queue there.
	flag.IntVar(&maxConcurrency, "max-concurrent-reconciles", defaultWorkers, "APITokens reconciled in parallel.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", defaultQPS, "Requests a second to the API server, sustained; 0 or less: no client-side limit (the API server's priority and fairness still applies).")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", defaultBurst, "Requests to the API server in a burst above --kube-api-qps.")
	flag.Float64Var(&rotationRate, "rotation-rate", defaultRotationRate, "Scheduled rotations a second, manager-wide: a storm of due tokens is paced to this (2 writes and an event each); 0: no pacing. First mints, repairs and requested rotations do not wait.")
	flag.IntVar(&rotationBurst, "rotation-burst", defaultRotationBurst, "Scheduled rotations in a burst above --rotation-rate.")
	flag.StringVar(&webhookHost, "webhook-host", "", "Address the admission webhook listens on (default: all).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the admission webhook.")
	certs.bind(flag.CommandLine)
	logOpts := logging.Bind(flag.CommandLine)
	flag.Parse()
	logger, capped := logOpts.Logger()
	ctrl.SetLogger(logger)
	if capped {
		logger.Info("log verbosity capped: above this level client-go logs API request bodies, which carry tokens and keys", "maxVerbosity", logging.MaxVerbosity)
	}
	if limit := setMemoryLimit(os.ReadFile); limit > 0 {
		logger.Info("Holding the Go heap under the container's memory limit", "softLimitBytes", limit)
	}

	if namespace == "" {
		return fmt.Errorf("--namespace (or $POD_NAMESPACE) is required: it is where the signing keys are kept")
	}
	if err := certs.validate(); err != nil {
		return err
	}
	if leaderElectNS == "" {
		leaderElectNS = namespace
	}

	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := tokensv1.AddToScheme(scheme); err != nil {
		return err
	}

	webhookOpts := webhook.Options{Host: webhookHost, Port: webhookPort, CertDir: certs.certDir}
	servingCert := newServingCert(&certs)
	if servingCert != nil {
		webhookOpts.TLSOpts = append(webhookOpts.TLSOpts, servingCert.tlsOption)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(kubeAPIQPS), kubeAPIBurst
	if kubeAPIQPS <= 0 {
		cfg.QPS = -1 // client-go: no rate limiter
	}
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
		LeaderElection:         leaderElect,
		LeaseDuration:          &leaseDuration,
		RenewDeadline:          &renewDeadline,
		RetryPeriod:            &retryPeriod,
		// The new leader must not act while the old one may still: give up leadership
		// on shutdown only after the controllers stopped.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controller.CacheOptions(),
		WebhookServer:                 webhook.NewServer(webhookOpts),
	}
	// The lease lock is ours, so that the controllers can tell whether the lease is
	// certainly still held before each write (see internal/leader).
	var lock *leader.Lock
	var leading func() bool
	if leaderElect {
		if lock, err = leader.NewLock(cfg, leaderElectNS, "apitoken-operator-manager", renewDeadline); err != nil {
			return err
		}
		opts.LeaderElectionResourceLockInterface, leading = lock, lock.Held
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if lock != nil {
		lock.RecordEventsWith(mgr.GetEventRecorder("apitoken-operator-manager"))
	}
	if err := setupCertRotation(mgr, &certs, namespace, servingCert); err != nil {
		return err
	}

	clk := clock.RealClock{}
	if err := (&issuer.Reconciler{
		Client:    mgr.GetClient(),
		Namespace: namespace,
		Clock:     clk,
		Recorder:  mgr.GetEventRecorder("apitoken-issuer"),
		Leading:   leading,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the issuer controller: %w", err)
	}
	// The APIToken controller's events, one per mint and each of its own, are not
	// worth the memory client-go's recorder keeps of them (controller.EventWriter).
	tokenEvents := controller.NewEventWriter(mgr.GetClient(), mgr.GetScheme(), "apitoken-controller", eventQueue, logger.WithName("events"))
	if err := mgr.Add(tokenEvents); err != nil {
		return err
	}
	if err := (&apitoken.Reconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Namespace:               namespace,
		Clock:                   clk,
		Recorder:                tokenEvents,
		MaxConcurrentReconciles: maxConcurrency,
		Leading:                 leading,
		Rotations:               apitoken.NewRotationBudget(rotationRate, rotationBurst),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the APIToken controller: %w", err)
	}

	// The webhooks answer on every replica, leader or not.
	if err := (&admission.APITokenValidator{Reader: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the admission webhook: %w", err)
	}
	if err := (&admission.CreatorRecorder{}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the mutating admission webhook: %w", err)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting the manager", "namespace", namespace, "leaderElection", leaderElect)
	return mgr.Start(ctrl.SetupSignalHandler())
}
