package controller

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// EventWriter records events as events.k8s.io/v1 Events, as client-go's events
// broadcaster (which controller-runtime's recorders use) does, but keeps nothing of
// an event once it is written. The broadcaster keeps every event it wrote for six to
// twelve minutes, to fold repeats into a series; the APIToken controller's events
// each name their token and never repeat, so at a hundred mints a second the
// broadcaster holds tens of megabytes of events for nothing.
//
// Events are queued and written by a few workers once Start runs; a full queue drops
// the event (apitoken_events_dropped_total) rather than hold up a reconcile, as a
// failed write does after one retry: events are reports, the audit log is the record.
type EventWriter struct {
	client     client.Client
	scheme     *runtime.Scheme
	controller string
	instance   string
	queue      chan *eventsv1.Event
	log        logr.Logger
}

var _ events.EventRecorder = &EventWriter{}

// eventWorkers write queued events in parallel: one at a time would fall behind a
// mint at the API server's pace.
const eventWorkers = 4

var eventsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "apitoken_events_dropped_total",
	Help: "Events not written: the queue was full, or the API server refused them twice.",
}, []string{"controller"})

var registerEventMetrics sync.Once

// NewEventWriter returns an EventWriter that reports as controller (events'
// reportingController) through c, with room for queue events waiting to be
// written.
func NewEventWriter(c client.Client, scheme *runtime.Scheme, controller string, queue int, log logr.Logger) *EventWriter {
	registerEventMetrics.Do(func() { metrics.Registry.MustRegister(eventsDropped) })
	host, _ := os.Hostname()
	return &EventWriter{
		client: c, scheme: scheme, controller: controller, instance: controller + "-" + host,
		queue: make(chan *eventsv1.Event, queue), log: log,
	}
}

// Eventf implements events.EventRecorder.
func (w *EventWriter) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	ref, err := reference.GetReference(w.scheme, regarding)
	if err != nil {
		w.log.Error(err, "Cannot refer to the object of an event; the event is not written", "reason", reason)
		return
	}
	var rel *corev1.ObjectReference
	if related != nil {
		rel, _ = reference.GetReference(w.scheme, related)
	}
	now := time.Now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: w.controller,
		ReportingInstance:   w.instance,
		Action:              action,
		Reason:              reason,
		Regarding:           *ref,
		Related:             rel,
		Note:                truncateNote(fmt.Sprintf(note, args...)),
		Type:                eventtype,
	}
	select {
	case w.queue <- ev:
	default:
		eventsDropped.WithLabelValues(w.controller).Inc()
	}
}

// noteLimit is the longest note the API server accepts, in bytes.
const noteLimit = 1024

// truncateNote cuts a note the API server would refuse (a stall that names many
// memberships can run long) to its limit, at a character boundary, marked with "...".
func truncateNote(s string) string {
	if len(s) <= noteLimit {
		return s
	}
	cut := noteLimit - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Start writes queued events until ctx ends (manager.Runnable).
func (w *EventWriter) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range eventWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-w.queue:
					w.write(ctx, ev)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: a standby's
// controllers emit nothing, and the leader lock's own events must be written before
// a replica leads.
func (w *EventWriter) NeedLeaderElection() bool { return false }

// write creates ev, trying once more after a failure.
func (w *EventWriter) write(ctx context.Context, ev *eventsv1.Event) {
	var err error
	for range 2 {
		if err = w.client.Create(ctx, ev.DeepCopy()); err == nil || ctx.Err() != nil {
			return
		}
	}
	eventsDropped.WithLabelValues(w.controller).Inc()
	w.log.Error(err, "Cannot write an event", "reason", ev.Reason, "regarding", ev.Regarding.Name, "namespace", ev.Namespace)
}
