package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/localenv"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// writeKind is the request a variant measures.
type writeKind string

const (
	// writeStatusMerge is the controller's write: a JSON merge patch of the status
	// subresource, without the resourceVersion.
	writeStatusMerge writeKind = "merge patch status"
	// writeStatusMergeLocked is the same with metadata.resourceVersion in the patch,
	// as PatchStatus sends it (internal/controller/write.go).
	writeStatusMergeLocked writeKind = "merge patch status, resourceVersion"
	// writeStatusApply is a server-side apply of the status.
	writeStatusApply writeKind = "apply status"
	// writeStatusPut is a PUT of the whole object to the status subresource.
	writeStatusPut writeKind = "PUT status"
	// writeFirstStatus is the merge patch of the first token: the status was empty.
	writeFirstStatus writeKind = "merge patch status, first token"
	// writeAnnotation is a merge patch of the main resource: the rotate annotation.
	writeAnnotation writeKind = "merge patch rotate annotation"
	// writeSecretPut and writeSecretMerge write Secrets, for reference.
	writeSecretPut   writeKind = "PUT secret"
	writeSecretMerge writeKind = "merge patch secret"
)

// variant is one kind of write under one set of circumstances; it differs from the
// baseline (the real CRD, a served status, one field manager, no watchers) in what
// its name says.
type variant struct {
	name string
	// factor is the cost factor the variant isolates.
	factor string
	schema schemaVariant
	shape  statusShape
	write  writeKind
	// managers is how many field managers wrote the object before: 1 is the
	// controller alone (besides the creator); more add managers of a label each and
	// the validator's lastUsedTime.
	managers int
	// watchers is how many watches of the objects' namespace are open.
	watchers int
}

var baseline = variant{name: "baseline: rotation status, real CRD", factor: "baseline", schema: schemaReal, shape: servedStatus, write: writeStatusMerge, managers: 1}

// with returns the baseline changed by fn, named name.
func with(factor, name string, fn func(*variant)) variant {
	v := baseline
	v.factor, v.name = factor, name
	fn(&v)
	return v
}

// costVariants are the variants of -costs-variants, in the order each round runs them.
var costVariants = []variant{
	baseline,
	with("schema", "CRD without CEL rules", func(v *variant) { v.schema = schemaNoCEL }),
	with("schema", "CRD without descriptions", func(v *variant) { v.schema = schemaNoDesc }),
	with("schema", "CRD of types only (no CEL, patterns, formats, enums, bounds)", func(v *variant) { v.schema = schemaTypesOnly }),
	with("schema", "CRD preserving unknown fields in spec and status", func(v *variant) { v.schema = schemaPreserve }),
	with("size", "4 conditions (+Stalled)", func(v *variant) { v.shape.conditions = 4 }),
	with("size", "1 condition (Ready)", func(v *variant) { v.shape.conditions = 1 }),
	with("size", "0 conditions", func(v *variant) { v.shape.conditions = 0 }),
	with("size", "no previous token", func(v *variant) { v.shape.previous = 0 }),
	with("size", "3 previous tokens", func(v *variant) { v.shape.previous = 3 }),
	with("size", "long messages (1 KiB each)", func(v *variant) { v.shape.longMessages = true }),
	with("size", "bare: 0 conditions, no previous token", func(v *variant) { v.shape = statusShape{} }),
	with("size", "bare, CRD preserving unknown fields", func(v *variant) { v.shape, v.schema = statusShape{}, schemaPreserve }),
	with("managedFields", "7 field managers before", func(v *variant) { v.managers = 7 }),
	with("managedFields", "server-side apply of the status", func(v *variant) { v.write = writeStatusApply }),
	with("managedFields", "PUT of the status", func(v *variant) { v.write = writeStatusPut }),
	with("lock", "merge patch with resourceVersion", func(v *variant) { v.write = writeStatusMergeLocked }),
	with("resource", "first token (status was empty)", func(v *variant) { v.write = writeFirstStatus }),
	with("resource", "rotate annotation on the main resource", func(v *variant) { v.write = writeAnnotation }),
	with("resource", "rotate annotation, CRD without CEL rules", func(v *variant) { v.write, v.schema = writeAnnotation, schemaNoCEL }),
	with("watch", "2 watchers (manager, validator)", func(v *variant) { v.watchers = 2 }),
	with("reference", "PUT secrets", func(v *variant) { v.write = writeSecretPut }),
	with("reference", "merge patch secrets", func(v *variant) { v.write = writeSecretMerge }),
}

