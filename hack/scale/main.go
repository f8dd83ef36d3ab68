// Command scale is the operator's scale benchmark (`make scale-bench`): it starts a
// local kube-apiserver and etcd (internal/localenv), the manager and the validator as
// processes at their shipped defaults, and measures in one run:
//
//   - the bound: how long the harness's client takes to create 2N Secrets, and to
//     update N of them, at the same concurrency as it creates the APITokens;
//   - mint: N APITokens created, until all are Ready, against the 2N-Secret bound;
//   - rotation: all N rotated through the rotate annotation, against the N-update bound;
//   - the writes, reads and events each token cost, from kube-apiserver's own
//     apiserver_request_total (the harness's own requests taken out), and the calls to
//     the admission webhook;
//   - restart: a new manager over the N APITokens, the time until it reconciled every
//     one of them and the writes it made doing so;
//   - the validator: a new one over the N APITokens, the time until it is ready (its
//     initial lists synced);
//   - each process's peak RSS and CPU time per phase, and when the N tokens fall due
//     for rotation, with the renewal jitter and without it.
//
// It prints a report and, with -out, appends it to a file as one JSON line. The
// figures are numbers to read, not assertions: nothing here fails on a slow run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

const (
	operatorNamespace = "apitoken-system"
	tokenNamespace    = "bench"
	boundNamespace    = "bound"
	stormNamespace    = "storm"
)

type options struct {
	n, concurrency, storm                    int
	costs, costsVariants, rounds             int
	bound, rotate, restart, validatorRestart bool
	stateDir, out                            string
	managerFlags, validatorFlags             multiFlag
	managerEnv, validatorEnv                 multiFlag
	lifetime, profile                        time.Duration
	keep                                     bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "APITokens to create.")
	flag.IntVar(&o.concurrency, "concurrency", 16, "Requests the harness's client makes in parallel, for the bound and for the APITokens alike.")
	flag.BoolVar(&o.bound, "bound", true, "Measure the 2N-Secret create and N-Secret update bounds.")
	flag.BoolVar(&o.rotate, "rotate", true, "Rotate every APIToken through the rotate annotation.")
	flag.BoolVar(&o.restart, "restart", true, "Restart the manager over the N APITokens.")
	flag.BoolVar(&o.validatorRestart, "validator-restart", true, "Restart the validator over the N APITokens.")
	flag.IntVar(&o.costs, "costs", 500, "At the end, with the operator stopped, measure what each kind of request its work is made of costs kube-apiserver, this many of each; 0: do not.")
	flag.IntVar(&o.costsVariants, "costs-variants", 0, "Instead of the benchmark: on a control plane of its own, with no manager, measure what an APIToken write costs kube-apiserver under each variant of the CRD's schema, the status's size, its field managers, the kind of write and the watches open, this many requests per variant and round (500 or more), with -rounds interleaved rounds; -profile then takes a CPU profile of kube-apiserver during the baseline status patch.")
	flag.IntVar(&o.rounds, "rounds", 2, "With -costs-variants: how many times each variant is measured, all variants once per round.")
	flag.IntVar(&o.storm, "storm", 0, "Also create this many APITokens of 2m lifetime in a namespace of their own and watch their first scheduled rotations go through the rotation budget.")
	flag.DurationVar(&o.lifetime, "lifetime", 720*time.Hour, "Lifetime of the N APITokens.")
	flag.StringVar(&o.stateDir, "state", "", "Directory for the binaries, the kubeconfig and the logs (default: a new temporary one).")
	flag.StringVar(&o.out, "out", "", "Append the report to this file, as one JSON line.")
	flag.Var(&o.managerFlags, "manager-flag", "A flag for the manager, after the harness's own (repeatable), e.g. -manager-flag=--max-concurrent-reconciles=16.")
	flag.Var(&o.validatorFlags, "validator-flag", "A flag for the validator (repeatable).")
	flag.Var(&o.managerEnv, "manager-env", "NAME=value in the manager's environment (repeatable), e.g. -manager-env=GOMEMLIMIT=460MiB, what a 512Mi container limit sets.")
	flag.Var(&o.validatorEnv, "validator-env", "NAME=value in the validator's environment (repeatable).")
	flag.BoolVar(&o.keep, "keep", false, "Keep the state directory.")
	flag.DurationVar(&o.profile, "profile", 0, "Take CPU profiles of kube-apiserver and the manager for this long from the start of the mint and of the rotation (with -costs-variants: of kube-apiserver during the baseline's writes), into the state directory (keep it with -keep or -state).")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	runner := run
	if o.costsVariants > 0 {
		runner = runVariants
	}
	if err := runner(o); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// report is everything one run measured.
