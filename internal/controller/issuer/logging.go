package issuer

import (
	"context"

	"github.com/go-logr/logr"
)

// maxSecretCallVerbosity is the highest log verbosity of API calls that carry the key
// Secret. client-go logs the bodies of requests and responses at V(8), and those
// bodies hold private keys: raising the manager's verbosity to debug something else
// must not put them in the logs.
const maxSecretCallVerbosity = 7

// withoutBodyDumps returns ctx with its logger capped at maxSecretCallVerbosity, for
// the API calls that read or write the key Secret.
func withoutBodyDumps(ctx context.Context) context.Context {
	l, err := logr.FromContext(ctx)
	if err != nil || l.GetSink() == nil {
		// client-go then logs through klog's global logger, which the manager leaves at
		// its default verbosity.
		return ctx
	}
	sink := l.GetSink()
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1) // the frame of cappedSink
	}
	return logr.NewContext(ctx, logr.New(&cappedSink{sink: sink, max: maxSecretCallVerbosity}).V(l.GetV()))
}

// cappedSink drops the messages of a sink above a verbosity.
type cappedSink struct {
	sink logr.LogSink
	max  int
}

// Init does nothing: the wrapped sink was initialized with its own logger.
func (s *cappedSink) Init(logr.RuntimeInfo) {}

func (s *cappedSink) Enabled(level int) bool { return level <= s.max && s.sink.Enabled(level) }

func (s *cappedSink) Info(level int, msg string, kv ...any) {
	if level <= s.max {
		s.sink.Info(level, msg, kv...)
	}
}

func (s *cappedSink) Error(err error, msg string, kv ...any) { s.sink.Error(err, msg, kv...) }

func (s *cappedSink) WithValues(kv ...any) logr.LogSink {
	return &cappedSink{sink: s.sink.WithValues(kv...), max: s.max}
}

func (s *cappedSink) WithName(name string) logr.LogSink {
	return &cappedSink{sink: s.sink.WithName(name), max: s.max}
}

func (s *cappedSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.sink.(logr.CallDepthLogSink); ok {
		return &cappedSink{sink: cd.WithCallDepth(depth), max: s.max}
	}
	return s
}