// variantResult is what one variant cost kube-apiserver and etcd per request, in
// each round.
type variantResult struct {
	Name   string    `json:"variant"`
	Factor string    `json:"factor"`
	APIMs  []float64 `json:"apiserverCPUMs"`
	EtcdMs []float64 `json:"etcdCPUMs"`
	WallMs []float64 `json:"wallMsPerRequest"`
	// Bytes is the size of the request body of object 0.
	Bytes int `json:"requestBytes"`
}

type variantsReport struct {
	Date        string `json:"date"`
	Machine     string `json:"machine"`
	N           int    `json:"n"`
	Concurrency int    `json:"concurrency"`
	Rounds      int    `json:"rounds"`
	// IdleAPIMsPerSecond is kube-apiserver's CPU time per second with no requests,
	// measured before each round: the background every figure carries.
	IdleAPIMsPerSecond []float64       `json:"idleAPIServerCPUMsPerSecond"`
	Variants           []variantResult `json:"variants"`
	Profile            string          `json:"profile,omitempty"`
}

// variantsEnv is the control plane the variants run against.
type variantsEnv struct {
	o       options
	dir     string
	c       client.Client
	dyn     dynamic.Interface
	rc      rest.Interface
	api     int
	etcd    int
	crds    map[schemaVariant]bool
	realCRD *apiextv1.CustomResourceDefinition
}

// runVariants is -costs-variants: it starts a control plane of its own, with no
// manager and no validator, and measures every variant in o.rounds interleaved
// rounds, each round on fresh objects.
func runVariants(o options) error {
	ctx := context.Background()
	dir, cleanup, err := o.stateDirectory("apitoken-costs-variants-")
	if err != nil {
		return err
	}
	defer cleanup()
	logf("State in %s; starting kube-apiserver and etcd", dir)
	cp, err := localenv.Start(dir)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	e, err := newVariantsEnv(o, dir, cp)
	if err != nil {
		return err
	}
	rep := &variantsReport{
		Date: time.Now().UTC().Format(time.RFC3339), N: o.costsVariants, Concurrency: o.concurrency, Rounds: o.rounds,
		Machine: fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version()),
	}
	results := make([]variantResult, len(costVariants))
	for i, v := range costVariants {
		results[i] = variantResult{Name: v.name, Factor: v.factor}
		if err := e.installCRD(ctx, v.schema); err != nil {
			return err
		}
	}
	// The first writes to a new resource fill caches of kube-apiserver's that no later
	// write needs: they are no variant's cost.
	if _, _, _, _, err := e.measureVariant(ctx, baseline, "cv-warm-up"); err != nil {
		return fmt.Errorf("warming up: %w", err)
	}
	for round := range o.rounds {
		idle, err := e.idle(ctx, 3*time.Second)
		if err != nil {
			return err
		}
		rep.IdleAPIMsPerSecond = append(rep.IdleAPIMsPerSecond, idle)
		logf("Round %d of %d: %d requests of each variant, %d at a time (kube-apiserver idle: %.1f ms/s)", round+1, o.rounds, o.costsVariants, o.concurrency, idle)
		for i, v := range costVariants {
			api, etcd, wall, size, err := e.measureVariant(ctx, v, fmt.Sprintf("cv-%02d-%d", i, round))
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			r := &results[i]
			r.APIMs, r.EtcdMs, r.WallMs, r.Bytes = append(r.APIMs, api), append(r.EtcdMs, etcd), append(r.WallMs, wall), size
			logf("    %-70s %5.2f ms", v.name, api)
		}
	}
	rep.Variants = results
	if o.profile > 0 {
		if rep.Profile, err = e.profileBaseline(ctx, o.profile); err != nil {
			return err
		}
		logf("kube-apiserver's CPU profile of the baseline: %s", rep.Profile)
	}
	printVariants(os.Stdout, rep)
	if o.out != "" {
		return appendJSONLine(o.out, rep)
	}
	return nil
}

