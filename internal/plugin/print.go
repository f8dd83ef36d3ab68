package plugin

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
)

// none is printed for an absent value, as kubectl does.
const none = "<none>"

// Output formats of -o.
const (
	outputTable = ""
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// checkOutput refuses an -o value the command does not know.
func checkOutput(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	var names []string
	for _, a := range allowed {
		if a != "" {
			names = append(names, a)
		}
	}
	return fmt.Errorf("unknown output format %q: use one of %s", got, strings.Join(names, ", "))
}

// printObject prints obj as JSON or YAML, with its kind and without managed fields,
// as kubectl get -o does.
func printObject(w io.Writer, format string, obj k8sruntime.Object, gvk schema.GroupVersionKind) error {
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	var p printers.ResourcePrinter = &printers.JSONPrinter{}
	if format == outputYAML {
		p = &printers.YAMLPrinter{}
	}
	return (&printers.OmitManagedFieldsPrinter{Delegate: p}).PrintObj(obj, w)
}

// table is a tab writer laid out like kubectl's tables that drops the padding an
// empty last cell leaves at the end of a line.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	out io.Writer
}

func newTable(w io.Writer) *table {
	t := &table{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 8, 3, ' ', 0)
	return t
}

// Flush writes the table.
func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(t.buf.String(), "\n")
	t.buf.Reset()
	for _, l := range lines {
		if strings.HasSuffix(l, "\n") {
			l = strings.TrimRight(l[:len(l)-1], " ") + "\n"
		}
		if _, err := io.WriteString(t.out, l); err != nil {
			return err
		}
	}
	return nil
}

// until says how far t is from now: "29d", or "expired 2h ago" once past.
func until(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	if d := t.Sub(now); d > 0 {
		return duration.HumanDuration(d)
	}
	return "expired " + duration.HumanDuration(now.Sub(t.Time)) + " ago"
}

// relative says when t is to now: "in 29d" or "2h ago".
func relative(now time.Time, t time.Time) string {
	if d := t.Sub(now); d > 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// ago says how long ago t was: "5m ago", or "<never>".
func ago(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "<never>"
	}
	return duration.HumanDuration(now.Sub(t.Time)) + " ago"
}

// timestamp prints t in RFC 3339 followed by where it is relative to now.
func timestamp(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(now, t.Time) + ")"
}

// conditionStatus is the status of the condition typ, or "Unknown" when absent.
func conditionStatus(conds []metav1.Condition, typ string) (status, reason string) {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return string(metav1.ConditionUnknown), ""
	}
	return string(c.Status), c.Reason
}

// orNone returns s, or <none> when empty.
func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// list joins a list with commas, or <none>.
func list(s []string) string { return orNone(strings.Join(s, ",")) }
