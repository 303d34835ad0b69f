package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/saga"
)

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	// count writes n with thousands separators: 100,000.
	"count": func(n int) string {
		s := strconv.Itoa(n)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	},
	"ms":   func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" },
	"list": func(s ...string) []string { return s },
	"chart": func(bars, total, more, window any) map[string]any {
		return map[string]any{"Bars": bars, "Total": total, "More": more, "Window": window}
	},
	"pretty": func(v any) string {
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	},
}

// runFilterKeys are the runs page's filter fields, each passed to the API as is.
var runFilterKeys = []string{"partner", "site", "endpoint", "saga", "status", "since", "until"}

// runsPageSize is how many runs a page shows: the API's page, so a page is one bounded query.
const runsPageSize = 50

type runRow struct {
	ID           string     `json:"id"`
	Partner      string     `json:"partner"`
	Site         string     `json:"site"`
	Endpoint     string     `json:"endpoint"`
	Saga         string     `json:"saga"`
	Mode         string     `json:"mode"`
	Status       string     `json:"status"`
	ReceivedAt   time.Time  `json:"received_at"`
	FinishedAt   *time.Time `json:"finished_at"`
	Attempt      int        `json:"attempt"`
	ReplayOf     string     `json:"replay_of"`
	RetryOf      string     `json:"retry_of"`
	Retries      []string   `json:"retries"`
	Replays      []string   `json:"replays"`
	SupersededBy string     `json:"superseded_by"`
	Error        string     `json:"error"`
}

// filterQuery keeps the runs page's filter fields from q, dropping empty ones.
func filterQuery(q url.Values) url.Values {
	out := url.Values{}
	for _, k := range runFilterKeys {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			out.Set(k, v)
		}
	}
	return out
}

// overviewCountMax bounds each per-status count on the overview: a status with more shows
// "100,000+". Counts come from the store's indexes (GET /admin/v1/runs/counts), so every
// instance on a shared store shows the same figures, and a restart loses none.
const overviewCountMax = 100_000

// failedSample is how many of the newest failed runs of the last day the overview groups
// by endpoint: enough to rank the endpoints that fail most, bounded however many failed.
const failedSample = 1000

type bar struct {
	Status string
	Count  int
	More   bool
}

type named struct {
	Name  string
	Value int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	data := map[string]any{"CountMax": overviewCountMax}
	for _, span := range []struct{ key, since string }{{"Hour", "1h"}, {"Day", "24h"}} {
		counts, err := c.counts(r, "since="+span.since)
		if err != "" {
			data[span.key+"Error"] = err
			continue
		}
		var bars []bar
		total := 0
		for _, st := range append(slices.Clone(statuses), "duplicate") {
			if n := counts.Counts[st]; n > 0 {
				bars = append(bars, bar{Status: st, Count: n, More: slices.Contains(counts.Capped, st)})
				total = max(total, n)
			}
		}
		data[span.key] = bars
		data[span.key+"Total"] = total
	}
	if counts, err := c.counts(r, "status=compensation_failed"); err != "" {
		data["CompensationFailedError"] = err
	} else {
		data["CompensationFailed"] = bar{Status: "compensation_failed", Count: counts.Counts["compensation_failed"],
			More: len(counts.Capped) > 0}
	}
	failing, sampled, err := c.failingEndpoints(r)
	data["Failing"], data["FailingSampled"], data["FailingError"] = failing, sampled, err
	m := parseMetrics(c.call(r, http.MethodGet, "/metrics", nil).body)
	data["QueueDepth"] = m.queueDepth
	var ready struct {
		Status     string `json:"status"`
		Reason     string `json:"reason"`
		LastReload struct {
			OK     bool      `json:"ok"`
			At     time.Time `json:"at"`
			Errors []struct {
				File    string `json:"file"`
				Line    int    `json:"line"`
				Column  int    `json:"column"`
				Message string `json:"message"`
			} `json:"errors"`
		} `json:"last_reload"`
	}
	_ = c.call(r, http.MethodGet, "/readyz", nil).decode(&ready)
	data["Ready"] = ready
	c.render(w, r, s, "overview", data)
}

type runCounts struct {
	Counts map[string]int `json:"counts"`
	Capped []string       `json:"capped"`
}