type report struct {
	Date        string   `json:"date"`
	Machine     string   `json:"machine"`
	N           int      `json:"n"`
	Concurrency int      `json:"concurrency"`
	ManagerArgs []string `json:"managerArgs"`
	ManagerEnv  []string `json:"managerEnv,omitempty"`
	ValEnv      []string `json:"validatorEnv,omitempty"`

	BoundCreate2N float64 `json:"boundCreate2NSeconds,omitempty"`
	BoundUpdateN  float64 `json:"boundUpdateNSeconds,omitempty"`

	MintSeconds float64  `json:"mintSeconds"`
	MintXBound  float64  `json:"mintXBound,omitempty"`
	Mint        perToken `json:"mintPerToken"`

	RotateSeconds float64   `json:"rotateSeconds,omitempty"`
	RotateXBound  float64   `json:"rotateXBound,omitempty"`
	Rotate        *perToken `json:"rotatePerToken,omitempty"`

	RestartReconcileSeconds float64            `json:"restartReconcileSeconds,omitempty"`
	RestartWrites           float64            `json:"restartWrites"`
	RestartRequests         map[string]float64 `json:"restartRequests,omitempty"`

	ValidatorReadySeconds float64 `json:"validatorReadySeconds,omitempty"`

	// PeakRSS is each process life's VmHWM, MiB.
	PeakRSS map[string]float64 `json:"peakRSSMiB"`
	// CPU is CPU seconds by phase and process.
	CPU map[string]map[string]float64 `json:"cpuSeconds"`

	RenewalLoad renewalLoad  `json:"renewalLoad"`
	Storm       *stormReport `json:"storm,omitempty"`
	// ManagerScrape is how long one read of the manager's /metrics took, and its size.
	ManagerScrapeSeconds float64       `json:"managerScrapeSeconds,omitempty"`
	ManagerScrapeMiB     float64       `json:"managerScrapeMiB,omitempty"`
	Costs                []requestCost `json:"requestCosts,omitempty"`
}

// stormReport is how the first scheduled rotations of tokens minted together went.
type stormReport struct {
	Tokens int `json:"tokens"`
	// DueSpan is from the first renewal time to the last.
	DueSpan float64 `json:"dueSpanSeconds"`
	// Took is from the first renewal time until every token had rotated.
	Took float64 `json:"tookSeconds"`
	// PerSecond counts rotations by the second they were minted in, from the first.
	PerSecond []int `json:"rotationsPerSecond"`
}

// env is the running system of one benchmark.
type env struct {
	o          options
	dir        string
	cp         *localenv.ControlPlane
	mgrBin     string
	valBin     string
	client     client.Client // the harness's client, counted
	own        *ownRequests
	api        *apiServer
	procs      map[string]int // name -> pid, for CPU and RSS
	mgr        *localenv.Process
	mgrMetrics string
	mgrPprof   string
	mgrLives   int
	val        *localenv.Process
	valURL     string
	valLives   int
	rep        *report
}