func newVariantsEnv(o options, dir string, cp *localenv.ControlPlane) (*variantsEnv, error) {
	api := findProcess("kube-apiserver", "--cert-dir="+filepath.Join(dir, "kube-apiserver"))
	if api == 0 {
		return nil, errors.New("cannot find the kube-apiserver process")
	}
	e := &variantsEnv{o: o, dir: dir, api: api, crds: map[schemaVariant]bool{}}
	if u := argValue(api, "etcd-servers"); u != "" {
		e.etcd = findProcess("etcd", "--listen-client-urls="+u)
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = -1, 0
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, apiextv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	var err error
	if e.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if e.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	e.rc = cs.RESTClient()
	if e.realCRD, err = realAPITokenCRD(); err != nil {
		return nil, err
	}
	return e, nil
}

// installCRD installs the CRD of v once and waits until its resource is served.
func (e *variantsEnv) installCRD(ctx context.Context, v schemaVariant) error {
	if e.crds[v] {
		return nil
	}
	crd, err := variantCRD(e.realCRD, v)
	if err != nil {
		return err
	}
	if err := e.c.Create(ctx, crd); err != nil {
		return fmt.Errorf("installing the %s CRD: %w", v, err)
	}
	gvr := variantGVR(v)
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := e.dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("the %s CRD is not served: %w", v, err)
	}
	e.crds[v] = true
	return nil
}

func variantGVR(v schemaVariant) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: variantGroup(v), Version: tokensv1.GroupVersion.Version, Resource: "apitokens"}
}

func variantObject(v schemaVariant, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(variantGroup(v) + "/" + tokensv1.GroupVersion.Version)
	u.SetKind("APIToken")
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// statusOwner is the field manager of the controller's status writes: its client's
// user agent, which names the binary.
const statusOwner = "manager"

// idle is kube-apiserver's CPU time per second, in ms, over d without requests.
func (e *variantsEnv) idle(ctx context.Context, d time.Duration) (float64, error) {
	a0, err := cpuSeconds(e.api)
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	a1, err := cpuSeconds(e.api)
	return (a1 - a0) * 1000 / d.Seconds(), err
}

// measureVariant prepares n objects of v in a namespace of their own, unmeasured, and
// then measures one write of v to each: kube-apiserver's and etcd's CPU ms per
// request, the wall ms per request, and the size of one request body.
func (e *variantsEnv) measureVariant(ctx context.Context, v variant, ns string) (api, etcd, wall float64, size int, err error) {
	n := e.o.costsVariants
	if err := e.c.Create(ctx, testenv.Namespace(ns)); err != nil {
		return 0, 0, 0, 0, err
	}
	objs, err := e.prepare(ctx, v, ns, n)
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("preparing: %w", err)
	}
	stopWatches, err := e.watch(ctx, v, ns)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer stopWatches()
	reqs := make([]variantRequest, n)
	for i := range n {
		if reqs[i], err = e.request(v, objs[i], 1); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	// A garbage collection now, so that every window starts from the same point of
	// the collector's cycle: otherwise a collection brought on by the preparation's
	// garbage may fall into one variant's window and not into another's.
	if err := e.collectGarbage(ctx); err != nil {
		return 0, 0, 0, 0, err
	}
	a0, _ := cpuSeconds(e.api)
	e0, _ := cpuSeconds(e.etcd)
	start := time.Now()
	if err := parallelN(n, e.o.concurrency, func(i int) error { return reqs[i].send(ctx) }); err != nil {
		return 0, 0, 0, 0, err
	}
	took := time.Since(start)
	a1, _ := cpuSeconds(e.api)
	e1, _ := cpuSeconds(e.etcd)
	// The objects go, so that every variant meets a store and a watch cache of the
	// same size.
	if err := e.c.DeleteAllOf(ctx, objs[0], client.InNamespace(ns)); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("deleting: %w", err)
	}
	return (a1 - a0) * 1000 / float64(n), (e1 - e0) * 1000 / float64(n), float64(took.Microseconds()) / 1000 / float64(n), reqs[0].size, nil
}

