package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushbackd/pushbackd/app"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/store"
)

const runsUsage = `usage: pushbackd runs list [-partner P] [-site S] [-endpoint E] [-status S] [-saga S] [-idempotency-key K]
           [-replay-of ID] [-retry-of ID] [-since T] [-until T] [-limit N] [-oldest] [-cursor C] [-local] [-json]
       pushbackd runs show ID [-json]
       pushbackd runs replay ID [-json]
       pushbackd runs replay [-partner P] [-site S] [-endpoint E] [-status S] [-saga S] [-since T] [-until T] [-yes] [-json]
       pushbackd runs retry ID [-json]     (a failed run, from its failed step)
       pushbackd runs cancel ID [-json]    (a queued, waiting or running run)
common flags: -config configs/pushbackd.yaml  -admin http://host:port  -token-file PATH
The token is read from PUSHBACKD_ADMIN_TOKEN, else -token-file, else <data_dir>/admin.token.
-status compensation_failed finds the runs whose compensations did not all succeed: something
they did may still be in place ("runs show ID" lists each undo step and its error).
-since and -until take a duration ago (2h, 30m) or a time: RFC 3339, or "2006-01-02 15:04[:05]"
read in the zone RECEIVED is shown in: UTC, or this machine's zone with -local.`

// runsCmd talks to the admin API of a running server.
type runsCmd struct {
	base   string
	token  string
	json   bool
	stdout io.Writer
	client *http.Client
	// zone is where list shows and reads times (UTC unless -local); again is the command
	// line that repeated the list, less its filters, for the "more:" hint.
	zone  *time.Location
	again []string
}

// runFilterFlags maps the list's flags to the admin API's query parameters.
var runFilterFlags = []struct{ flag, param string }{
	{"partner", "partner"}, {"site", "site"}, {"endpoint", "endpoint"}, {"status", "status"}, {"saga", "saga"},
	{"idempotency-key", "idempotency_key"}, {"replay-of", "replay_of"}, {"retry-of", "retry_of"}, {"since", "since"}, {"until", "until"},
	{"limit", "limit"}, {"cursor", "cursor"},
}

// listQuery builds the API query. Relative and zoneless times are resolved here, against
// this machine's clock and rc.zone, so the "more:" hint repeats the very same window
// rather than one that has moved on since.
func (rc *runsCmd) listQuery(filters map[string]*string, oldest bool, now time.Time) (url.Values, error) {
	q := url.Values{}
	for _, f := range runFilterFlags {
		v := *filters[f.flag]
		if v == "" {
			continue
		}
		if f.flag == "since" || f.flag == "until" {
			t, err := parseWhen(v, now, rc.zone)
			if err != nil {
				return nil, fmt.Errorf("-%s: %w", f.flag, err)
			}
			v = t.UTC().Format(time.RFC3339Nano)
			*filters[f.flag] = v
		}
		q.Set(f.param, v)
	}
	if oldest {
		q.Set("order", "oldest")
	}
	return q, nil
}

// localLayouts are the zoneless forms -since and -until take, read in the list's zone.
var localLayouts = []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

func parseWhen(s string, now time.Time, zone *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, s, zone); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration ago like 2h or 30m nor a time like 2026-11-22T10:00:00Z or \"2026-11-22 10:00\" (%s)", s, zoneName(zone))
}

// rc0 names a zone for messages and the RECEIVED header.
func zoneName(zone *time.Location) string {
	if zone == time.UTC {
		return "UTC"
	}
	name, _ := time.Now().In(zone).Zone()
	return "local, " + name
}