// stateDirectory is -state, or a new temporary directory, removed by cleanup unless
// -keep.
func (o options) stateDirectory(prefix string) (dir string, cleanup func(), err error) {
	if o.stateDir != "" {
		return o.stateDir, func() {}, nil
	}
	if dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", nil, err
	}
	if o.keep {
		return dir, func() {}, nil
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, cleanup, err := o.stateDirectory("apitoken-scale-")
	if err != nil {
		return err
	}
	defer cleanup()
	e := &env{o: o, dir: dir, procs: map[string]int{}, rep: &report{
		Date: time.Now().UTC().Format(time.RFC3339), N: o.n, Concurrency: o.concurrency,
		Machine: fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version()),
		PeakRSS: map[string]float64{}, CPU: map[string]map[string]float64{},
	}}
	logf("State and logs in %s", dir)
	logf("Building the manager and the validator")
	bins, err := localenv.Binaries(filepath.Join(dir, "bin"), false)
	if err != nil {
		return err
	}
	e.mgrBin, e.valBin = bins.Manager, bins.Validator
	logf("Starting kube-apiserver and etcd")
	if e.cp, err = localenv.Start(dir); err != nil {
		return err
	}
	defer func() { _ = e.cp.Stop() }()
	defer e.stopProcesses()
	if err := e.setUp(ctx); err != nil {
		return err
	}
	if err := e.measure(ctx); err != nil {
		return err
	}
	e.print()
	if o.out != "" {
		return appendJSONLine(o.out, e.rep)
	}
	return nil
}

