package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	// Their init functions register the operator's metrics (and, through
	// controller-runtime, the reconcile metrics) with metrics.Registry, where
	// metricExists looks for the names the rules and the dashboard use.
	_ "github.com/apitoken-operator/apitoken-operator/internal/controller/apitoken"
	_ "github.com/apitoken-operator/apitoken-operator/internal/controller/issuer"
	_ "github.com/apitoken-operator/apitoken-operator/internal/validator"
)

var (
	alertsFile     = filepath.Join(configDir, "prometheus", "alerts.yaml")
	alertsTestFile = filepath.Join(configDir, "prometheus", "alerts_test.yaml")
	dashboardFile  = filepath.Join(configDir, "grafana", "apitoken-operator.json")
)

// promtool runs Debian's promtool (package prometheus) and returns its output and
// whether it succeeded.
func promtool(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: the alert rules are checked with it (Debian: apt-get install prometheus; .ci/run installs it): %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
		}
		return string(out), false
	}
	return string(out), true
}

// TestAlertRules checks config/prometheus/alerts.yaml with promtool and runs its unit
// tests, alerts_test.yaml.
func TestAlertRules(t *testing.T) {
	if out, ok := promtool(t, "check", "rules", alertsFile); !ok {
		t.Fatalf("promtool check rules:\n%s", out)
	}
	if out, ok := promtool(t, "test", "rules", alertsTestFile); !ok {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// TestAlertRulesCatchABrokenRule: the unit tests fail when a rule stops firing as it
// should, so TestAlertRules passing means something.
func TestAlertRulesCatchABrokenRule(t *testing.T) {
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, from, to string }{
		{"renewal overdue after an hour instead of 10 minutes", "time() - apitoken_renewal_timestamp_seconds > 600", "time() - apitoken_renewal_timestamp_seconds > 3600"},
		{"not Ready on the wrong metric", "expr: apitoken_ready_status == 0", "expr: apitoken_ready == 0"},
		{"validator down on the manager's job", `absent(up{job="apitoken-validator"} == 1)`, `absent(up{job="apitoken-manager-metrics"} == 1)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(string(rules)).To(ContainSubstring(tt.from))
			dir := t.TempDir()
			g.Expect(os.WriteFile(filepath.Join(dir, "alerts.yaml"), bytes.Replace(rules, []byte(tt.from), []byte(tt.to), 1), 0o600)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600)).To(Succeed())
			out, ok := promtool(t, "test", "rules", filepath.Join(dir, "alerts_test.yaml"))
			g.Expect(ok).To(BeFalse(), "promtool test rules passed with a broken rule:\n%s", out)
			g.Expect(out).To(ContainSubstring("FAILED"))
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T, path string) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Only the expressions are read here; the rest is promtool's to check.
	var f ruleFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// TestAlertRulesUseRealMetrics: every metric a rule reads, and every series the unit
// tests feed it, is one the manager or the validator exports, so the unit tests do not
// pass on made-up names.
func TestAlertRulesUseRealMetrics(t *testing.T) {
	g := NewWithT(t)
	var alerts []string
	for _, grp := range readRules(t, alertsFile).Groups {
		for _, r := range grp.Rules {
			alerts = append(alerts, r.Alert)
			for _, name := range metricNames(r.Expr) {
				g.Expect(metricExists(name)).To(BeTrue(), "alert %s reads %s, which nothing exports", r.Alert, name)
			}
		}
	}
	g.Expect(alerts).To(ContainElements("APITokenManagerDown", "APITokenValidatorDown", "APITokenNotReady", "APITokenRenewalOverdue",
		"APITokenExpiringWithoutRenewal", "APITokenIssuerKeyRotationFailing", "APITokenValidatorRefusalSurge"))

	raw, err := os.ReadFile(alertsTestFile)
	g.Expect(err).NotTo(HaveOccurred())
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	g.Expect(yaml.Unmarshal(raw, &tests)).To(Succeed())
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			name, _, _ := strings.Cut(s.Series, "{")
			g.Expect(metricExists(name)).To(BeTrue(), "alerts_test.yaml feeds %s, which nothing exports", name)
		}
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for _, a := range alerts {
		g.Expect(tested).To(HaveKey(a), "alerts_test.yaml does not test %s", a)
	}
}

// TestChartAlertsAreConfigs: the chart's PrometheusRule holds config/prometheus/alerts.yaml
// and its dashboard ConfigMap config/grafana's dashboard, byte for byte: `make
// manifests` copies them.
func TestChartAlertsAreConfigs(t *testing.T) {
	g := NewWithT(t)
	for src, dst := range map[string]string{
		alertsFile:    filepath.Join(chartDir, "files", "prometheus", "alerts.yaml"),
		dashboardFile: filepath.Join(chartDir, "files", "grafana", "apitoken-operator.json"),
	} {
		want, err := os.ReadFile(src)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(dst)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "%s differs from %s: run make manifests", dst, src)
	}

	m := helmTemplate(t, "apitoken-system", "metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true")
	raw, err := os.ReadFile(alertsFile)
	g.Expect(err).NotTo(HaveOccurred())
	var rules map[string]any
	g.Expect(yaml.Unmarshal(raw, &rules)).To(Succeed())
	g.Expect(m.get(t, "PrometheusRule", "apitoken-operator").Object["spec"]).To(Equal(rules))

	dash, err := os.ReadFile(dashboardFile)
	g.Expect(err).NotTo(HaveOccurred())
	cm := m.get(t, "ConfigMap", "apitoken-operator-dashboard")
	g.Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	data, _ := cm.Object["data"].(map[string]any)
	g.Expect(data).To(HaveKeyWithValue("apitoken-operator.json", strings.TrimSuffix(string(dash), "\n")))

	off := helmTemplate(t, "apitoken-system")
	g.Expect(off.find("PrometheusRule", "apitoken-operator")).To(BeNil(), "the PrometheusRule is opt-in")
	g.Expect(off.find("ConfigMap", "apitoken-operator-dashboard")).To(BeNil(), "the dashboard is opt-in")
}

// dashboard is the part of a Grafana dashboard the lint reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboard lints the Grafana dashboard: valid JSON, every panel placed and
// titled, every query on the dashboard's data source, every expression valid PromQL
// (promtool parses it) over metrics that exist, and the views the chart promises.
func TestDashboard(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(dashboardFile)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(json.Valid(raw)).To(BeTrue(), "not JSON")
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	g.Expect(dec.Decode(&d)).To(Succeed())
	g.Expect(d.UID).NotTo(BeEmpty())

	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	g.Expect(vars).To(ContainElements("datasource", "namespace"))

	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)

	ids := map[int]bool{}
	var titles []string
	type rec struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var records []rec
	for _, p := range all {
		g.Expect(p.Title).NotTo(BeEmpty(), "panel %d has no title", p.ID)
		g.Expect(ids).NotTo(HaveKey(p.ID), "panel id %d is used twice", p.ID)
		ids[p.ID] = true
		g.Expect(p.GridPos).NotTo(BeNil(), "panel %q has no gridPos", p.Title)
		g.Expect(p.GridPos.W).To(BeNumerically(">", 0), "panel %q", p.Title)
		g.Expect(p.GridPos.X+p.GridPos.W).To(BeNumerically("<=", 24), "panel %q is wider than the dashboard", p.Title)
		titles = append(titles, p.Title)
		if p.Type == "row" {
			continue
		}
		g.Expect(p.Datasource).NotTo(BeNil(), "panel %q names no data source", p.Title)
		g.Expect(p.Datasource.UID).To(Equal("${datasource}"), "panel %q", p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q has no query", p.Title)
		for _, q := range p.Targets {
			g.Expect(q.Expr).NotTo(BeEmpty(), "panel %q query %s", p.Title, q.RefID)
			expr, err := expandGrafanaVariables(q.Expr)
			g.Expect(err).NotTo(HaveOccurred(), "panel %q query %s", p.Title, q.RefID)
			names := metricNames(expr)
			g.Expect(names).NotTo(BeEmpty(), "panel %q query %s reads no metric", p.Title, q.RefID)
			for _, n := range names {
				g.Expect(metricExists(n)).To(BeTrue(), "panel %q reads %s, which nothing exports", p.Title, n)
			}
			records = append(records, rec{Record: fmt.Sprintf("dashboard:panel%d_%s", p.ID, strings.ToLower(q.RefID)), Expr: expr})
		}
	}
	g.Expect(titles).To(ContainElements("APITokens by state", "Expiry horizon", "Refusals by reason", "Latency by endpoint"))

	// promtool parses each expression as the expression of a recording rule.
	file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	g.Expect(os.WriteFile(path, file, 0o600)).To(Succeed())
	if out, ok := promtool(t, "check", "rules", path); !ok {
		t.Fatalf("a dashboard expression is not valid PromQL:\n%s", out)
	}
}

var grafanaVariable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// expandGrafanaVariables replaces the variables Grafana fills in with values of the
// same kind, so that the expression can be parsed; an unknown variable is an error.
func expandGrafanaVariables(expr string) (string, error) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		switch name := grafanaVariable.FindStringSubmatch(v)[1]; name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "namespace":
			return ".*"
		default:
			unknown = append(unknown, v)
			return v
		}
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variables %v", unknown)
	}
	return out, nil
}