func cmdRuns(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("runs", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml (for the admin address and token file)")
	adminURL := fs.String("admin", "", "admin API base URL (default: http://<admin.listen>)")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default: <data_dir>/admin.token)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	local := fs.Bool("local", false, "show and read times in this machine's time zone instead of UTC")
	oldest := fs.Bool("oldest", false, "list the oldest runs first")
	yes := fs.Bool("yes", false, "replay by filter without asking")
	filters := map[string]*string{}
	for _, f := range runFilterFlags {
		usage := "filter: " + f.param
		switch f.flag {
		case "status":
			usage += " (" + statusNames() + ")"
		case "since", "until":
			usage += " (a duration ago like 2h, or a time)"
		}
		filters[f.flag] = fs.String(f.flag, "", usage)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	// The shape of the command is checked before anything is read or dialled, so a stray
	// word is a usage error (exit 2), not whatever connecting happens to say.
	if !runsShape(pos) {
		fmt.Fprintln(stderr, runsUsage)
		return 2
	}
	rc := &runsCmd{json: *asJSON, stdout: stdout, client: &http.Client{Timeout: 30 * time.Second}}
	if err := rc.connect(*cfgPath, *adminURL, *tokenFile); err != nil {
		fmt.Fprintf(stderr, "pushbackd runs: %v\n", err)
		return 1
	}
	switch {
	case pos[0] == "list" && len(pos) == 1:
		rc.zone = time.UTC
		if *local {
			rc.zone = time.Local
		}
		var q url.Values
		if q, err = rc.listQuery(filters, *oldest, time.Now()); err != nil {
			fmt.Fprintf(stderr, "pushbackd runs list: %v\n", err)
			return 2
		}
		rc.again = []string{"pushbackd", "runs", "list"}
		// Every connection flag given is kept, even one equal to its default: the hint
		// must reach the same server from wherever it is pasted.
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "config" || f.Name == "admin" || f.Name == "token-file" {
				rc.again = append(rc.again, "-"+f.Name, f.Value.String())
			}
		})
		if *local {
			rc.again = append(rc.again, "-local")
		}
		err = rc.list(ctx, q)
	case pos[0] == "show" && len(pos) == 2:
		err = rc.show(ctx, pos[1])
	case pos[0] == "replay" && len(pos) == 2:
		err = rc.replay(ctx, pos[1])
	case pos[0] == "replay" && len(pos) == 1:
		rc.zone = time.UTC
		if *local {
			rc.zone = time.Local
		}
		err = rc.bulkReplay(ctx, filters, *yes, stdin, stderr, time.Now())
	case pos[0] == "retry" && len(pos) == 2:
		err = rc.retry(ctx, pos[1])
	case pos[0] == "cancel" && len(pos) == 2:
		err = rc.cancel(ctx, pos[1])
	default:
		fmt.Fprintln(stderr, runsUsage)
		return 2
	}
	if ue := (usageError{}); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "pushbackd runs: %v\n%s\n", err, runsUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd runs: %v\n", err)
		return 1
	}
	return 0
}

// connect finds the admin API and its token. Only the main file's server section is read,
// for addresses and the data dir: a broken partner or saga file must not stop an operator
// looking at runs.
func (rc *runsCmd) connect(cfgPath, adminURL, tokenFile string) error {
	server, err := config.LoadServer(cfgPath)
	if err != nil {
		server = config.Defaults()
	}
	if err != nil && (adminURL == "" || (tokenFile == "" && os.Getenv("PUSHBACKD_ADMIN_TOKEN") == "")) {
		return fmt.Errorf("cannot read %s for the admin address and token (or give -admin and -token-file): %w", cfgPath, err)
	}
	rc.base = strings.TrimRight(adminURL, "/")
	if rc.base == "" {
		rc.base = "http://" + dialable(server.Admin.Listen)
	}
	if tok := os.Getenv("PUSHBACKD_ADMIN_TOKEN"); tok != "" {
		rc.token = tok
		return nil
	}
	if tokenFile == "" {
		tokenFile = app.AdminTokenPath(server.DataDir)
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w (start the server once, or set PUSHBACKD_ADMIN_TOKEN)", err)
	}
	rc.token = strings.TrimSpace(string(b))
	return nil
}