func (e *env) setUp(ctx context.Context) error {
	apiPID := findProcess("kube-apiserver", "--cert-dir="+filepath.Join(e.dir, "kube-apiserver"))
	if apiPID == 0 {
		return errors.New("cannot find the kube-apiserver process")
	}
	e.procs["kube-apiserver"] = apiPID
	if u := argValue(apiPID, "etcd-servers"); u != "" {
		if pid := findProcess("etcd", "--listen-client-urls="+u); pid != 0 {
			e.procs["etcd"] = pid
		}
	}
	e.procs["harness"] = os.Getpid()

	cfg := rest.CopyConfig(e.cp.Config)
	cfg.QPS, cfg.Burst = -1, 0 // the bound must not be held back by the client
	e.own = &ownRequests{}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, own: e.own} }
	var err error
	if e.client, err = client.New(cfg, client.Options{Scheme: testenv.Scheme}); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(e.cp.Config)
	if err != nil {
		return err
	}
	e.api = &apiServer{rc: cs.RESTClient()}
	for _, ns := range []string{operatorNamespace, tokenNamespace, boundNamespace, stormNamespace} {
		if err := e.cp.Client.Create(ctx, testenv.Namespace(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	if err := localenv.ApplyFile(ctx, e.cp.Client, filepath.Join(testenv.RepoRoot(), "config", "default-issuer", "clustertokenissuer.yaml")); err != nil {
		return err
	}
	if err := e.startManager(); err != nil {
		return err
	}
	iss := &tokensv1.ClusterTokenIssuer{ObjectMeta: metav1.ObjectMeta{Name: tokensv1.DefaultIssuerName}}
	if err := localenv.WaitReady(ctx, e.cp.Client, iss, 2*time.Minute); err != nil {
		return fmt.Errorf("the default issuer did not become Ready (see %s): %w", e.mgr.LogPath, err)
	}
	// The webhook answers once the manager's webhook server is up.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := e.cp.Client.Create(ctx, benchToken(tokenNamespace, "probe", time.Hour), client.DryRunAll)
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("the admission webhook never answered (see %s): %w", e.mgr.LogPath, err)
	}
	if _, err := e.startValidator(ctx); err != nil {
		return err
	}
	return nil
}

func (e *env) measure(ctx context.Context) error {
	o, r := e.o, e.rep
	if o.bound {
		logf("Bound: %d Secrets created, %d updated, %d at a time", 2*o.n, o.n, o.concurrency)
		secs := make([]*corev1.Secret, 2*o.n)
		start := time.Now()
		if err := e.parallel(2*o.n, func(i int) error {
			s := boundSecret(i)
			secs[i] = s
			return e.client.Create(ctx, s)
		}); err != nil {
			return err
		}
		r.BoundCreate2N = time.Since(start).Seconds()
		start = time.Now()
		if err := e.parallel(o.n, func(i int) error {
			secs[i].Data[tokensv1.SecretKeyTokenID] = []byte("rotated-" + strconv.Itoa(i))
			return e.client.Update(ctx, secs[i])
		}); err != nil {
			return err
		}
		r.BoundUpdateN = time.Since(start).Seconds()
		logf("    2N creates %.2fs, N updates %.2fs", r.BoundCreate2N, r.BoundUpdateN)
	}

	w, err := watchTokens(ctx, e.cp.Config, tokenNamespace)
	if err != nil {
		return err
	}
	defer w.stop()

	logf("Mint: %d APITokens created, %d at a time", o.n, o.concurrency)
	before, err := e.phaseStart(ctx)
	if err != nil {
		return err
	}
	profiled := e.profile(ctx, "mint")
	stopSampling := e.samplePeakHeap(ctx, "mint")
	start := time.Now()
	if err := e.parallel(o.n, func(i int) error {
		return e.client.Create(ctx, benchToken(tokenNamespace, tokenName(i), o.lifetime))
	}); err != nil {
		stopSampling()
		return err
	}
	logf("    created after %.2fs", time.Since(start).Seconds())
	_, err = w.waitFor(ctx, o.n, 0, timeoutFor(o.n), "Ready")
	stopSampling()
	if err != nil {
		return err
	}
	r.MintSeconds = time.Since(start).Seconds()
	if r.BoundCreate2N > 0 {
		r.MintXBound = r.MintSeconds / r.BoundCreate2N
	}
	logf("    all Ready after %.2fs", r.MintSeconds)
	// The passes woken by the manager's own Secret writes come a moment later.
	if err := e.settle(ctx, 2*o.n); err != nil {
		return err
	}
	if r.Mint, _, err = e.phaseEnd(ctx, "mint", before, o.n); err != nil {
		return err
	}
	r.RenewalLoad = loadOf(w.states(), 24)
	profiled()

	if o.rotate {
		logf("Rotation: the rotate annotation set on all %d, %d at a time", o.n, o.concurrency)
		before, err := e.phaseStart(ctx)
		if err != nil {
			return err
		}
		profiled := e.profile(ctx, "rotation")
		start = time.Now()
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+tokensv1.RotateAnnotation+`":"scale"}}}`))
		if err := e.parallel(o.n, func(i int) error {
			return e.client.Patch(ctx, &tokensv1.APIToken{ObjectMeta: metav1.ObjectMeta{Namespace: tokenNamespace, Name: tokenName(i)}}, patch)
		}); err != nil {
			return err
		}
		logf("    annotated after %.2fs", time.Since(start).Seconds())
		if _, err := w.waitFor(ctx, o.n, 1, timeoutFor(o.n), "rotated"); err != nil {
			return err
		}
		r.RotateSeconds = time.Since(start).Seconds()
		if r.BoundUpdateN > 0 {
			r.RotateXBound = r.RotateSeconds / r.BoundUpdateN
		}
		logf("    all rotated after %.2fs", r.RotateSeconds)
		if err := e.settle(ctx, 4*o.n); err != nil {
			return err
		}
		p, _, err := e.phaseEnd(ctx, "rotation", before, o.n)
		if err != nil {
			return err
		}
		r.Rotate = &p
		profiled()
	}
	e.recordRSS("manager-1", e.procs["manager"])

	if o.restart {
		logf("Restart: a new manager over the %d APITokens", o.n)
		if err := e.mgr.Stop(time.Minute); err != nil {
			return err
		}
		before, err := e.phaseStart(ctx)
		if err != nil {
			return err
		}
		start = time.Now()
		if err := e.startManager(); err != nil {
			return err
		}
		stopSampling := e.samplePeakHeap(ctx, "restart")
		profiled := e.profile(ctx, "restart")
		err = e.waitReconciled(ctx, float64(o.n), timeoutFor(o.n))
		stopSampling()
		profiled()
		if err != nil {
			return err
		}
		r.RestartReconcileSeconds = time.Since(start).Seconds()
		logf("    every APIToken reconciled %.2fs after the start", r.RestartReconcileSeconds)
		// Anything the passes still had to write would show in these seconds.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
		_, ops, err := e.phaseEnd(ctx, "restart", before, o.n)
		if err != nil {
			return err
		}
		if e.o.profile > 0 {
			e.heapProfile(ctx, "restart")
		}
		r.RestartWrites = operatorWrites(ops)
		r.RestartRequests = map[string]float64{}
		for k, v := range ops {
			r.RestartRequests[k.String()] = v
		}
		e.recordRSS(fmt.Sprintf("manager-%d", e.mgrLives), e.procs["manager"])
	}

	if o.validatorRestart {
		logf("Validator: a new one over the %d APITokens", o.n)
		e.recordRSS("validator-1", e.procs["validator"])
		if err := e.val.Stop(30 * time.Second); err != nil {
			return err
		}
		cpu := e.cpu()
		took, err := e.startValidator(ctx)
		if err != nil {
			return err
		}
		r.ValidatorReadySeconds = took.Seconds()
		r.CPU["validator-start"] = sub(e.cpu(), cpu)
		logf("    ready after %.2fs", r.ValidatorReadySeconds)
		if err := e.checkValidator(ctx); err != nil {
			return err
		}
	}
	e.recordRSS(fmt.Sprintf("validator-%d", e.valLives), e.procs["validator"])
	e.recordRSS(fmt.Sprintf("manager-%d", e.mgrLives), e.procs["manager"])

	if o.storm > 0 {
		s, err := e.stormPhase(ctx)
		if err != nil {
			return err
		}
		r.Storm = s
	}
	if err := e.scrapeManager(ctx); err != nil {
		return err
	}
	if o.costs > 0 {
		e.stopProcesses()
		if r.Costs, err = e.costsPhase(ctx, o.costs); err != nil {
			return err
		}
	}
	return nil
}

