package issuer

import (
	"context"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

func TestWithoutBodyDumps(t *testing.T) {
	g := NewWithT(t)
	logs := &testenv.Buffer{}
	ctx := withoutBodyDumps(logr.NewContext(context.Background(), newLogger(logs).WithValues("issuer", "x")))
	l := logr.FromContextOrDiscard(ctx)

	g.Expect(l.V(8).Enabled()).To(BeFalse(), "client-go dumps bodies at V(8)")
	g.Expect(l.V(7).Enabled()).To(BeTrue())
	l.V(8).Info("Request Body", "body", "dumped")
	l.WithName("rest").WithValues("k", "v").V(10).Info("Response Body", "body", "dumped")
	l.V(7).Info("Kept")
	l.Error(errors.New("boom"), "Kept error")
	g.Expect(logs.String()).NotTo(ContainSubstring("dumped"))
	g.Expect(logs.String()).To(And(ContainSubstring("Kept"), ContainSubstring("Kept error"), ContainSubstring(`"issuer":"x"`)))

	// Without a logger in the context there is nothing to cap.
	g.Expect(withoutBodyDumps(context.Background())).To(Equal(context.Background()))
}