// counts asks the API for per-status counts; the error is the API's, for the page.
func (c *Console) counts(r *http.Request, query string) (runCounts, string) {
	var out runCounts
	res := c.call(r, http.MethodGet, "/admin/v1/runs/counts?max="+strconv.Itoa(overviewCountMax)+"&"+query, nil)
	if res.code != http.StatusOK || res.decode(&out) != nil {
		return out, res.errorText()
	}
	return out, ""
}

// failingEndpoints ranks partner/site/endpoint by failed runs among the newest failedSample
// failed runs of the last day, and says how many runs that was.
func (c *Console) failingEndpoints(r *http.Request) ([]named, int, string) {
	var ids []runRow
	for _, st := range failedStatuses {
		res := c.call(r, http.MethodGet, "/admin/v1/runs?since=24h&limit="+strconv.Itoa(failedSample)+"&status="+st, nil)
		var page struct {
			Runs []runRow `json:"runs"`
		}
		if res.code != http.StatusOK || res.decode(&page) != nil {
			return nil, 0, res.errorText()
		}
		ids = append(ids, page.Runs...)
	}
	// Run ids sort by arrival: the newest failedSample across the three statuses.
	sort.Slice(ids, func(i, j int) bool { return ids[i].ID > ids[j].ID })
	ids = ids[:min(len(ids), failedSample)]
	byEndpoint := map[string]int{}
	for _, run := range ids {
		byEndpoint[run.Partner+"/"+run.Site+"/"+run.Endpoint]++
	}
	var out []named
	for k, v := range byEndpoint {
		out = append(out, named{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Value > out[j].Value || out[i].Value == out[j].Value && out[i].Name < out[j].Name
	})
	return out[:min(10, len(out))], len(ids), ""
}

// metrics are what the overview still reads from this process's /metrics: the queue depth
// its dispatcher sees.
type metrics struct {
	queueDepth float64
}

func parseMetrics(text []byte) metrics {
	var m metrics
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if name, _, value, ok := metricLine(line); ok && name == "pushbackd_queue_depth" {
			m.queueDepth = value
		}
	}
	return m
}

// metricLine splits `name{a="x",b="y"} 3` into its parts.
func metricLine(line string) (string, map[string]string, float64, bool) {
	labels := map[string]string{}
	name, rest, _ := strings.Cut(line, "{")
	if rest == "" {
		name, rest, _ = strings.Cut(line, " ")
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return name, labels, v, err == nil
	}
	body, val, ok := strings.Cut(rest, "} ")
	if !ok {
		return "", nil, 0, false
	}
	for _, kv := range strings.Split(body, "\",") {
		k, v, _ := strings.Cut(kv, "=\"")
		labels[k] = strings.TrimSuffix(v, "\"")
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
	return name, labels, v, err == nil
}

func (c *Console) runs(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := filterQuery(q)
	api := url.Values{}
	for k, v := range f {
		api[k] = v
	}
	api.Set("limit", strconv.Itoa(runsPageSize))
	if cur := q.Get("cursor"); cur != "" {
		api.Set("cursor", cur)
	}
	data := map[string]any{"Filter": f, "Statuses": statuses}
	res := c.call(r, http.MethodGet, "/admin/v1/runs?"+api.Encode(), nil)
	var page struct {
		Runs []runRow `json:"runs"`
		Next string   `json:"next"`
	}
	if res.code != http.StatusOK || res.decode(&page) != nil {
		data["Error"] = res.errorText()
	}
	data["Runs"] = page.Runs
	if page.Next != "" {
		next := url.Values{}
		for k, v := range f {
			next[k] = v
		}
		next.Set("cursor", page.Next)
		data["Next"] = "/runs?" + next.Encode()
	}
	c.render(w, r, s, "runs", data)
}

var statuses = []string{"queued", "running", "waiting", "succeeded", "failed", "compensated", "compensation_failed",
	"superseded", "cancelled"}

// maxReplaySelected bounds one "replay selected": a page holds 50 runs.
const maxReplaySelected = runsPageSize

func (c *Console) replaySelected(w http.ResponseWriter, r *http.Request, s *session) {
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		c.message(w, r, s, http.StatusBadRequest, "Nothing to replay", "select one or more runs first")
		return
	}
	if len(ids) > maxReplaySelected {
		c.message(w, r, s, http.StatusBadRequest, "Too many runs", fmt.Sprintf("replay at most %d selected runs at once; replay a whole filter instead", maxReplaySelected))
		return
	}
	type outcome struct{ ID, NewID, Error string }
	var out []outcome
	for _, id := range ids {
		res := c.call(r, http.MethodPost, "/admin/v1/runs/"+url.PathEscape(id)+"/replay", nil)
		var ok struct {
			RunID string `json:"run_id"`
		}
		if res.code == http.StatusAccepted && res.decode(&ok) == nil {
			out = append(out, outcome{ID: id, NewID: ok.RunID})
		} else {
			out = append(out, outcome{ID: id, Error: res.errorText()})
		}
	}
	c.render(w, r, s, "replayed", map[string]any{"Outcomes": out})
}