// scrapeManager reads the manager's /metrics once, as Prometheus would, and records
// how long that took and how big it was: the controller publishes series per
// APIToken.
func (e *env) scrapeManager(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.mgrMetrics+"/metrics", nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	e.rep.ManagerScrapeSeconds, e.rep.ManagerScrapeMiB = time.Since(start).Seconds(), float64(n)/(1<<20)
	return nil
}

// phaseMark is where a phase began.
type phaseMark struct {
	snap snapshot
	cpu  map[string]float64
}

func (e *env) phaseStart(ctx context.Context) (phaseMark, error) {
	s, err := e.api.snapshot(ctx)
	e.own.take()
	return phaseMark{snap: s, cpu: e.cpu()}, err
}

// phaseEnd divides what the operator asked of kube-apiserver since m by n, and
// returns the requests in all too.
func (e *env) phaseEnd(ctx context.Context, name string, m phaseMark, n int) (perToken, counts, error) {
	s, err := e.api.snapshot(ctx)
	if err != nil {
		return perToken{}, nil, err
	}
	e.rep.CPU[name] = sub(e.cpu(), m.cpu)
	ops := s.requests.sub(m.snap.requests).sub(e.own.take())
	return classify(ops, s.webhook-m.snap.webhook, n), ops, nil
}

func (e *env) cpu() map[string]float64 {
	out := map[string]float64{}
	for name, pid := range e.procs {
		if v, err := cpuSeconds(pid); err == nil {
			out[name] = v
		}
	}
	return out
}

func sub(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if bv, ok := b[k]; ok {
			out[k] = v - bv
		} else {
			out[k] = v
		}
	}
	return out
}

func (e *env) recordRSS(name string, pid int) {
	if v, err := peakRSS(pid); err == nil {
		e.rep.PeakRSS[name] = v
	}
}

func (e *env) parallel(n int, fn func(i int) error) error {
	return parallelN(n, e.o.concurrency, fn)
}

// parallelN runs fn for 0 to n-1, concurrency at a time, and returns the first error.
func parallelN(n, concurrency int, fn func(i int) error) error {
	var eg errgroup.Group
	eg.SetLimit(concurrency)
	for i := range n {
		eg.Go(func() error { return fn(i) })
	}
	return eg.Wait()
}

// timeoutFor is how long a phase over n APITokens may take before the run gives up:
// generous, for a shared machine.
func timeoutFor(n int) time.Duration { return 5*time.Minute + time.Duration(n)*50*time.Millisecond }