// collectGarbage makes kube-apiserver collect garbage: its heap profile does on gc=1.
func (e *variantsEnv) collectGarbage(ctx context.Context) error {
	if _, err := e.rc.Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx); err != nil {
		return fmt.Errorf("collecting kube-apiserver's garbage: %w", err)
	}
	return nil
}

// prepare creates the n objects a variant writes, in the state its write starts from:
// for the APIToken variants, created by one field manager and given a served status
// (generation 0) by the controller's, unless the write is the first token; then
// written by the variant's further managers.
func (e *variantsEnv) prepare(ctx context.Context, v variant, ns string, n int) ([]client.Object, error) {
	objs := make([]client.Object, n)
	name := func(i int) string { return fmt.Sprintf("c-%06d", i) }
	if v.write == writeSecretPut || v.write == writeSecretMerge {
		return objs, parallelN(n, e.o.concurrency, func(i int) error {
			s := boundSecret(i)
			s.Namespace, s.Name = ns, name(i)
			objs[i] = s
			return e.c.Create(ctx, s)
		})
	}
	return objs, parallelN(n, e.o.concurrency, func(i int) error {
		u := variantObject(v.schema, ns, name(i))
		u.Object["spec"] = map[string]any{"tenant": ns, "role": "viewer", "lifetime": "720h"}
		if err := e.c.Create(ctx, u, client.FieldOwner("kubectl")); err != nil {
			return err
		}
		objs[i] = u
		if v.write == writeFirstStatus {
			return nil
		}
		first, err := e.request(v, u, 0)
		if err != nil {
			return err
		}
		if err := first.send(ctx); err != nil {
			return err
		}
		for m := 1; m < v.managers; m++ {
			owner := fmt.Sprintf("crcost-%d", m)
			if m == 1 {
				// The validator's lastUsedTime.
				err = e.c.Status().Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"status":{"lastUsedTime":"2030-01-01T00:01:00Z"}}`)), client.FieldOwner("validator"))
			} else {
				err = e.c.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"crcost.apitoken.dev/`+owner+`":"set"}}}`)), client.FieldOwner(owner))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// variantRequest is one prepared write.
type variantRequest struct {
	size int
	send func(ctx context.Context) error
}

// request is v's write of generation gen to obj, built ahead so that building it
// costs nothing during the measurement.
func (e *variantsEnv) request(v variant, obj client.Object, gen int) (variantRequest, error) {
	if s, ok := obj.(*corev1.Secret); ok {
		switch v.write {
		case writeSecretPut:
			upd := s.DeepCopy()
			upd.Data[tokensv1.SecretKeyTokenID] = []byte(variantTokenID(gen))
			raw, err := json.Marshal(upd)
			return variantRequest{size: len(raw), send: func(ctx context.Context) error { return e.c.Update(ctx, upd) }}, err
		case writeSecretMerge:
			raw, err := json.Marshal(map[string]any{"data": map[string]any{tokensv1.SecretKeyTokenID: []byte(variantTokenID(gen))}})
			return variantRequest{size: len(raw), send: func(ctx context.Context) error {
				return e.c.Patch(ctx, s.DeepCopy(), client.RawPatch(types.MergePatchType, raw))
			}}, err
		}
		return variantRequest{}, fmt.Errorf("%s: not a write of a Secret", v.write)
	}
	u := obj.(*unstructured.Unstructured)
	status := tokenStatus(v.shape, u.GetName(), gen)
	var body any
	patchType := types.MergePatchType
	switch v.write {
	case writeStatusMerge, writeFirstStatus:
		body = map[string]any{"status": status}
	case writeStatusMergeLocked:
		body = map[string]any{"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()}, "status": status}
	case writeStatusApply:
		patchType = types.ApplyPatchType
		body = map[string]any{
			"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
			"metadata": map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()},
			"status":   status,
		}
	case writeStatusPut:
		// A PUT sends the whole object, as read: the status is set on u itself, which
		// keeps the answer and its resourceVersion for the next PUT.
		u.Object["status"] = status
		raw, err := json.Marshal(u)
		return variantRequest{size: len(raw), send: func(ctx context.Context) error {
			return e.c.Status().Update(ctx, u, client.FieldOwner(statusOwner))
		}}, err
	case writeAnnotation:
		if gen == 0 {
			// The annotation variants start from a served status like the others.
			body = map[string]any{"status": status}
			break
		}
		raw := []byte(`{"metadata":{"annotations":{"` + tokensv1.RotateAnnotation + `":"` + variantTokenID(gen) + `"}}}`)
		return variantRequest{size: len(raw), send: func(ctx context.Context) error {
			return e.c.Patch(ctx, u.DeepCopy(), client.RawPatch(types.MergePatchType, raw), client.FieldOwner("kubectl"))
		}}, nil
	default:
		return variantRequest{}, fmt.Errorf("%s: not a write of an APIToken", v.write)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return variantRequest{}, err
	}
	opts := []client.SubResourcePatchOption{client.FieldOwner(statusOwner)}
	if patchType == types.ApplyPatchType {
		opts = append(opts, client.ForceOwnership)
	}
	return variantRequest{size: len(raw), send: func(ctx context.Context) error {
		// u keeps the answer: the next request of a PUT or a locked patch carries its
		// resourceVersion.
		return e.c.Status().Patch(ctx, u, client.RawPatch(patchType, raw), opts...)
	}}, nil
}

// watch opens v.watchers watches of ns's objects of v, each drained as a client
// would, and returns what closes them.
func (e *variantsEnv) watch(ctx context.Context, v variant, ns string) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range v.watchers {
		w, err := e.dyn.Resource(variantGVR(v.schema)).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-w.ResultChan():
					if !ok {
						return
					}
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }, nil
}