// replayFilter replays every run a filter matches through the API's bulk replay: first the
// count (a dry run), then, confirmed, the job whose progress the job page shows.
func (c *Console) replayFilter(w http.ResponseWriter, r *http.Request, s *session) {
	f := filterQuery(r.PostForm)
	filter := map[string]string{}
	for k := range f {
		filter[k] = f.Get(k)
	}
	confirmed := r.PostFormValue("confirm") == "yes"
	body, _ := json.Marshal(map[string]any{"filter": filter, "dry_run": !confirmed})
	res := c.call(r, http.MethodPost, "/admin/v1/runs/replay", body)
	switch {
	case res.code >= 300:
		// An empty filter, a bad time or a fifth job: the API's message says what to change.
		c.message(w, r, s, res.code, "Replay refused", res.errorText())
	case !confirmed:
		var dry struct {
			Total int `json:"total"`
		}
		_ = res.decode(&dry)
		c.render(w, r, s, "replayconfirm", map[string]any{"Filter": f, "Total": dry.Total})
	default:
		var job struct {
			ID string `json:"id"`
		}
		_ = res.decode(&job)
		http.Redirect(w, r, "/jobs/"+url.PathEscape(job.ID), http.StatusSeeOther)
	}
}

func (c *Console) job(w http.ResponseWriter, r *http.Request, s *session) {
	res := c.call(r, http.MethodGet, "/admin/v1/jobs/"+url.PathEscape(r.PathValue("id")), nil)
	var job map[string]any
	if res.code != http.StatusOK || res.decode(&job) != nil {
		c.message(w, r, s, res.code, "No such job", res.errorText())
		return
	}
	c.render(w, r, s, "job", map[string]any{"Job": job, "ID": r.PathValue("id")})
}

type runDetail struct {
	runRow
	SagaVersion    string `json:"saga_version"`
	IdempotencyKey string `json:"idempotency_key"`
	Request        *struct {
		Method      string              `json:"method"`
		Path        string              `json:"path"`
		Query       string              `json:"query"`
		Headers     map[string][]string `json:"headers"`
		RemoteIP    string              `json:"remote_ip"`
		ContentType string              `json:"content_type"`
		Body        string              `json:"body"`
		BodyBase64  []byte              `json:"body_base64"`
	} `json:"request"`
	Answer *struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
	} `json:"answer"`
	Result *struct {
		Error      string        `json:"error"`
		FailedStep string        `json:"failed_step"`
		Duration   time.Duration `json:"duration"`
		// The engine's own records, which the admin API sends as the engine encodes them.
		Steps         []saga.StepRecord `json:"steps"`
		Compensations []saga.StepRecord `json:"compensations"`
		OnFailure     *saga.StepRecord  `json:"on_failure"`
	} `json:"result"`
	// Progress is an unfinished run's checkpoint: the steps that finished and the action
	// whose retry wait it is in.
	Progress *struct {
		Phase         string            `json:"phase"`
		Steps         []saga.StepRecord `json:"steps"`
		FailedStep    string            `json:"failed_step"`
		Error         string            `json:"error"`
		Compensations []saga.StepRecord `json:"compensations"`
		Current       *struct {
			Step         string     `json:"step"`
			Action       string     `json:"action"`
			Attempts     int        `json:"attempts"`
			WaitUntil    time.Time  `json:"wait_until"`
			Tries        []saga.Try `json:"tries"`
			TriesDropped int        `json:"tries_dropped"`
		} `json:"current"`
	} `json:"progress"`
}