func (e *env) startManager() error {
	port, err := localenv.FreePort()
	if err != nil {
		return err
	}
	e.mgrMetrics = "127.0.0.1:" + strconv.Itoa(port)
	if port, err = localenv.FreePort(); err != nil {
		return err
	}
	e.mgrPprof = "127.0.0.1:" + strconv.Itoa(port)
	wh := e.cp.Webhook()
	args := []string{
		"--namespace=" + operatorNamespace,
		"--metrics-bind-address=" + e.mgrMetrics,
		"--health-probe-bind-address=127.0.0.1:0",
		"--webhook-host=" + wh.LocalServingHost,
		"--webhook-port=" + strconv.Itoa(wh.LocalServingPort),
		"--webhook-cert-dir=" + wh.LocalServingCertDir,
	}
	if e.o.profile > 0 {
		args = append(args, "--pprof-bind-address="+e.mgrPprof)
	}
	args = append(args, e.o.managerFlags...)
	e.rep.ManagerArgs, e.rep.ManagerEnv, e.rep.ValEnv = e.o.managerFlags, e.o.managerEnv, e.o.validatorEnv
	e.mgrLives++
	e.mgr, err = localenv.StartProcessWithEnv("manager", e.mgrBin, e.cp.Kubeconfig, filepath.Join(e.dir, fmt.Sprintf("manager-%d.log", e.mgrLives)), e.o.managerEnv, args...)
	if err != nil {
		return err
	}
	e.procs["manager"] = e.mgr.Pid()
	return nil
}

// startValidator starts a validator and returns how long it took to be ready.
func (e *env) startValidator(ctx context.Context) (time.Duration, error) {
	port, err := localenv.FreePort()
	if err != nil {
		return 0, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	e.valURL = "http://" + addr
	e.valLives++
	start := time.Now()
	args := append([]string{"--insecure-http", "--listen-address=" + addr}, e.o.validatorFlags...)
	e.val, err = localenv.StartProcessWithEnv("validator", e.valBin, e.cp.Kubeconfig, filepath.Join(e.dir, fmt.Sprintf("validator-%d.log", e.valLives)), e.o.validatorEnv, args...)
	if err != nil {
		return 0, err
	}
	e.procs["validator"] = e.val.Pid()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeoutFor(e.o.n), true, func(ctx context.Context) (bool, error) {
		if exited, err := e.val.Exited(); exited {
			return false, fmt.Errorf("the validator exited: %w (see %s)", err, e.val.LogPath)
		}
		return httpStatus(ctx, e.valURL+"/readyz", "") == http.StatusOK, nil
	})
	return time.Since(start), err
}

// checkValidator asks the validator about the first APIToken's token: it must know it.
func (e *env) checkValidator(ctx context.Context) error {
	sec := &corev1.Secret{}
	if err := e.cp.Client.Get(ctx, client.ObjectKey{Namespace: tokenNamespace, Name: tokenName(0)}, sec); err != nil {
		return err
	}
	if st := httpStatus(ctx, e.valURL+"/authorize?tenant="+tokenNamespace+"&role=viewer", string(sec.Data[tokensv1.SecretKeyToken])); st != http.StatusOK {
		return fmt.Errorf("the validator answered %d for a current token (see %s)", st, e.val.LogPath)
	}
	return nil
}

func httpStatus(ctx context.Context, url, bearer string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// reconciled is how many passes of the APIToken controller the current manager
// finished, from its metrics.
func (e *env) reconciled(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.mgrMetrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return reconcileTotal(resp.Body, "apitoken")
}

// waitReconciled waits until the current manager finished n passes.
func (e *env) waitReconciled(ctx context.Context, n float64, timeout time.Duration) error {
	last := time.Now()
	// Every read of the manager's metrics costs it a serialization of its per-token
	// series: read them less often the more APITokens there are.
	poll := max(100*time.Millisecond, time.Duration(e.o.n/1000)*100*time.Millisecond)
	return wait.PollUntilContextTimeout(ctx, poll, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := e.mgr.Exited(); exited {
			return false, fmt.Errorf("the manager exited: %w (see %s)", err, e.mgr.LogPath)
		}
		got, err := e.reconciled(ctx)
		if err != nil {
			return false, nil
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			logf("    %.0f of %.0f passes", got, n)
		}
		return got >= n, nil
	})
}

// settle waits until the manager has run passes passes in all: the ones the
// APITokens' changes started and the ones its own Secret writes started, a couple of
// seconds later. It gives up quietly after a minute: a pass that was never needed is
// no error, and the counts say what was asked.
func (e *env) settle(ctx context.Context, passes int) error {
	err := e.waitReconciled(ctx, float64(passes), time.Minute)
	if errors.Is(err, context.DeadlineExceeded) || wait.Interrupted(err) {
		got, _ := e.reconciled(ctx)
		logf("    %.0f passes so far (waited for %d)", got, passes)
		return nil
	}
	return err
}