func TestExpandGrafanaVariables(t *testing.T) {
	g := NewWithT(t)
	got, err := expandGrafanaVariables(`rate(x{namespace=~"$namespace"}[$__rate_interval]) + y{namespace=~"${namespace}"}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(`rate(x{namespace=~".*"}[5m]) + y{namespace=~".*"}`))
	_, err = expandGrafanaVariables(`x{pod="$pod"}`)
	g.Expect(err).To(MatchError(ContainSubstring("$pod")))
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	// Label lists of grouping and vector matching, e.g. "by (namespace, name)".
	promqlLabels = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlWords  = []string{"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects, in order, each
// once. It reads the expressions of this repository, not arbitrary PromQL: label
// values, matchers, ranges and label lists are cut out, and what is left that is not
// a function, an aggregation, a keyword or a number is a metric name.
func metricNames(expr string) []string {
	e := promqlString.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlRange.ReplaceAllString(e, " ")
	e = promqlLabels.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.") {
			continue // the unit of a duration or the exponent of a number
		}
		if strings.HasPrefix(strings.TrimLeft(e[loc[1]:], " \t\n"), "(") {
			continue // a function or an aggregation
		}
		if slices.Contains(promqlWords, strings.ToLower(word)) || slices.Contains(names, word) {
			continue
		}
		names = append(names, word)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`absent(up{job="apitoken-validator"} == 1)`, []string{"up"}},
		{`time() - apitoken_renewal_timestamp_seconds > 600`, []string{"apitoken_renewal_timestamp_seconds"}},
		{`a - time() < 3 * 86400 and a - time() > 0 unless on (namespace, name) b`, []string{"a", "b"}},
		{`sum by (job, namespace) (rate(c{result!="allowed", reason=~"x|y"}[5m])) / sum by (job) (rate(c[5m])) > 1e3`, []string{"c"}},
		{`histogram_quantile(0.99, sum by (le, endpoint) (rate(h_bucket[5m] offset 1h)))`, []string{"h_bucket"}},
		{`sum(x) without (pod) or vector(0)`, []string{"x"}},
		{`label_replace(x, "dst", "$1", "src", "(.*)")`, []string{"x"}},
		{`count((r == 0) and on (namespace, name) e) or vector(0)`, []string{"r", "e"}},
	} {
		t.Run(tt.expr, func(t *testing.T) {
			NewWithT(t).Expect(metricNames(tt.expr)).To(Equal(tt.want))
		})
	}
}

// metricExists reports whether a metric of this name is registered with
// controller-runtime's registry, the one the manager and the validator serve; names
// of a histogram's series (_bucket, _sum, _count) count as the histogram's. up is
// Prometheus' own, for every target.
func metricExists(name string) bool {
	if name == "up" {
		return true
	}
	if registered(name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered(base) {
			return true
		}
	}
	return false
}

// registered tries to register a gauge of that name: the registry refuses a name it
// already holds, whatever its type and labels.
func registered(name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe of the install tests"})
	if err := metrics.Registry.Register(probe); err != nil {
		return true
	}
	metrics.Registry.Unregister(probe)
	return false
}

func TestMetricExists(t *testing.T) {
	g := NewWithT(t)
	for _, name := range []string{
		"apitoken_ready_status", "apitoken_expiration_timestamp_seconds", "apitoken_issuer_keys_lost_total",
		"apitoken_validator_decisions_total", "apitoken_validator_request_duration_seconds_bucket",
		"controller_runtime_reconcile_errors_total", "up",
	} {
		g.Expect(metricExists(name)).To(BeTrue(), name)
	}
	for _, name := range []string{"apitoken_ready", "apitoken_validator_request_duration_seconds_buckets", "apitoken_made_up_total"} {
		g.Expect(metricExists(name)).To(BeFalse(), name)
	}
}
