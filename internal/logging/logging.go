// Package logging builds the logger of the operator's binaries from the usual zap
// flags, with one rule added: verbosity never goes above MaxVerbosity.
//
// client-go logs the bodies of API requests and responses from verbosity 8 up. Those
// bodies carry tokens (the Secrets the manager writes) and private keys (the issuer's
// key Secret), so a binary started with --zap-log-level=8 or more to debug something
// else would write them to its log. The cap keeps them out whatever the flags say.
package logging

import (
	"flag"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// MaxVerbosity is the highest logr verbosity a binary logs at: the last one at which
// client-go does not dump request and response bodies.
const MaxVerbosity = 7

// Options are the zap flags of a binary.
type Options struct{ zap zap.Options }

// Bind registers the zap flags (--zap-log-level, --zap-devel, ...) on fs.
func Bind(fs *flag.FlagSet) *Options {
	o := &Options{}
	o.zap.BindFlags(fs)
	return o
}

// Logger builds the logger the flags asked for, capped at MaxVerbosity. capped says
// whether the flags asked for more, so the binary can say it did not get it.
func (o *Options) Logger() (l logr.Logger, capped bool) {
	opts := o.zap
	if opts.Level == nil {
		// zap's own default: info, or debug in development mode.
		lvl := zapcore.InfoLevel
		if opts.Development {
			lvl = zapcore.DebugLevel
		}
		opts.Level = lvl
	}
	floor := zapcore.Level(-MaxVerbosity)
	capped = opts.Level.Enabled(floor - 1)
	opts.Level = cappedLevel{inner: opts.Level, floor: floor}
	return zap.New(zap.UseFlagOptions(&opts)), capped
}

// cappedLevel enables what inner enables, down to floor: zap levels are negative
// logr verbosities, so floor - 1 is one step more verbose than allowed.
type cappedLevel struct {
	inner zapcore.LevelEnabler
	floor zapcore.Level
}

func (c cappedLevel) Enabled(l zapcore.Level) bool { return l >= c.floor && c.inner.Enabled(l) }
