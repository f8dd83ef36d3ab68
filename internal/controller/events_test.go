package controller

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/tools/reference"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// TestEventWriter: an event is written as events.k8s.io/v1 with what client-go's
// recorder would write, once the writer runs; a full queue drops and counts.
func TestEventWriter(t *testing.T) {
	g := NewWithT(t)
	tok := get(t, newAPIToken(t))
	w := NewEventWriter(env.Client, testenv.Scheme, "apitoken-controller", 3, logr.Discard())

	w.Eventf(tok, nil, corev1.EventTypeNormal, "Minted", "Mint", "Wrote token %s to Secret %s", "01ABC", "tok")
	w.Eventf(tok, nil, corev1.EventTypeWarning, "Stalled", "Reconcile", "second")
	// Longer than the API server takes: cut, at a character boundary.
	w.Eventf(tok, nil, corev1.EventTypeWarning, "Long", "Reconcile", "%s", strings.Repeat("é", 600))
	dropped := func() float64 { return counterValue(t, "apitoken_events_dropped_total") }
	before := dropped()
	w.Eventf(tok, nil, corev1.EventTypeNormal, "Extra", "Mint", "no room")
	g.Expect(dropped()).To(Equal(before+1), "the queue holds three")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Start(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	ref, err := reference.GetReference(testenv.Scheme, tok)
	g.Expect(err).NotTo(HaveOccurred())
	var list eventsv1.EventList
	g.Eventually(func() int {
		g.Expect(env.Client.List(context.Background(), &list, client.InNamespace(tok.Namespace))).To(Succeed())
		return len(list.Items)
	}).Should(Equal(3))
	byReason := map[string]eventsv1.Event{}
	for _, e := range list.Items {
		byReason[e.Reason] = e
	}
	m := byReason["Minted"]
	g.Expect(m.Note).To(Equal("Wrote token 01ABC to Secret tok"))
	g.Expect(m.Type).To(Equal(corev1.EventTypeNormal))
	g.Expect(m.Action).To(Equal("Mint"))
	g.Expect(m.ReportingController).To(Equal("apitoken-controller"))
	g.Expect(m.ReportingInstance).To(HavePrefix("apitoken-controller-"))
	g.Expect(m.Regarding).To(Equal(*ref))
	g.Expect(m.EventTime.IsZero()).To(BeFalse())
	g.Expect(byReason["Stalled"].Type).To(Equal(corev1.EventTypeWarning))
	long := byReason["Long"].Note
	g.Expect(len(long)).To(BeNumerically("<=", 1024))
	g.Expect(long).To(HaveSuffix("..."))
	g.Expect(utf8.ValidString(long)).To(BeTrue())
	g.Expect(strings.TrimSuffix(long, "...")).To(Equal(strings.Repeat("é", (1024-3)/2)))
}

// counterValue reads a counter of the controller-runtime registry, summed over its labels.
func counterValue(t *testing.T, name string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
