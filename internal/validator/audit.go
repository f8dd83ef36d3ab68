package validator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// AuditOptions configure an AuditStream. Zero values take the defaults.
type AuditOptions struct {
	// Buffer is how many lines wait in memory for the writer; when it is full, new
	// lines are dropped and counted (apitoken_validator_audit_dropped_total) rather
	// than holding up a request. Default 8192.
	Buffer int
	// FlushInterval is how often the writer takes the queued lines and writes them:
	// how long a line may wait before it reaches the sink. Default 50ms.
	FlushInterval time.Duration
	// PerClient refusals of one client are written one by one per Window; the rest
	// are counted and written as one summary line when the window ends. Defaults 10
	// and 10s.
	PerClient int
	Window    time.Duration
	// Clients bounds how many clients' windows are tracked; refusals of the others
	// are summarised together, as client "*". Default 4096.
	Clients int
	// Clock times the lines and the windows. Default: the real clock.
	Clock clock.PassiveClock
	// Log is told when the sink fails.
	Log logr.Logger
}

// AuditStream writes one JSON line (validatorapi.AuditLine) per decision to a sink of
// its own, off the request path: a request only copies its line into a bounded
// buffer, and Run encodes and writes. An unauthenticated client cannot flood the
// sink: past a few refusals per window, its refusals are counted into one summary
// line. Lines never hold a token.
type AuditStream struct {
	opts  AuditOptions
	sink  io.Writer
	lines chan validatorapi.AuditLine
	sum   *summarizer
}

// NewAuditStream returns a stream writing to sink once Run runs.
func NewAuditStream(sink io.Writer, opts AuditOptions) *AuditStream {
	if opts.Buffer <= 0 {
		opts.Buffer = 8192
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	if opts.PerClient <= 0 {
		opts.PerClient = 10
	}
	if opts.Window <= 0 {
		opts.Window = 10 * time.Second
	}
	if opts.Clients <= 0 {
		opts.Clients = 4096
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &AuditStream{
		opts:  opts,
		sink:  sink,
		lines: make(chan validatorapi.AuditLine, opts.Buffer),
		sum:   &summarizer{perClient: opts.PerClient, window: opts.Window, max: opts.Clients, clients: map[string]*window{}},
	}
}

// Record queues l, or drops it when the buffer is full; it never blocks. A refusal
// past its client's share of the window is counted for the summary instead.
func (a *AuditStream) Record(l *validatorapi.AuditLine) {
	if l.Decision != validatorapi.AuditAllowed {
		write, summary := a.sum.admit(l, a.opts.Clock.Now())
		if summary != nil {
			a.send(summary)
		}
		if !write {
			auditSuppressedTotal.Inc()
			return
		}
	}
	a.send(l)
}

func (a *AuditStream) send(l *validatorapi.AuditLine) {
	select {
	case a.lines <- *l:
	default:
		auditDroppedTotal.Inc()
	}
}

// Run writes queued lines until ctx is done, then writes what is still queued and
// the pending summaries, and returns. It takes the queue every FlushInterval rather
// than waiting on it: a request that queues a line then wakes no goroutine, which
// costs more than encoding the line.
func (a *AuditStream) Run(ctx context.Context) {
	w := &auditWriter{sink: a.sink, log: a.opts.Log}
	w.enc = json.NewEncoder(&w.line)
	tick := time.NewTicker(a.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			a.drain(w, false)
		case <-ctx.Done():
			a.drain(w, true)
			return
		}
	}
}

// drain writes the queued lines and the summaries of the windows that ended (all of
// them when final), and flushes.
func (a *AuditStream) drain(w *auditWriter, final bool) {
	for n := len(a.lines); n > 0; n-- {
		l := <-a.lines
		w.write(&l)
	}
	for _, s := range a.sum.expired(a.opts.Clock.Now(), final) {
		w.write(s)
	}
	w.flush()
}

// auditWriter batches encoded lines and hands the sink whole lines only, so that a
// reader of the sink never sees half a line.
type auditWriter struct {
	sink io.Writer
	log  logr.Logger
	line bytes.Buffer
	enc  *json.Encoder
	out  []byte
	// lines is how many lines out holds.
	lines  int
	failed bool
}

// flushAt is the size from which the batch is written without waiting for the tick.
const flushAt = 32 << 10

func (w *auditWriter) write(l *validatorapi.AuditLine) {
	w.line.Reset()
	if err := w.enc.Encode(l); err != nil {
		auditDroppedTotal.Inc()
		return
	}
	w.out = append(w.out, w.line.Bytes()...)
	w.lines++
	if len(w.out) >= flushAt {
		w.flush()
	}
}

func (w *auditWriter) flush() {
	if len(w.out) == 0 {
		return
	}
	if _, err := w.sink.Write(w.out); err != nil {
		auditDroppedTotal.Add(float64(w.lines))
		if !w.failed {
			w.log.Error(err, "Writing the audit stream failed; lines are dropped until it works again")
		}
		w.failed = true
	} else {
		w.failed = false
	}
	w.out, w.lines = w.out[:0], 0
}

// summarizer decides which refusals are written one by one: perClient per client in
// each window, the rest counted into a summary line.
type summarizer struct {
	perClient int
	window    time.Duration
	max       int

	mu      sync.Mutex
	clients map[string]*window
}

// window is the refusals of one client since start.
type window struct {
	start      time.Time
	written    int
	suppressed int
	reasons    map[string]int
}

// untracked is the client that stands for every client the summarizer has no room for.
const untracked = "*"

// admit reports whether l, a refusal at now, is to be written, and returns the
// summary of its client's last window when that window just ended.
func (s *summarizer) admit(l *validatorapi.AuditLine, now time.Time) (write bool, summary *validatorapi.AuditLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	client := l.Client
	w := s.clients[client]
	if w == nil && len(s.clients) >= s.max {
		client = untracked
		w = s.clients[client]
	}
	if w != nil && !now.Before(w.start.Add(s.window)) {
		summary = w.summary(client, now)
		w = nil
	}
	if w == nil {
		w = &window{start: now}
		s.clients[client] = w
	}
	if client != untracked && w.written < s.perClient {
		w.written++
		return true, summary
	}
	w.suppressed++
	if w.reasons == nil {
		w.reasons = map[string]int{}
	}
	w.reasons[l.Reason]++
	return false, summary
}

// expired removes the windows that ended by now (every window when all) and returns
// the summaries of those that suppressed refusals.
func (s *summarizer) expired(now time.Time, all bool) []*validatorapi.AuditLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*validatorapi.AuditLine
	for client, w := range s.clients {
		if !all && now.Before(w.start.Add(s.window)) {
			continue
		}
		if sum := w.summary(client, now); sum != nil {
			out = append(out, sum)
		}
		delete(s.clients, client)
	}
	return out
}

// summary is the line of w's suppressed refusals, or nil when there were none.
func (w *window) summary(client string, now time.Time) *validatorapi.AuditLine {
	if w.suppressed == 0 {
		return nil
	}
	return &validatorapi.AuditLine{
		Time: now, Decision: validatorapi.AuditRefused, Client: client,
		Suppressed: w.suppressed, Since: w.start, Reasons: w.reasons,
	}
}
