package issuer

import (
	"testing"

	. "github.com/onsi/gomega"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
)

// TestLeaseFence: a replica that cannot prove it holds the leader lease writes neither
// the key Secret nor the status, whether it knew so when the pass began or found out
// during it; once it holds the lease again the pass does its work.
func TestLeaseFence(t *testing.T) {
	g := newG(t)
	iss := newIssuer("fenced", tokensv1.AlgorithmES256)
	create(t, iss)
	d := newDirect()
	// The lease holds for the first `budget` questions of a pass, then is gone.
	budget, asked := 0, 0
	d.r.Leading = func() bool { asked++; return asked <= budget }

	// Checks: at the start, then before each of checkSpec, loadKeys, planKeys and
	// writeSecret.
	for _, b := range []int{0, 1, 2, 3, 4} {
		budget, asked = b, 0
		res := d.reconcile(t, iss.Name)
		g.Expect(res.RequeueAfter).To(Equal(controller.NotLeaderRetry), "lease lost after %d checks", b)
		g.Expect(getSecret(g, iss.Name)).To(BeNil(), "lease lost after %d checks: no key written", b)
		g.Expect(getIssuer(g, iss.Name).Status.Conditions).To(BeEmpty(), "lease lost after %d checks: no status written", b)
		if asked <= b {
			t.Fatalf("the pass asked %d times: fewer than the %d the test expected; the loop above no longer covers every write", asked, b)
		}
	}

	// Lost after the key Secret was written: the status is not, as after a crash
	// between the two writes, which the next pass of the leader completes.
	budget, asked = 5, 0
	d.reconcile(t, iss.Name)
	sec := getSecret(g, iss.Name)
	g.Expect(sec).NotTo(BeNil())
	g.Expect(getIssuer(g, iss.Name).Status.Conditions).To(BeEmpty())

	budget, asked = 1000, 0
	d.reconcile(t, iss.Name)
	got := getIssuer(g, iss.Name)
	g.Expect(secretKeyIDs(getSecret(g, iss.Name))).To(Equal(secretKeyIDs(sec)), "the key written before is the one published")
	g.Expect(statusKeyIDs(got)).To(Equal(secretKeyIDs(sec)))
}