// profile takes CPU profiles of kube-apiserver and the manager for -profile, in the
// background; the returned func waits for them.
func (e *env) profile(ctx context.Context, phase string) func() {
	if e.o.profile <= 0 {
		return func() {}
	}
	secs := strconv.Itoa(int(e.o.profile.Seconds()))
	var eg errgroup.Group
	eg.Go(func() error {
		raw, err := e.api.rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", secs).Timeout(e.o.profile + time.Minute).DoRaw(ctx)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(e.dir, phase+"-kube-apiserver.pprof"), raw, 0o644)
	})
	eg.Go(func() error {
		// A manager just started (the restart) listens a moment later.
		url := "http://" + e.mgrPprof + "/debug/pprof/profile?seconds=" + secs
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			conn, err := net.Dial("tcp", e.mgrPprof)
			if err != nil {
				return false, nil
			}
			return true, conn.Close()
		})
		if err != nil {
			return fmt.Errorf("the manager's pprof endpoint: %w", err)
		}
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(e.dir, phase+"-manager.pprof"), raw, 0o644)
	})
	return func() {
		if err := eg.Wait(); err != nil {
			logf("    profiling: %v", err)
		}
	}
}

// heapProfile saves the manager's heap profile into the state directory.
func (e *env) heapProfile(ctx context.Context, phase string) { e.heapProfileAt(ctx, phase, true) }

// heapProfileAt saves the manager's heap profile, after a garbage collection when gc
// is set, into the state directory.
func (e *env) heapProfileAt(ctx context.Context, phase string, gc bool) {
	url := "http://" + e.mgrPprof + "/debug/pprof/heap"
	if gc {
		url += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		logf("    heap profile: %v", err)
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(e.dir, phase+"-manager-heap.pprof"), raw, 0o644)
	}
	if err != nil {
		logf("    heap profile: %v", err)
	}
}

// samplePeakHeap, with -profile, watches the manager's resident memory until stop is
// called and saves a heap profile each time it reaches a new high, so that
// phase-peak-manager-heap.pprof shows what the heap held (as of its last garbage
// collection) when the process was at its largest: the peak sets the RSS, not the
// steady state a profile taken afterwards shows.
func (e *env) samplePeakHeap(ctx context.Context, phase string) (stop func()) {
	if e.o.profile <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var high float64
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.procs["manager"]))
			if err != nil {
				continue
			}
			rss, err := parseStatusKiB(string(raw), "VmRSS")
			if err != nil || rss < high+8 {
				continue
			}
			high = rss
			e.heapProfileAt(ctx, phase+"-peak", false)
			logf("    heap profile at %.0f MiB resident", rss)
		}
	}()
	return func() { cancel(); <-done }
}

func (e *env) stopProcesses() {
	if e.mgr != nil {
		_ = e.mgr.Stop(30 * time.Second)
		e.mgr = nil
	}
	if e.val != nil {
		_ = e.val.Stop(30 * time.Second)
		e.val = nil
	}
}

func tokenName(i int) string { return fmt.Sprintf("tok-%06d", i) }

func benchToken(ns, name string, lifetime time.Duration) *tokensv1.APIToken {
	return &tokensv1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tokensv1.APITokenSpec{
			Tenant:   ns,
			Role:     "viewer",
			Lifetime: metav1.Duration{Duration: lifetime},
		},
	}
}

// boundSecret is a Secret of about the size and shape of a token Secret.
func boundSecret(i int) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: boundNamespace, Name: fmt.Sprintf("bound-%06d", i)},
		Data: map[string][]byte{
			tokensv1.SecretKeyToken:     []byte(strings.Repeat("x", 560)),
			tokensv1.SecretKeyTokenID:   []byte(fmt.Sprintf("01JD3ZQ7M8X4VNK2H5R%07d", i)),
			tokensv1.SecretKeyExpiresAt: []byte("2030-01-01T00:00:00Z"),
			tokensv1.SecretKeyTenant:    []byte(boundNamespace),
			tokensv1.SecretKeyRole:      []byte("viewer"),
		},
	}
}