func (c *Console) run(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	res := c.call(r, http.MethodGet, "/admin/v1/runs/"+url.PathEscape(id), nil)
	var run runDetail
	if res.code != http.StatusOK || res.decode(&run) != nil {
		c.message(w, r, s, res.code, "No such run", res.errorText())
		return
	}
	data := map[string]any{"Run": run, "Notice": r.URL.Query().Get("notice")}
	if run.Request != nil {
		data["Body"] = prettyBody(run.Request.ContentType, run.Request.Body)
		var names []string
		for k := range run.Request.Headers {
			names = append(names, k)
		}
		slices.Sort(names)
		data["HeaderNames"] = names
	}
	if run.Answer != nil && len(run.Answer.Body) > 0 {
		data["AnswerBody"] = prettyBody("application/json", string(run.Answer.Body))
	}
	// The buttons the API would accept: replay a finished run, retry a failed one (a
	// compensated run's steps were undone: nothing to go on from), cancel an unfinished one.
	unfinished := slices.Contains([]string{"queued", "running", "waiting"}, run.Status)
	data["Replayable"] = !unfinished
	data["Retryable"] = run.Status == "failed"
	data["Cancellable"] = unfinished
	c.render(w, r, s, "run", data)
}

// runActions are the buttons of the run page and what the API answers for each.
var runActions = map[string]string{"replay": "Replay", "retry": "Retry", "cancel": "Cancel"}

func (c *Console) runAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	name, ok := runActions[action]
	if !ok {
		c.message(w, r, s, http.StatusNotFound, "Unknown action", "a run can be replayed, retried or cancelled")
		return
	}
	res := c.call(r, http.MethodPost, "/admin/v1/runs/"+url.PathEscape(id)+"/"+action, nil)
	if res.code >= 300 {
		// 404: no such run; 409: the run's status or saga does not allow it, and why.
		c.message(w, r, s, res.code, name+" refused", res.errorText())
		return
	}
	var out struct {
		RunID           string `json:"run_id"`
		CancelRequested bool   `json:"cancel_requested"`
	}
	_ = res.decode(&out)
	switch {
	case out.RunID != "" && out.RunID != id:
		http.Redirect(w, r, "/runs/"+url.PathEscape(out.RunID)+"?notice="+url.QueryEscape(name+" of "+id), http.StatusSeeOther)
	case out.CancelRequested:
		http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"?notice="+url.QueryEscape("cancel requested: the run undoes its completed steps, then ends cancelled"), http.StatusSeeOther)
	case action == "cancel":
		http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"?notice="+url.QueryEscape("cancelled"), http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"?notice="+url.QueryEscape(name+" accepted"), http.StatusSeeOther)
	}
}

// prettyBody indents a JSON or XML body and lists a form's fields one per line; anything
// else, or anything that does not parse, is shown as received.
func prettyBody(contentType, body string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var b bytes.Buffer
		if json.Indent(&b, []byte(body), "", "  ") == nil {
			return b.String()
		}
	case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
		if s, ok := indentXML(body); ok {
			return s
		}
	case mt == "application/x-www-form-urlencoded":
		if v, err := url.ParseQuery(body); err == nil {
			var b strings.Builder
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				for _, x := range v[k] {
					fmt.Fprintf(&b, "%s = %s\n", k, x)
				}
			}
			return b.String()
		}
	}
	return body
}

func indentXML(body string) (string, bool) {
	d := xml.NewDecoder(strings.NewReader(body))
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	e.Indent("", "  ")
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", false
		}
		if cd, ok := tok.(xml.CharData); ok {
			if len(bytes.TrimSpace(cd)) == 0 {
				continue
			}
		}
		if err := e.EncodeToken(xml.CopyToken(tok)); err != nil {
			return "", false
		}
	}
	if e.Flush() != nil {
		return "", false
	}
	return b.String(), true
}

type endpointRow struct {
	URL      string `json:"url"`
	Partner  string `json:"partner"`
	Site     string `json:"site"`
	Endpoint string `json:"endpoint"`
	Scope    string `json:"scope"`
	Method   string `json:"method"`
	Preset   string `json:"preset"`
	Saga     string `json:"saga"`
	Mode     string `json:"mode"`
	Curl     string `json:"-"`
	Command  string `json:"-"`
	// Auth is what the endpoint's security method needs, values as placeholders; Signed
	// says they are computed per request.
	Auth []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Query bool   `json:"query"`
	} `json:"auth"`
	Signed bool `json:"signed"`
	// Recent are the endpoint's newest runs (at most endpointSample), for its last received
	// time and failure rate; Failed counts those that failed.
	LastReceived time.Time
	Recent       int
	Failed       int
	NoStats      bool
}