// profileBaseline takes a CPU profile of kube-apiserver for d while the baseline's
// write runs again and again over fresh objects, into the state directory.
func (e *variantsEnv) profileBaseline(ctx context.Context, d time.Duration) (string, error) {
	n := e.o.costsVariants
	ns := "cv-profile"
	if err := e.c.Create(ctx, testenv.Namespace(ns)); err != nil {
		return "", err
	}
	objs, err := e.prepare(ctx, baseline, ns, n)
	if err != nil {
		return "", err
	}
	logf("Profiling kube-apiserver for %s of baseline writes", d)
	done := make(chan error, 1)
	var raw []byte
	go func() {
		var err error
		raw, err = e.rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", fmt.Sprint(int(d.Seconds()))).Timeout(d + time.Minute).DoRaw(ctx)
		done <- err
	}()
	for gen := 1; ; gen++ {
		select {
		case err := <-done:
			if err != nil {
				return "", err
			}
			path := filepath.Join(e.dir, "baseline-kube-apiserver.pprof")
			return path, os.WriteFile(path, raw, 0o644)
		default:
		}
		if err := parallelN(n, e.o.concurrency, func(i int) error {
			r, err := e.request(baseline, objs[i], gen)
			if err != nil {
				return err
			}
			return r.send(ctx)
		}); err != nil {
			return "", err
		}
	}
}

// printVariants writes the table of results.
func printVariants(w io.Writer, r *variantsReport) {
	fmt.Fprintf(w, "\nkube-apiserver CPU ms per request, %d requests per variant and round, %d at a time (%s)\n", r.N, r.Concurrency, r.Machine)
	fmt.Fprintf(w, "kube-apiserver idle: %s ms per second\n\n", joinFloats(r.IdleAPIMsPerSecond))
	fmt.Fprintf(w, "| factor | variant | request bytes | kube-apiserver ms, by round | etcd ms, by round |\n|---|---|---|---|---|\n")
	for _, v := range r.Variants {
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s |\n", v.Factor, v.Name, v.Bytes, joinFloats(v.APIMs), joinFloats(v.EtcdMs))
	}
}

func joinFloats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmt.Sprintf("%.2f", f)
	}
	return strings.Join(s, ", ")
}

func appendJSONLine(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(raw, '\n'))
	return err
}
