package validator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// scrape reads /metrics and returns the samples of name, keyed by their labels.
func (h *harness) scrape(name string) map[string]float64 {
	resp, err := h.http.Get(h.probeURL + PathMetrics)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	h.g.Expect(err).NotTo(HaveOccurred())
	body := string(raw)
	h.g.Expect(resp.StatusCode).To(Equal(200))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	h.g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	fam, ok := families[name]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		key := strings.Join(labels, ",")
		switch {
		case m.GetCounter() != nil:
			out[key] = m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			out[key] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	m := h.apiToken(iss, tokenSpec{})
	h.waitIndexed(m)
	g := NewWithT(t)

	before := h.scrape("apitoken_validator_decisions_total")
	durBefore := h.scrape("apitoken_validator_request_duration_seconds")
	g.Expect(h.authorize(m.token, "").StatusCode).To(Equal(200))
	g.Expect(h.authorize(m.token, "role=admin").StatusCode).To(Equal(403))
	g.Expect(h.authorize("", "").StatusCode).To(Equal(401))
	g.Expect(h.authorize("junk", "").StatusCode).To(Equal(401))
	h.review(m.token)

	after := h.scrape("apitoken_validator_decisions_total")
	delta := func(labels string) float64 { return after[labels] - before[labels] }
	g.Expect(delta("reason=Allowed,result=allowed")).To(Equal(2.0))
	g.Expect(delta("reason=InsufficientRole,result=forbidden")).To(Equal(1.0))
	g.Expect(delta("reason=Missing,result=unauthenticated")).To(Equal(1.0))
	g.Expect(delta("reason=Malformed,result=unauthenticated")).To(Equal(1.0))

	dur := h.scrape("apitoken_validator_request_duration_seconds")
	g.Expect(dur["endpoint=authorize"] - durBefore["endpoint=authorize"]).To(Equal(4.0))
	g.Expect(dur["endpoint=tokenreview"] - durBefore["endpoint=tokenreview"]).To(Equal(1.0))
}

func TestHealthAndReadiness(t *testing.T) {
	g := NewWithT(t)
	var ready atomic.Bool
	srv := New(index.New(index.Config{}), Options{Ready: ready.Load})
	for i, handler := range []http.Handler{srv.Handler(), srv.ProbeHandler()} {
		ts := httptest.NewServer(handler)
		status := func(path string) int {
			resp, err := http.Get(ts.URL + path)
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		ready.Store(false)
		g.Expect(status(PathHealthz)).To(Equal(200))
		g.Expect(status(PathReadyz)).To(Equal(503), "not ready before the caches synced")
		ready.Store(true)
		g.Expect(status(PathReadyz)).To(Equal(200))
		if i == 0 {
			g.Expect(status(PathMetrics)).To(Equal(404), "the public listener serves no metrics")
		} else {
			g.Expect(status(PathMetrics)).To(Equal(200))
		}
		ts.Close()
	}

	// A validator started against the API server becomes ready on its own.
	h := start(t, Options{})
	resp, _ := h.request(http.MethodGet, PathReadyz, nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
}

// TestAuditLog: the debug log has one line per decision with what an operator needs
// to follow it up, and never the token.
func TestAuditLog(t *testing.T) {
	h := start(t, Options{})
	iss := h.issuer(token.ES256, true)
	jwt := h.apiToken(iss, tokenSpec{})
	opaque := h.apiToken(iss, tokenSpec{format: tokensv1.FormatOpaque, role: "viewer"})
	h.waitIndexed(jwt)
	h.waitIndexed(opaque)
	g := NewWithT(t)

	g.Expect(h.authorize(jwt.token, "tenant=acme").StatusCode).To(Equal(200))
	g.Expect(h.authorize(opaque.token, "tenant=acme&role=admin").StatusCode).To(Equal(403))
	wrong, err := token.MintOpaque("apt", opaque.issued.TokenID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.authorize(wrong.Token, "").StatusCode).To(Equal(401))
	h.review(jwt.token)

	log := h.audit.text()
	lines := strings.Split(log, "\n")
	// The line names the APIToken, so an audit reader can tell whose token it was.
	apiToken := func(m *minted) string { return `"apiToken"="` + m.obj.Namespace + "/" + m.obj.Name + `"` }
	g.Expect(lines).To(ContainElement(And(
		ContainSubstring(`"msg"="Token accepted"`), ContainSubstring(`"tokenID"="`+jwt.issued.TokenID+`"`),
		ContainSubstring(apiToken(jwt)),
		ContainSubstring(`"endpoint"="authorize"`), ContainSubstring(`"result"="allowed"`), ContainSubstring(`"tenant"="acme"`),
		ContainSubstring(`"role"="editor"`), ContainSubstring(`"remoteAddr"="127.0.0.1:`))))
	g.Expect(lines).To(ContainElement(And(
		ContainSubstring(`"msg"="Token refused"`), ContainSubstring(`"tokenID"="`+opaque.issued.TokenID+`"`),
		ContainSubstring(apiToken(opaque)),
		ContainSubstring(`"result"="forbidden"`), ContainSubstring(`"reason"="InsufficientRole"`),
		ContainSubstring(`"role"="viewer"`), ContainSubstring(`"requiredRole"="admin"`))))
	g.Expect(lines).To(ContainElement(And(
		ContainSubstring(`"msg"="Token refused"`), ContainSubstring(`"tokenID"="`+opaque.issued.TokenID+`"`),
		ContainSubstring(`"reason"="UnknownToken"`))), "an opaque token's ID is logged even when its secret is wrong")
	g.Expect(lines).To(ContainElement(And(ContainSubstring(`"endpoint"="tokenreview"`), ContainSubstring(`"result"="allowed"`),
		ContainSubstring(apiToken(jwt)))))

	// No token, nor any part of one that is secret: the opaque secrets, and the JWT's
	// claims and signature, each on its own.
	jwtParts := strings.Split(jwt.token, ".")
	g.Expect(jwtParts).To(HaveLen(3))
	for _, secret := range []string{jwt.token, jwtParts[1], jwtParts[2], opaque.token, wrong.Token,
		wrong.Token[len(wrong.Token)-49:], opaque.token[len(opaque.token)-49:]} {
		g.Expect(log).NotTo(ContainSubstring(secret))
	}
	// One line per refusal, at V(1) like the acceptances: the audit trail is the
	// audit stream (TestAuditStream).
	g.Expect(strings.Count(log, "Token refused")).To(Equal(2))
}
