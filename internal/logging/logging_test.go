package logging

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
	"testing"
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
