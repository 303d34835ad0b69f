package app

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// One saga behind two endpoints: a failing endpoint must show as itself in
// pushbackd_runs_total, not be averaged into the saga's other endpoints, so the alert on
// failing runs per endpoint can name it.
func TestRunsAreCountedPerEndpoint(t *testing.T) {
	down := downstream(t)
	a := startWith(t, map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.URL + `"}
endpoints:
  - {name: healthy, saga: lookup, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: flaky, saga: lookup, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
`,
		"partners/zeta.yaml": `id: zeta
settings: {down: "` + down.URL + `"}
endpoints:
  - {name: healthy, saga: lookup, mode: sync, security: {method: bearer, tokens: [{value: z}]}}
`,
		"sagas/lookup.yaml": `name: lookup
steps:
  - name: call
    http: {url: "${ settings.down }/${ body.path }"}
`,
	})
	c := newAdmin(t, a)
	send := func(partner, endpoint, token, path string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/"+partner+"/"+endpoint, strings.NewReader(`{"path":"`+path+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s/%s: %d, want %d", partner, endpoint, resp.StatusCode, want)
		}
	}
	for range 3 {
		send("acme", "healthy", "t", "ok", http.StatusOK)
	}
	for range 2 {
		send("acme", "flaky", "t", "broken", http.StatusBadGateway)
	}
	send("zeta", "healthy", "z", "broken", http.StatusBadGateway)

	want := map[string]float64{
		`pushbackd_runs_total{endpoint="healthy",partner="acme",saga="lookup",status="succeeded"}`: 3,
		`pushbackd_runs_total{endpoint="healthy",partner="acme",saga="lookup",status="failed"}`:    0,
		`pushbackd_runs_total{endpoint="flaky",partner="acme",saga="lookup",status="failed"}`:      2,
		`pushbackd_runs_total{endpoint="flaky",partner="acme",saga="lookup",status="succeeded"}`:   0,
		`pushbackd_runs_total{endpoint="healthy",partner="zeta",saga="lookup",status="failed"}`:    1,
	}
	// A sync run's outcome is recorded just after its answer, so the counters catch up a
	// moment after the last response.
	m := scrape(t, c)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); m = scrape(t, c) {
		if m[`pushbackd_runs_total{endpoint="healthy",partner="zeta",saga="lookup",status="failed"}`] == 1 &&
			m[`pushbackd_runs_total{endpoint="flaky",partner="acme",saga="lookup",status="failed"}`] == 2 &&
			m[`pushbackd_runs_total{endpoint="healthy",partner="acme",saga="lookup",status="succeeded"}`] == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tt := range []struct{ name, series string }{
		{"the healthy endpoint's successes count under it", `pushbackd_runs_total{endpoint="healthy",partner="acme",saga="lookup",status="succeeded"}`},
		{"the healthy endpoint has no failures charged to it", `pushbackd_runs_total{endpoint="healthy",partner="acme",saga="lookup",status="failed"}`},
		{"the flaky endpoint's failures count under it", `pushbackd_runs_total{endpoint="flaky",partner="acme",saga="lookup",status="failed"}`},
		{"the flaky endpoint has no successes charged to it", `pushbackd_runs_total{endpoint="flaky",partner="acme",saga="lookup",status="succeeded"}`},
		{"another partner's endpoint of the same name counts apart", `pushbackd_runs_total{endpoint="healthy",partner="zeta",saga="lookup",status="failed"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if m[tt.series] != want[tt.series] {
				t.Errorf("%s = %v, want %v", tt.series, m[tt.series], want[tt.series])
			}
		})
	}
}

// groupBy finds the labels of "by (...)" clauses in PromQL.
var groupBy = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)

// A rule or panel that groups by a label its metric does not carry sums everything into
// one series with that label empty: promtool accepts it, and the alert never names the
// endpoint. The check covers the "failing runs per endpoint" alert among the others.
func TestAlertsAndDashboardGroupOnlyByExportedLabels(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	post(t, a, "answers", `{"loan":"L-1"}`)
	post(t, a, "fails", `{}`)
	post(t, a, "once", `{"eventId":"evt-1"}`)
	post(t, a, "once", `{"eventId":"evt-1"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/answers", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	// Wait until the failed run is counted: its labels are the ones the alert needs.
	m := scrape(t, c)
	for deadline := time.Now().Add(5 * time.Second); m[`pushbackd_runs_total{endpoint="fails",partner="acme",saga="fails",status="failed"}`] < 1 && time.Now().Before(deadline); m = scrape(t, c) {
		time.Sleep(10 * time.Millisecond)
	}
	labels := map[string]map[string]bool{} // metric -> its label names
	series := regexp.MustCompile(`^(pushbackd_[a-z_]+?)(?:_bucket|_sum|_count)?\{(.*)\}$`)
	for s := range m {
		sm := series.FindStringSubmatch(s)
		if sm == nil {
			continue
		}
		for _, kv := range strings.Split(sm[2], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				if labels[sm[1]] == nil {
					labels[sm[1]] = map[string]bool{}
				}
				labels[sm[1]][k] = true
			}
		}
	}
	exprs := monitoringExprs(t)
	perEndpoint := false
	for where, expr := range exprs {
		names := metricName.FindAllString(quotedString.ReplaceAllString(expr, `""`), -1)
		for _, by := range groupBy.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(by[1], ",") {
				l = strings.TrimSpace(l)
				for _, name := range names {
					base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
					if l != "le" && !labels[base][l] {
						t.Errorf("%s groups %s by %q, a label it does not carry (it has %v)", where, name, l, labels[base])
					}
				}
			}
		}
		if strings.HasPrefix(where, "alert ") && strings.Contains(expr, "pushbackd_runs_total") && regexp.MustCompile(`by \(partner, endpoint\b`).MatchString(expr) {
			perEndpoint = true
		}
	}
	if !perEndpoint {
		t.Error("no alert on failing runs per endpoint: none sums pushbackd_runs_total by (partner, endpoint)")
	}
}