// endpointSample is how many of an endpoint's newest runs its failure rate is counted
// over: one bounded query per endpoint (the store's scope index answers it), never a scan.
const endpointSample = 20

// maxEndpointStats bounds the queries one endpoints page makes: a configuration with more
// endpoints shows the rest without statistics rather than making the page slow.
const maxEndpointStats = 200

// failedStatuses are the final statuses of a run that did not do what it was sent for.
var failedStatuses = []string{"failed", "compensated", "compensation_failed"}

func (c *Console) endpoints(w http.ResponseWriter, r *http.Request, s *session) {
	res := c.call(r, http.MethodGet, "/admin/v1/endpoints", nil)
	var page struct {
		Endpoints []endpointRow `json:"endpoints"`
		Pushback  listener      `json:"pushback"`
	}
	data := map[string]any{}
	if res.code != http.StatusOK || res.decode(&page) != nil {
		data["Error"] = res.errorText()
	}
	base := page.Pushback.base(r)
	for i := range page.Endpoints {
		e := &page.Endpoints[i]
		target := e.Partner + "/" + e.Endpoint
		if e.Site != "" {
			target = e.Partner + "/" + e.Site + "/" + e.Endpoint
		}
		// pushbackd curl signs with the endpoint's secret, which the console never holds:
		// show the command that prints the signed request, run where the config is.
		e.Command = "pushbackd curl " + target + " -file body.json"
		e.Curl = curlCommand(base+e.URL, e)
		if i >= maxEndpointStats {
			e.NoStats = true
			continue
		}
		q := url.Values{"partner": {e.Partner}, "endpoint": {e.Endpoint}, "limit": {strconv.Itoa(endpointSample)}}
		if e.Site != "" {
			q.Set("site", e.Site)
		}
		var recent struct {
			Runs []runRow `json:"runs"`
		}
		if res := c.call(r, http.MethodGet, "/admin/v1/runs?"+q.Encode(), nil); res.code != http.StatusOK || res.decode(&recent) != nil {
			e.NoStats = true
			continue
		}
		e.Recent = len(recent.Runs)
		for j, run := range recent.Runs {
			if j == 0 {
				e.LastReceived = run.ReceivedAt
			}
			if slices.Contains(failedStatuses, run.Status) {
				e.Failed++
			}
		}
	}
	data["Endpoints"] = page.Endpoints
	c.render(w, r, s, "endpoints", data)
}

// listener is the pushback listener as configured (listen, and whether it serves TLS).
type listener struct {
	Listen string `json:"listen"`
	TLS    bool   `json:"tls"`
}

// base is the pushback listener's URL: its configured address, with the host the admin
// reached this console by when it listens on every address (":8080", "0.0.0.0:8080").
func (l listener) base(r *http.Request) string {
	scheme := "http://"
	if l.TLS {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(l.Listen)
	if err != nil {
		return scheme + "localhost:8080"
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "localhost"
		if h, _, err := net.SplitHostPort(r.Host); err == nil && h != "" {
			host = h
		} else if r.Host != "" && !strings.Contains(r.Host, ":") {
			host = r.Host
		}
	}
	return scheme + net.JoinHostPort(host, port)
}

// curlCommand is a curl command that reaches the endpoint: its URL, and a header (or query
// parameter) for each value its security method needs, as a shell variable to set first;
// never a secret, which the console does not hold.
func curlCommand(target string, e *endpointRow) string {
	var b strings.Builder
	b.WriteString("curl -sS -X POST ")
	// A query value is a shell variable: outside the single quotes, inside double ones.
	sep := "?"
	quoted := ""
	for _, a := range e.Auth {
		if a.Query {
			quoted += shellQuote(target+sep+url.QueryEscape(a.Name)+"=") + `"` + a.Value + `"`
			target, sep = "", "&"
		}
	}
	if quoted == "" {
		quoted = shellQuote(target)
	}
	b.WriteString(quoted)
	b.WriteString(" -H 'Content-Type: application/json'")
	for _, a := range e.Auth {
		if !a.Query {
			b.WriteString(` -H "` + a.Name + `: ` + a.Value + `"`)
		}
	}
	b.WriteString(" --data-binary @body.json")
	return b.String()
}

// shellQuote quotes s for a POSIX shell, as pushbackd curl does.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (c *Console) sagas(w http.ResponseWriter, r *http.Request, s *session) {
	res := c.call(r, http.MethodGet, "/admin/v1/sagas", nil)
	var page struct {
		Sagas []map[string]any `json:"sagas"`
	}
	data := map[string]any{}
	if res.code != http.StatusOK || res.decode(&page) != nil {
		data["Error"] = res.errorText()
	}
	data["Sagas"] = page.Sagas
	c.render(w, r, s, "sagas", data)
}

