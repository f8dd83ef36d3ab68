// Package logging builds the logger of the operator's binaries from the usual zap
// flags, with two rules added: verbosity never goes above MaxVerbosity, and audit
// lines are never sampled away.
//
// client-go logs the bodies of API requests and responses from verbosity 8 up. Those
// bodies carry tokens (the Secrets the manager writes) and private keys (the issuer's
// key Secret), so a binary started with --zap-log-level=8 or more to debug something
// else would write them to its log. The cap keeps them out whatever the flags say.
//
// In production mode zap samples: after 100 lines with the same message in a second
// it keeps one in 100. That is right for request logs, but a mint, a rotation or a
// revocation is the record of what the manager did, and 2000 mints logging 1600
// "Minted a token" lines is no record. Lines logged through Audit bypass the sampler.
package logging

import (
	"flag"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// MaxVerbosity is the highest logr verbosity a binary logs at: the last one at which
// client-go does not dump request and response bodies.
const MaxVerbosity = 7

// AuditName is the logger name of audit lines, the last element of their "logger"
// field.
const AuditName = "audit"

// Audit returns l named for audit lines: what it logs is never sampled.
func Audit(l logr.Logger) logr.Logger { return l.WithName(AuditName) }

// isAudit reports whether a zap logger name is an audit logger's.
func isAudit(name string) bool {
	return name == AuditName || strings.HasSuffix(name, "."+AuditName)
}

// Sampling as controller-runtime's production logger does it: per message, the first
// 100 lines of each second, then one in 100.
const (
	sampleTick       = time.Second
	sampleFirst      = 100
	sampleThereafter = 100
)

// Options are the zap flags of a binary.
type Options struct{ zap crzap.Options }

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
	level := cappedLevel{inner: opts.Level, floor: floor}
	// controller-runtime samples in production mode unless the level reaches debug
	// (V(2)); the same rule decides here, but the sampler is ours, so that it can let
	// audit lines through. The core controller-runtime builds is given a level that
	// keeps it from adding its own sampler; auditCore filters by the real one.
	sample := !opts.Development && !level.Enabled(zapcore.Level(-2))
	opts.Level = level
	if sample {
		opts.Level = zapcore.Level(-2)
		opts.ZapOpts = append(opts.ZapOpts, zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return &auditCore{
				full:    c,
				sampled: zapcore.NewSamplerWithOptions(c, sampleTick, sampleFirst, sampleThereafter),
				level:   level,
			}
		}))
	}
	return crzap.New(crzap.UseFlagOptions(&opts)), capped
}

// auditCore writes audit lines through full and every other line through sampled,
// at the entries level allows.
type auditCore struct {
	full, sampled zapcore.Core
	level         zapcore.LevelEnabler
}

func (c *auditCore) Enabled(l zapcore.Level) bool { return c.level.Enabled(l) }

// With defers the encoding of fields to the first line written through each core
// (zapcore.NewLazyWith): controller-runtime gives every pass and every admission
// request a logger of its own values, and most of them write nothing
// (BenchmarkPassLogger).
func (c *auditCore) With(fields []zapcore.Field) zapcore.Core {
	return &auditCore{full: zapcore.NewLazyWith(c.full, fields), sampled: zapcore.NewLazyWith(c.sampled, fields), level: c.level}
}

func (c *auditCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.level.Enabled(e.Level) {
		return ce
	}
	if isAudit(e.LoggerName) {
		return c.full.Check(e, ce)
	}
	return c.sampled.Check(e, ce)
}

// Write is reached only through the CheckedEntry of the core that accepted the
// entry, never on auditCore itself; it writes unsampled.
func (c *auditCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.full.Write(e, fields)
}

func (c *auditCore) Sync() error { return c.full.Sync() }

// cappedLevel enables what inner enables, down to floor: zap levels are negative
// logr verbosities, so floor - 1 is one step more verbose than allowed.
type cappedLevel struct {
	inner zapcore.LevelEnabler
	floor zapcore.Level
}

func (c cappedLevel) Enabled(l zapcore.Level) bool { return l >= c.floor && c.inner.Enabled(l) }