func (rc *runsCmd) call(ctx context.Context, method, path string, out any) ([]byte, error) {
	return rc.send(ctx, method, path, nil, out)
}

// send calls the admin API, with in as the JSON request body unless it is nil, and decodes
// a 2xx answer into out; any other answer is an error carrying the API's own message.
func (rc *runsCmd) send(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rc.base+path, reqBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+rc.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", rc.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return body, json.Unmarshal(body, out)
}

func (rc *runsCmd) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := rc.stdout.Write(buf.Bytes())
	return err
}

type runSummary struct {
	ID         string    `json:"id"`
	Partner    string    `json:"partner"`
	Site       string    `json:"site"`
	Endpoint   string    `json:"endpoint"`
	Saga       string    `json:"saga"`
	Status     string    `json:"status"`
	Mode       string    `json:"mode"`
	Attempt    int       `json:"attempt"`
	ReceivedAt time.Time `json:"received_at"`
	FinishedAt time.Time `json:"finished_at"`
	Error      string    `json:"error"`
	ReplayOf   string    `json:"replay_of"`
}

func (rc *runsCmd) list(ctx context.Context, q url.Values) error {
	var page struct {
		Runs []runSummary `json:"runs"`
		Next string       `json:"next"`
	}
	raw, err := rc.call(ctx, http.MethodGet, "/admin/v1/runs?"+q.Encode(), &page)
	if err != nil {
		return err
	}
	if rc.json {
		return rc.printJSON(raw)
	}
	tw := tabwriter.NewWriter(rc.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "RUN\tRECEIVED (%s)\tSTATUS\tDURATION\tPARTNER\tSITE\tENDPOINT\tSAGA\tATTEMPT\tERROR\n", zoneName(rc.zone))
	for _, r := range page.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.ReceivedAt.In(rc.zone).Format("2006-01-02 15:04:05"),
			r.Status, r.took(), r.Partner, dash(r.Site), r.Endpoint, r.Saga, r.Attempt, clip(r.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.Next != "" {
		// The next page is the same query from the cursor on: repeat every filter.
		args := slices.Clone(rc.again)
		for _, f := range runFilterFlags {
			if v := q.Get(f.param); v != "" && f.param != "cursor" {
				args = append(args, "-"+f.flag, v)
			}
		}
		if q.Get("order") == "oldest" {
			args = append(args, "-oldest")
		}
		args = append(args, "-cursor", page.Next)
		for i, a := range args {
			args[i] = hintWord(a)
		}
		fmt.Fprintf(rc.stdout, "more: %s\n", strings.Join(args, " "))
	}
	return nil
}

// hintWord leaves plain words as they are and single-quotes the rest, so the hint can be
// pasted into a POSIX shell whatever a filter holds.
func hintWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:+=@,") == "" {
		return s
	}
	return shellQuote(s)
}