type versionRow struct {
	Version int       `json:"version"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	Origin  string    `json:"origin"`
}

type yamlError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func (c *Console) saga(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	res := c.call(r, http.MethodGet, "/admin/v1/sagas/"+url.PathEscape(name), nil)
	if res.code != http.StatusOK {
		c.message(w, r, s, res.code, "No such saga", res.errorText())
		return
	}
	c.editor(w, r, s, http.StatusOK, name, string(res.body), nil, r.URL.Query().Get("notice"))
}

func (c *Console) editor(w http.ResponseWriter, r *http.Request, s *session, code int, name, src string, errs []yamlError, notice string) {
	var versions struct {
		Versions []versionRow `json:"versions"`
	}
	_ = c.call(r, http.MethodGet, "/admin/v1/sagas/"+url.PathEscape(name)+"/versions", nil).decode(&versions)
	slices.Reverse(versions.Versions)
	c.renderCode(w, r, s, code, "saga", map[string]any{"Name": name, "Source": src, "Errors": errs,
		"Versions": versions.Versions, "Notice": notice})
}

func (c *Console) saveSaga(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	src := strings.ReplaceAll(r.PostFormValue("source"), "\r\n", "\n")
	res := c.call(r, http.MethodPut, "/admin/v1/sagas/"+url.PathEscape(name), []byte(src))
	if res.code == http.StatusUnprocessableEntity {
		var bad struct {
			Errors []yamlError `json:"errors"`
		}
		_ = res.decode(&bad)
		c.editor(w, r, s, res.code, name, src, bad.Errors, "not saved: the saga is invalid")
		return
	}
	if res.code != http.StatusOK {
		c.message(w, r, s, res.code, "Not saved", res.errorText())
		return
	}
	var v versionRow
	_ = res.decode(&v)
	http.Redirect(w, r, "/sagas/"+url.PathEscape(name)+"?notice="+url.QueryEscape("saved as version "+strconv.Itoa(v.Version)), http.StatusSeeOther)
}

func (c *Console) restoreSaga(w http.ResponseWriter, r *http.Request, s *session) {
	name, n := r.PathValue("name"), r.PathValue("n")
	res := c.call(r, http.MethodPost, "/admin/v1/sagas/"+url.PathEscape(name)+"/versions/"+url.PathEscape(n)+"/restore", nil)
	if res.code != http.StatusOK {
		c.message(w, r, s, res.code, "Not restored", res.errorText())
		return
	}
	var v versionRow
	_ = res.decode(&v)
	http.Redirect(w, r, "/sagas/"+url.PathEscape(name)+"?notice="+url.QueryEscape("version "+n+" restored as version "+strconv.Itoa(v.Version)), http.StatusSeeOther)
}

func (c *Console) diffSaga(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	q := r.URL.Query()
	get := func(n string) (string, bool) {
		res := c.call(r, http.MethodGet, "/admin/v1/sagas/"+url.PathEscape(name)+"/versions/"+url.PathEscape(n), nil)
		return string(res.body), res.code == http.StatusOK
	}
	a, okA := get(q.Get("a"))
	b, okB := get(q.Get("b"))
	if !okA || !okB {
		c.message(w, r, s, http.StatusNotFound, "No such version", "pick two versions of saga "+name+" from its list")
		return
	}
	c.render(w, r, s, "diff", map[string]any{"Name": name, "A": q.Get("a"), "B": q.Get("b"), "Lines": diffLines(a, b)})
}
