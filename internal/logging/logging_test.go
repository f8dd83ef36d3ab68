package logging

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logAt builds the logger of a binary started with args and logs one message at each
// verbosity from 0 to 10 into a buffer.
func logAt(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o := Bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	o.zap.DestWriter = &buf
	l, capped := o.Logger()
	for v := range 11 {
		l.V(v).Info(fmt.Sprintf("at verbosity %d.", v))
	}
	return buf.String(), capped
}

func TestVerbosityIsCapped(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		highest    int
		wantCapped bool
	}{
		{nil, 0, false},
		{[]string{"--zap-log-level=debug"}, 1, false},
		{[]string{"--zap-log-level=5"}, 5, false},
		{[]string{"--zap-log-level=7"}, 7, false},
		{[]string{"--zap-log-level=8"}, 7, true},
		{[]string{"--zap-log-level=10"}, 7, true},
		{[]string{"--zap-devel"}, 1, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, capped := logAt(t, tc.args...)
			if capped != tc.wantCapped {
				t.Errorf("capped = %v, want %v", capped, tc.wantCapped)
			}
			for v := range 11 {
				logged := strings.Contains(out, fmt.Sprintf("at verbosity %d.", v))
				if logged != (v <= tc.highest) {
					t.Errorf("verbosity %d logged = %v, want %v; output:\n%s", v, logged, v <= tc.highest, out)
				}
			}
		})
	}
}

// TestAuditLinesAreNotSampled: in production mode zap keeps the first 100 lines of a
// message each second and one in 100 after that; audit lines are all kept, at the
// verbosity the flags allow, while other lines are still sampled.
func TestAuditLinesAreNotSampled(t *testing.T) {
	for _, tc := range []struct {
		args                   []string
		wantSampled            bool
		wantAuditV1, wantDebug bool
	}{
		{nil, true, false, false},
		{[]string{"--zap-log-level=1"}, true, true, false},
		// controller-runtime does not sample from debug (V(2)) on; neither do we.
		{[]string{"--zap-log-level=2"}, false, true, true},
		{[]string{"--zap-devel"}, false, true, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			o := Bind(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			o.zap.DestWriter = &buf
			l, _ := o.Logger()
			const n = 1000
			audit := Audit(l.WithName("controller").WithValues("k", "v"))
			for i := range n {
				l.Info("Busy line", "i", i)
				audit.Info("Minted a token", "i", i)
			}
			audit.V(1).Info("Audit at verbosity 1")
			l.V(2).Info("Debug line")
			out := buf.String()
			if got := strings.Count(out, "Minted a token"); got != n {
				t.Errorf("%d audit lines written, want all %d", got, n)
			}
			for line := range strings.Lines(out) {
				if strings.Contains(line, "Minted a token") && (!strings.Contains(line, `"k"`) || !strings.Contains(line, `"v"`)) {
					t.Errorf("an audit line without its logger's values: %s", line)
					break
				}
			}
			busy := strings.Count(out, "Busy line")
			if sampled := busy < n; sampled != tc.wantSampled {
				t.Errorf("%d of %d ordinary lines written; sampled = %v, want %v", busy, n, sampled, tc.wantSampled)
			}
			if tc.wantSampled && busy < sampleFirst {
				t.Errorf("only %d ordinary lines written: the sampler keeps the first %d", busy, sampleFirst)
			}
			if got := strings.Contains(out, "Audit at verbosity 1"); got != tc.wantAuditV1 {
				t.Errorf("audit line at V(1) written = %v, want %v: audit lines follow the verbosity", got, tc.wantAuditV1)
			}
			if got := strings.Contains(out, "Debug line"); got != tc.wantDebug {
				t.Errorf("V(2) line written = %v, want %v", got, tc.wantDebug)
			}
			if !strings.Contains(out, `"logger":"controller.audit"`) && !strings.Contains(out, "controller.audit") {
				t.Errorf("audit lines do not name their logger:\n%.300s", out)
			}
		})
	}
}

func TestIsAudit(t *testing.T) {
	for name, want := range map[string]bool{
		"audit": true, "controller.audit": true, "": false, "auditor": false, "audit.controller": false, "xaudit": false,
	} {
		if got := isAudit(name); got != want {
			t.Errorf("isAudit(%q) = %v, want %v", name, got, want)
		}
	}
}

// BenchmarkPassLogger builds, as controller-runtime does for every reconcile and every
// admission request, a logger with a request's values, and writes no line with it:
// the common case (a quiet pass). bare is zap's own production core with the same
// values, without our audit split.
func BenchmarkPassLogger(b *testing.B) {
	values := []any{"controller", "apitoken", "controllerGroup", "tokens.apitoken.dev", "controllerKind", "APIToken",
		"APIToken", map[string]string{"name": "ci", "namespace": "acme"}, "namespace", "acme", "name", "ci", "reconcileID", "0c6a4f6e-5b7e-4f43-9d55-1c5b7a2d4e10"}
	o := Bind(flag.NewFlagSet("bench", flag.ContinueOnError))
	o.zap.DestWriter = io.Discard
	l, _ := o.Logger()
	bare := zapr.NewLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)))
	for _, c := range []struct {
		name string
		l    logr.Logger
	}{{"ours", l}, {"bare", bare}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.l.WithValues(values...).WithValues("webhook", "/mutate")
			}
		})
	}
}
