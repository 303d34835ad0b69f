package app

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

const (
	alertsFile    = "../configs/monitoring/alerts.yaml"
	dashboardFile = "../configs/monitoring/dashboard.json"
)

func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PUSHBACKD_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool is not installed (Debian package prometheus)")
		}
		t.Skip("promtool is not installed (set PUSHBACKD_REQUIRE_TOOLS=1 to make this a failure)")
	}
	out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// monitoringExprs are the PromQL expressions of the shipped alert rules and dashboard,
// named by where they are.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	raw, err = os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	return exprs
}

// metricName finds pushbackd's metric names in PromQL. Conservative: every name pushbackd
// exports starts with pushbackd_, and no label, function or keyword does; quoted strings
// (label values) are dropped first so a value cannot pass for a name.
var (
	metricName   = regexp.MustCompile(`\bpushbackd_[a-zA-Z0-9_:]*`)
	quotedString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
)

// missingMetrics are the names expr uses that exported (name -> type) lacks. A
// histogram's series are its name with _bucket, _sum or _count.
func missingMetrics(expr string, exported map[string]string) []string {
	var missing []string
	for _, name := range metricName.FindAllString(quotedString.ReplaceAllString(expr, `""`), -1) {
		if _, ok := exported[name]; ok && exported[name] != "histogram" {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] == "histogram" {
				found = true
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	return missing
}

func TestAlertsAndDashboardUseOnlyExportedMetrics(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	// Traffic that makes every labelled metric appear: a run that succeeds (steps, store
	// commits), one that fails, a duplicate, and a failed authentication.
	post(t, a, "answers", `{"loan":"L-1"}`)
	post(t, a, "fails", `{}`)
	post(t, a, "once", `{"eventId":"evt-1"}`)
	post(t, a, "once", `{"eventId":"evt-1"}`)
	c.json("POST", "/admin/v1/reload", "", 200)
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/answers", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	code, body, _ := c.do("GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	exported := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	queueLimit := ""
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = f[3]
		}
		if v, ok := strings.CutPrefix(sc.Text(), "pushbackd_queue_limit "); ok {
			queueLimit = v
		}
	}
	if queueLimit != "10000" {
		t.Errorf("pushbackd_queue_limit is %q, want the default limits.queue, 10000", queueLimit)
	}

	t.Run("every metric the rules and the dashboard query is exported", func(t *testing.T) {
		for where, expr := range monitoringExprs(t) {
			if !metricName.MatchString(expr) {
				t.Errorf("%s: no pushbackd metric in %q", where, expr)
			}
			if m := missingMetrics(expr, exported); len(m) > 0 {
				t.Errorf("%s uses %v, which /metrics does not export", where, m)
			}
		}
	})
	t.Run("a name /metrics does not export is caught", func(t *testing.T) {
		for _, tc := range []struct{ expr, want string }{
			{`rate(pushbackd_runs_failed_total[5m])`, "pushbackd_runs_failed_total"},
			{`rate(pushbackd_runs_total_bucket[5m])`, "pushbackd_runs_total_bucket"},
			{`pushbackd_store_commit_seconds > 1`, "pushbackd_store_commit_seconds"},
		} {
			if got := missingMetrics(tc.expr, exported); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("%s: missing %v, want [%s]", tc.expr, got, tc.want)
			}
		}
		if got := missingMetrics(`pushbackd_runs_total{status="pushbackd_nothing"}`, exported); got != nil {
			t.Errorf("a label value was taken for a name: %v", got)
		}
	})
}