// statusNames lists the statuses a run can have, as the store defines them.
func statusNames() string {
	var names []string
	for _, st := range store.Statuses() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// runsShape reports whether pos is a runs command with its arguments: a verb and, for the
// verbs on one run, its id ("replay" takes an id or, with filters, none).
func runsShape(pos []string) bool {
	if len(pos) == 0 {
		return false
	}
	switch pos[0] {
	case "list":
		return len(pos) == 1
	case "replay":
		return len(pos) <= 2
	case "show", "retry", "cancel":
		return len(pos) == 2
	}
	return false
}

func (rc *runsCmd) show(ctx context.Context, id string) error {
	var run struct {
		runSummary
		SagaVersion  string   `json:"saga_version"`
		Replays      []string `json:"replays"`
		SupersededBy string   `json:"superseded_by"`
		RetryOf      string   `json:"retry_of"`
		Retries      []string `json:"retries"`
		Request      struct {
			Method      string `json:"method"`
			Path        string `json:"path"`
			ContentType string `json:"content_type"`
			RemoteIP    string `json:"remote_ip"`
			Body        string `json:"body"`
		}
		Answer *struct {
			Status int
			Body   json.RawMessage
		}
		Result *struct {
			Steps         []stepLine `json:"steps"`
			Compensations []stepLine `json:"compensations"`
			OnFailure     *stepLine  `json:"on_failure"`
		}
		Progress *progressLines
	}
	raw, err := rc.call(ctx, http.MethodGet, "/admin/v1/runs/"+url.PathEscape(id), &run)
	if err != nil {
		return err
	}
	if rc.json {
		return rc.printJSON(raw)
	}
	w := rc.stdout
	fmt.Fprintf(w, "run       %s\n", run.ID)
	fmt.Fprintf(w, "status    %s (attempt %d, %s)\n", run.Status, run.Attempt, run.Mode)
	fmt.Fprintf(w, "endpoint  %s/%s%s  saga %s@%s\n", run.Partner, siteSlash(run.Site), run.Endpoint, run.Saga, run.SagaVersion)
	fmt.Fprintf(w, "received  %s\n", run.ReceivedAt.Local().Format(time.RFC3339))
	if !run.FinishedAt.IsZero() {
		fmt.Fprintf(w, "finished  %s (took %s)\n", run.FinishedAt.Local().Format(time.RFC3339), run.took())
	}
	if run.ReplayOf != "" {
		fmt.Fprintf(w, "replay of %s\n", run.ReplayOf)
	}
	if run.SupersededBy != "" {
		fmt.Fprintf(w, "superseded by %s\n", run.SupersededBy)
	}
	if len(run.Replays) > 0 {
		fmt.Fprintf(w, "replays   %s\n", strings.Join(run.Replays, " "))
	}
	if run.RetryOf != "" {
		fmt.Fprintf(w, "retry of  %s\n", run.RetryOf)
	}
	if len(run.Retries) > 0 {
		fmt.Fprintf(w, "retries   %s\n", strings.Join(run.Retries, " "))
	}
	fmt.Fprintf(w, "request   %s %s %s from %s, %d bytes\n", run.Request.Method, run.Request.Path, run.Request.ContentType, run.Request.RemoteIP, len(run.Request.Body))
	if run.Answer != nil {
		fmt.Fprintf(w, "answer    %d %s\n", run.Answer.Status, clip(string(run.Answer.Body), 100))
	}
	if run.Error != "" {
		fmt.Fprintf(w, "error     %s\n", run.Error)
	}
	if store.Status(run.Status) == store.StatusCompensationFailed {
		fmt.Fprintf(w, "undo      incomplete: a compensation failed, so what its step did may still be in place (the undo lines below)\n")
	}
	var steps, undo []stepLine
	var onFailure *stepLine
	switch p := run.Progress; {
	case run.Result != nil:
		steps, undo, onFailure = run.Result.Steps, run.Result.Compensations, run.Result.OnFailure
	case p != nil:
		// An unfinished run: how far its last checkpoint got, and the try it waits for.
		switch p.Phase {
		case "compensating":
			fmt.Fprintf(w, "progress  undoing the steps that succeeded, since step %s failed\n", p.FailedStep)
		case "on_failure":
			fmt.Fprintf(w, "progress  on_failure is left, since step %s failed\n", p.FailedStep)
		default:
			fmt.Fprintf(w, "progress  running the steps\n")
		}
		steps, undo = p.Steps, p.Compensations
		if c := p.Current; c != nil {
			what := c.Step
			if p.Phase == "compensating" {
				what += "'s compensation"
			}
			if !c.WaitUntil.IsZero() {
				fmt.Fprintf(w, "waiting   %s, try %d at %s\n", what, c.Attempts+1, c.WaitUntil.Local().Format(time.RFC3339))
			}
			line := stepLine{Name: c.Step, Action: c.Action, Status: "waiting", Attempts: c.Attempts, Tries: c.Tries, TriesDropped: c.TriesDropped}
			if p.Phase == "compensating" {
				undo = append(undo, line)
			} else {
				steps = append(steps, line)
			}
		}
	}
	if steps != nil || undo != nil || onFailure != nil {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nSTEP\tACTION\tSTATUS\tATTEMPTS\tDURATION\tERROR")
		print := func(prefix string, s stepLine) {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d\t%s\t%s\n", prefix, s.Name, s.Action, s.Status, s.Attempts, humanDuration(time.Duration(s.Duration)), clip(s.Error, 60))
			// Each try of a retried step, under it: what every try met, not only the last.
			for i, t := range s.Tries {
				n := i + 1
				if i > 0 {
					n += s.TriesDropped
				}
				if i == 1 && s.TriesDropped > 0 {
					fmt.Fprintf(tw, "  … %d tries not kept\t\t\t\t\t\n", s.TriesDropped)
				}
				status := t.Status
				if t.HTTPStatus != 0 {
					status += " " + strconv.Itoa(t.HTTPStatus)
				}
				fmt.Fprintf(tw, "  try %d\t\t%s\t\t%s\t%s\n", n, status, humanDuration(time.Duration(t.Duration)), clip(t.Error, 60))
			}
		}
		for _, s := range steps {
			print("", s)
		}
		for _, s := range undo {
			print("undo ", s)
		}
		if onFailure != nil {
			print("on_failure ", *onFailure)
		}
		return tw.Flush()
	}
	return nil
}

// took is how long the run took from its arrival to its end; "-" while it has not ended.
func (r runSummary) took() string {
	if r.FinishedAt.IsZero() {
		return "-"
	}
	return humanDuration(r.FinishedAt.Sub(r.ReceivedAt))
}

// humanDuration rounds d to what a reader compares at a glance — "340ms", "1.2s", "2m3s" —
// rather than Go's nanosecond-exact "1.234567891s".
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	// "26h4m", not "26h4m0s": seconds do not matter at this size.
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

type stepLine struct {
	Name         string    `json:"name"`
	Action       string    `json:"action"`
	Status       string    `json:"status"`
	Attempts     int       `json:"attempts"`
	Duration     int64     `json:"duration"`
	Error        string    `json:"error"`
	Tries        []tryLine `json:"tries"`
	TriesDropped int       `json:"tries_dropped"`
}

type tryLine struct {
	Status     string `json:"status"`
	Duration   int64  `json:"duration"`
	Error      string `json:"error"`
	HTTPStatus int    `json:"http_status"`
}

// progressLines is an unfinished run's progress (GET /admin/v1/runs/{id}).
type progressLines struct {
	Phase         string     `json:"phase"`
	Steps         []stepLine `json:"steps"`
	FailedStep    string     `json:"failed_step"`
	Compensations []stepLine `json:"compensations"`
	Current       *struct {
		Step         string    `json:"step"`
		Action       string    `json:"action"`
		Attempts     int       `json:"attempts"`
		WaitUntil    time.Time `json:"wait_until"`
		Tries        []tryLine `json:"tries"`
		TriesDropped int       `json:"tries_dropped"`
	} `json:"current"`
}

func siteSlash(site string) string {
	if site == "" {
		return ""
	}
	return site + "/"
}

func (rc *runsCmd) replay(ctx context.Context, id string) error {
	var out struct {
		RunID    string `json:"run_id"`
		ReplayOf string `json:"replay_of"`
	}
	raw, err := rc.call(ctx, http.MethodPost, "/admin/v1/runs/"+url.PathEscape(id)+"/replay", &out)
	if err != nil {
		return err
	}
	if rc.json {
		return rc.printJSON(raw)
	}
	fmt.Fprintf(rc.stdout, "replaying %s as run %s\n", out.ReplayOf, out.RunID)
	return nil
}
