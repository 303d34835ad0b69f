package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
)

// Two pushbackd processes on one Postgres, one of them killed -9 five times under mixed
// load (issue 13, "Must hold"). The rig's downstream is told which instance calls it by a
// header holding a partner secret read from the environment, the one thing that differs
// between the two processes besides their ports.

const (
	chaosLease = 2 * time.Second // limits.lease_ttl: a dead instance's runs pass to the other after it
	// chaosDown is how long a killed instance stays down: its leases expire within
	// chaosLease, and the other instance, busy with the whole load, takes the runs over
	// in due order behind its own queued runs (up to ~1 s later under the race detector).
	chaosDown     = chaosLease + 3*time.Second
	chaosHold     = time.Second // how long the downstream holds a /slow call: kills find runs executing
	chaosDebounce = time.Second // the bounce saga's debounce window
)

// chaosCall is one call the downstream received.
type chaosCall struct {
	path, run, key, who string
	seq                 int
	start, end          time.Time
	cut                 bool // the caller went away while the downstream held the call
}

type chaosInstance struct {
	name, addr, admin string
	cmd               *exec.Cmd
	logFile           *os.File
	up                atomic.Bool
}

type chaosBurst struct {
	loan  string
	acks  []time.Time // when each acknowledged post of the burst was answered
	sends []time.Time // when each of those posts was sent
}

type chaosKill struct {
	victim, other *chaosInstance
	at, back      time.Time
	// leases: when the lease of each run leased in the database just before the kill
	// expires. A renewal between the read and the kill only moves it later.
	leases map[string]time.Time
}

type pgChaosRig struct {
	t          *testing.T
	bin, dir   string
	dsn, token string
	inst       [2]*chaosInstance

	mu         sync.Mutex
	calls      []*chaosCall
	flaked     map[string]bool            // runs the flaky downstream has failed once
	acked      map[string]string          // acknowledged run id -> endpoint
	ackedBy    map[string][]time.Time     // instance -> when it acknowledged
	keyAnswers map[string]map[string]bool // idempotency key -> run ids its 2xx answers named
	bursts     []*chaosBurst
	kills      []chaosKill
}

func newPGChaosRig(t *testing.T, dsn string) *pgChaosRig {
	t.Helper()
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	r := &pgChaosRig{t: t, bin: buildBinary(t), dir: t.TempDir(), dsn: dsn, token: hex.EncodeToString(tok),
		flaked: map[string]bool{}, acked: map[string]string{}, ackedBy: map[string][]time.Time{}, keyAnswers: map[string]map[string]bool{}}
	mock := httptest.NewServer(http.HandlerFunc(r.downstream))
	t.Cleanup(mock.Close)
	for i, name := range []string{"a", "b"} {
		r.inst[i] = &chaosInstance{name: "instance-" + name, addr: freeAddr(t), admin: freeAddr(t)}
	}
	// One config for both, as the README asks; -listen and -admin-listen tell them apart.
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf(`listen: 127.0.0.1:1
admin: {listen: 127.0.0.1:2, token: {env: PUSHBACKD_ADMIN_TOKEN}}
data_dir: %s
limits: {queue: 100000, workers: 16, lease_ttl: %s, auth_failures: {per_client: 100000}}
log: {level: warn}
egress: {allow: [127.0.0.1]}
store: {driver: postgres, dsn: {env: PUSHBACKD_POSTGRES_DSN}}
`, filepath.Join(r.dir, "data"), chaosLease))
	auth := "security: {method: bearer, tokens: [{value: t}]}"
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), fmt.Sprintf(`id: acme
settings: {mock: %q}
secrets: {who: {env: PUSHBACKD_INSTANCE}}
endpoints:
  - {name: work, saga: call, %[2]s}
  - {name: once, saga: call, idempotency_key: "${ body.key }", %[2]s}
  - {name: flaky, saga: flaky, %[2]s}
  - {name: slow, saga: slow, %[2]s}
  - {name: bounce, saga: bounce, %[2]s}
  - {name: ser, saga: ser, %[2]s}
`, mock.URL, auth))
	step := func(path string) string {
		return fmt.Sprintf(`  - name: tell
    http:
      method: POST
      url: "${ settings.mock }/%s"
      headers: {X-Instance: "${ secret('who') }"}
      json: {run: "${ run.id }", key: "${ body.key ?? '' }", seq: "${ body.seq ?? 0 }"}
    retry: {attempts: 5, backoff: 50ms}
`, path)
	}
	mustWrite(t, filepath.Join(r.dir, "sagas/call.yaml"), "name: call\nsteps:\n"+step("done"))
	mustWrite(t, filepath.Join(r.dir, "sagas/flaky.yaml"), "name: flaky\nsteps:\n"+step("flaky"))
	mustWrite(t, filepath.Join(r.dir, "sagas/slow.yaml"), "name: slow\nsteps:\n"+step("slow"))
	mustWrite(t, filepath.Join(r.dir, "sagas/bounce.yaml"), fmt.Sprintf("name: bounce\ndebounce: {key: \"${ body.key }\", wait: %s}\nsteps:\n", chaosDebounce)+step("bounce"))
	mustWrite(t, filepath.Join(r.dir, "sagas/ser.yaml"), "name: ser\nserialize_by: \"${ body.key }\"\nsteps:\n"+step("ser"))
	return r
}

// downstream records every call; /flaky answers each run's first call 503 Retry-After: 1,
// /slow holds a call for chaosHold (or until the caller dies), /ser takes a moment so a
// second run of a key executing early would overlap the first.
func (r *pgChaosRig) downstream(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Run, Key string
		Seq      json.Number
	}
	_ = json.NewDecoder(req.Body).Decode(&body)
	seq, _ := strconv.Atoi(body.Seq.String())
	c := &chaosCall{path: req.URL.Path, run: body.Run, key: body.Key, seq: seq, who: req.Header.Get("X-Instance"), start: time.Now()}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	first := !r.flaked[body.Run]
	if c.path == "/flaky" {
		r.flaked[body.Run] = true
	}
	r.mu.Unlock()
	switch c.path {
	case "/flaky":
		if first {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "try again", http.StatusServiceUnavailable)
		}
	case "/slow":
		select {
		case <-time.After(chaosHold):
		case <-req.Context().Done():
			r.mu.Lock()
			c.cut = true
			r.mu.Unlock()
		}
	case "/ser":
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	c.end = time.Now()
	r.mu.Unlock()
}

func (r *pgChaosRig) start(in *chaosInstance) {
	r.t.Helper()
	f, err := os.OpenFile(filepath.Join(r.dir, in.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	in.logFile = f
	in.cmd = exec.Command(r.bin, "serve", "-config", filepath.Join(r.dir, "pushbackd.yaml"), "-listen", in.addr, "-admin-listen", in.admin)
	in.cmd.Env = append(os.Environ(), "PUSHBACKD_POSTGRES_DSN="+r.dsn, "PUSHBACKD_ADMIN_TOKEN="+r.token, "PUSHBACKD_INSTANCE="+in.name)
	in.cmd.Stdout, in.cmd.Stderr = f, f
	if err := in.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + in.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				in.up.Store(true)
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s not ready: %v\n%s", in.name, err, r.log(in))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *pgChaosRig) log(in *chaosInstance) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, in.name+".log"))
	return string(b)
}

func (r *pgChaosRig) kill(in *chaosInstance) {
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	_ = in.cmd.Wait()
	in.up.Store(false)
	in.logFile.Close()
}

func (r *pgChaosRig) terminate(in *chaosInstance) {
	if !in.up.Load() {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	if err := in.cmd.Wait(); err != nil {
		r.t.Errorf("%s graceful stop: %v\n%s", in.name, err, r.log(in))
	}
	in.up.Store(false)
	in.logFile.Close()
}

// pick is instance i, or the other when i is down: a load balancer's health check.
func (r *pgChaosRig) pick(i int) *chaosInstance {
	if in := r.inst[i%2]; in.up.Load() {
		return in
	}
	return r.inst[(i+1)%2]
}

// post sends one pushback to in and returns the run id of a 2xx answer ("" otherwise).
func (r *pgChaosRig) post(client *http.Client, in *chaosInstance, endpoint, body string) string {
	req, _ := http.NewRequest(http.MethodPost, "http://"+in.addr+"/pushback/acme/"+endpoint, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var a struct {
		RunID string `json:"run_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode/100 != 2 || a.RunID == "" {
		return ""
	}
	r.mu.Lock()
	if r.acked[a.RunID] == "" {
		r.acked[a.RunID] = endpoint
	}
	r.ackedBy[in.name] = append(r.ackedBy[in.name], time.Now())
	r.mu.Unlock()
	return a.RunID
}

// load sends mixed traffic to both instances until stop is closed: async runs (plain,
// held by the downstream, failed once with Retry-After), idempotent duplicates sent to both
// instances at once, debounced bursts split across the instances, and per serialize_by key
// a sequence whose every send is acknowledged (or refused) before the next.
func (r *pgChaosRig) load(stop <-chan struct{}) (wait func()) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var wg sync.WaitGroup
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	// The load is paced below what one instance can execute (16 workers, under -race on a
	// shared machine), so a backlog does not hide when the survivor takes runs over.
	for w := range 4 {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(1, uint64(w)))
			for !stopped() {
				r.post(client, r.pick(rng.IntN(2)), [...]string{"work", "flaky"}[rng.IntN(2)], `{}`)
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Go(func() { // about seven held runs a second: several executing on each instance
		for i := 0; !stopped(); i++ {
			r.post(client, r.pick(i), "slow", `{}`)
			time.Sleep(150 * time.Millisecond)
		}
	})
	for w := range 2 {
		wg.Go(func() {
			for n := 0; !stopped(); n++ {
				body := fmt.Sprintf(`{"key":"dup-%d-%d"}`, w, n)
				var both sync.WaitGroup
				for i := range 2 {
					both.Go(func() {
						if id := r.post(client, r.inst[i], "once", body); id != "" {
							r.mu.Lock()
							k := fmt.Sprintf("dup-%d-%d", w, n)
							if r.keyAnswers[k] == nil {
								r.keyAnswers[k] = map[string]bool{}
							}
							r.keyAnswers[k][id] = true
							r.mu.Unlock()
						}
					})
				}
				both.Wait()
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for n := 0; !stopped(); n++ {
				b := &chaosBurst{loan: fmt.Sprintf("loan-%d-%d", w, n)}
				for i := range 3 + n%2 {
					sent := time.Now()
					if r.post(client, r.pick(i), "bounce", fmt.Sprintf(`{"key":%q}`, b.loan)) != "" {
						b.acks, b.sends = append(b.acks, time.Now()), append(b.sends, sent)
					}
				}
				r.mu.Lock()
				r.bursts = append(r.bursts, b)
				r.mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	for w := range 4 {
		wg.Go(func() {
			for seq := 0; !stopped(); seq++ {
				r.post(client, r.pick(seq), "ser", fmt.Sprintf(`{"key":"ser-%d","seq":%d}`, w, seq))
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return wg.Wait
}

// slowInFlight counts the /slow calls in is holding right now.
func (r *pgChaosRig) slowInFlight(in *chaosInstance) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.path == "/slow" && c.who == in.name && c.end.IsZero() {
			n++
		}
	}
	return n
}

// TestTwoInstancesOnPostgresSurviveFiveKillNines: two instances on one database serve mixed
// load while one of them (alternately) is killed -9 five times, each time while it holds
// runs executing, and restarted once its leases have expired. Every acknowledged run
// finishes, no idempotency key runs twice, each debounced burst runs once, per
// serialize_by key the downstream sees the arrival order, and every run executing on a
// killed instance is finished by the other one, after its lease.
func TestTwoInstancesOnPostgresSurviveFiveKillNines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two real binaries on a real Postgres and kills them")
	}
	c, err := pgtest.Start()
	if err != nil {
		(&pgtest.Env{Err: err}).Need(t)
	}
	t.Cleanup(c.Stop)
	r := newPGChaosRig(t, c.NewDatabase(t, ""))
	began := time.Now()
	for _, in := range r.inst {
		r.start(in)
	}
	t.Cleanup(func() {
		for _, in := range r.inst {
			r.terminate(in)
		}
		if t.Failed() {
			for _, in := range r.inst {
				t.Logf("%s's output:\n%s", in.name, r.log(in))
			}
		}
	})
	stop := make(chan struct{})
	wait := r.load(stop)
	for k := range 5 {
		victim, other := r.inst[k%2], r.inst[(k+1)%2]
		time.Sleep(1500 * time.Millisecond)
		deadline := time.Now().Add(10 * time.Second)
		for r.slowInFlight(victim) == 0 {
			if time.Now().After(deadline) {
				close(stop)
				wait()
				t.Fatalf("kill %d: %s never held a run executing", k+1, victim.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		leases, err := r.leases()
		if err != nil {
			close(stop)
			wait()
			t.Fatalf("kill %d: read the leases: %v", k+1, err)
		}
		at := time.Now()
		r.kill(victim)
		// Down past its leases: only the other instance can take its runs over.
		time.Sleep(chaosDown)
		r.start(victim)
		r.mu.Lock()
		r.kills = append(r.kills, chaosKill{victim: victim, other: other, at: at, back: time.Now(), leases: leases})
		r.mu.Unlock()
	}
	time.Sleep(time.Second)
	close(stop)
	wait()
	loaded := time.Since(began)

	st, err := postgres.Open(context.Background(), r.dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r.mu.Lock()
	acked := maps2slice(r.acked)
	r.mu.Unlock()
	runs := map[string]*store.Run{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		open := 0
		for _, id := range acked {
			if runs[id] != nil && runs[id].Status.Final() {
				continue
			}
			run, err := st.GetRun(context.Background(), id)
			if err != nil {
				t.Fatalf("acknowledged run %s: %v", id, err)
			}
			runs[id] = run
			if !run.Status.Final() {
				open++
			}
		}
		left, err := st.Unfinished(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if open == 0 && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged runs (%d runs in all) never finished", open, len(left))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d runs acknowledged under load for %s with 5 kills; all final %s later",
		len(acked), loaded.Round(100*time.Millisecond), (time.Since(began) - loaded).Round(100*time.Millisecond))

	r.mu.Lock()
	defer r.mu.Unlock()
	t.Run("every acknowledged run finishes, superseded only by a debounce", func(t *testing.T) {
		for _, id := range acked {
			run := runs[id]
			if run.Status == store.StatusSucceeded || run.Status == store.StatusSuperseded && r.acked[id] == "bounce" {
				continue
			}
			t.Errorf("%s run %s ended %s: %s", r.acked[id], id, run.Status, run.Error)
		}
	})
	byRun := map[string][]*chaosCall{}
	for _, c := range r.calls {
		byRun[c.run] = append(byRun[c.run], c)
	}
	t.Run("no idempotency key runs twice, though sent to both instances", func(t *testing.T) {
		ran := map[string]map[string]bool{}
		for _, c := range r.calls {
			if c.path == "/done" && c.key != "" {
				if ran[c.key] == nil {
					ran[c.key] = map[string]bool{}
				}
				ran[c.key][c.run] = true
			}
		}
		both := 0
		for key, answers := range r.keyAnswers {
			if len(answers) != 1 {
				t.Errorf("key %s: the 2xx answers name %d runs, want 1", key, len(answers))
			}
			if len(ran[key]) != 1 {
				t.Errorf("key %s: %d runs reached the downstream, want 1", key, len(ran[key]))
			}
			if len(answers) == 1 {
				both++
			}
		}
		if both < 20 {
			t.Errorf("only %d idempotency keys acknowledged", both)
		}
	})
	t.Run("each debounced burst yields one run that executes", func(t *testing.T) {
		ran := map[string]map[string]bool{}
		for _, c := range r.calls {
			if c.path == "/bounce" {
				if ran[c.key] == nil {
					ran[c.key] = map[string]bool{}
				}
				ran[c.key][c.run] = true
			}
		}
		checked, slowBursts := 0, 0
		for _, b := range r.bursts {
			if len(b.acks) < 2 {
				continue // not a burst: its instance died under it
			}
			// A post recorded a window or more after the one before it may rightly run
			// twice. Each was recorded between its sending and its answer, so from the
			// sending of one to the answer of the next bounds the time between the records
			// (the gap between answers does not: a slow first answer hides it).
			slow := false
			for i := 1; i < len(b.acks); i++ {
				slow = slow || b.acks[i].Sub(b.sends[i-1]) > chaosDebounce*9/10
			}
			if slow {
				slowBursts++
				continue
			}
			checked++
			if len(ran[b.loan]) != 1 {
				t.Errorf("burst %s (%d acknowledged posts): %d runs executed, want 1", b.loan, len(b.acks), len(ran[b.loan]))
			}
		}
		if checked < 10 {
			t.Errorf("only %d bursts checked (%d too slow to count)", checked, slowBursts)
		}
		t.Logf("%d bursts checked, %d left out as slower than the window", checked, slowBursts)
	})
	t.Run("per serialize_by key the downstream sees arrival order", func(t *testing.T) {
		last := map[string]int{}
		calls := 0
		for _, c := range r.calls { // in the order the downstream received them
			if c.path != "/ser" {
				continue
			}
			calls++
			if prev, ok := last[c.key]; ok && c.seq < prev {
				t.Errorf("key %s: seq %d (run %s) reached the downstream after seq %d", c.key, c.seq, c.run, prev)
			}
			last[c.key] = c.seq
		}
		if calls < 40 {
			t.Errorf("only %d serialized calls", calls)
		}
	})
	t.Run("runs in a retry wait at a kill finish", func(t *testing.T) {
		waiting := 0
		for _, kill := range r.kills {
			for run, calls := range byRun {
				// The flaky downstream's 503 Retry-After: 1 to the victim in the second
				// before the kill: the run was waiting out its retry when the process died.
				if calls[0].path != "/flaky" || calls[0].who != kill.victim.name ||
					calls[0].end.After(kill.at) || calls[0].end.Before(kill.at.Add(-time.Second)) {
					continue
				}
				waiting++
				if len(calls) < 2 || runs[run] == nil || runs[run].Status != store.StatusSucceeded {
					t.Errorf("run %s, in a retry wait on %s at its kill: %d calls, ended %v", run, kill.victim.name, len(calls), runs[run])
				}
			}
		}
		if waiting == 0 {
			t.Error("no run was in a retry wait at a kill")
		}
		t.Logf("%d runs were in a retry wait on the killed instance", waiting)
	})
	t.Run("a run executing on a killed instance is finished by the other after its lease", func(t *testing.T) {
		taken, againstLease := 0, 0
		var waits []time.Duration
		for k, kill := range r.kills {
			cut := 0
			for run, calls := range byRun {
				// The first call cut at the kill by the victim: the run was executing there.
				i := slices.IndexFunc(calls, func(c *chaosCall) bool {
					return c.path == "/slow" && c.who == kill.victim.name && c.cut &&
						!c.end.Before(kill.at) && c.end.Before(kill.at.Add(time.Second))
				})
				if i < 0 {
					continue
				}
				cut++
				later := calls[i+1:]
				j := slices.IndexFunc(later, func(c *chaosCall) bool { return !c.cut })
				switch {
				case j < 0:
					t.Errorf("kill %d: run %s, cut on %s, was never called again", k+1, run, kill.victim.name)
				case later[j].who != kill.other.name:
					t.Errorf("kill %d: run %s, cut on %s, was finished by %s, want %s", k+1, run, kill.victim.name, later[j].who, kill.other.name)
				case !kill.leases[run].IsZero() && later[j].start.Before(kill.leases[run]):
					// Not against the renewal schedule (a lease renewed every third of its
					// life has two thirds left at a kill): on a loaded machine a renewal
					// can come late, and the lease then rightly expires sooner.
					t.Errorf("kill %d: run %s taken over %s after the kill, before its lease expired (%s after the kill)",
						k+1, run, later[j].start.Sub(kill.at), kill.leases[run].Sub(kill.at))
				case later[j].start.After(kill.back):
					t.Errorf("kill %d: run %s taken over %s after the kill, after %s came back", k+1, run, later[j].start.Sub(kill.at), kill.victim.name)
				case runs[run] != nil && runs[run].Status != store.StatusSucceeded:
					t.Errorf("kill %d: run %s ended %s", k+1, run, runs[run].Status)
				default:
					taken++
					if !kill.leases[run].IsZero() {
						againstLease++
					}
					waits = append(waits, later[j].start.Sub(kill.at))
				}
			}
			if cut == 0 {
				t.Errorf("kill %d: no run was executing on %s", k+1, kill.victim.name)
			}
			served := 0
			for _, at := range r.ackedBy[kill.other.name] {
				if at.After(kill.at) && at.Before(kill.back) {
					served++
				}
			}
			if served == 0 {
				t.Errorf("kill %d: %s acknowledged nothing while %s was down", k+1, kill.other.name, kill.victim.name)
			}
			t.Logf("kill %d of %s: %d runs cut while executing; %s acknowledged %d requests while it was down", k+1, kill.victim.name, cut, kill.other.name, served)
		}
		if taken > 0 && againstLease == 0 {
			t.Error("no run taken over had its lease read before the kill: the takeovers' timing went unchecked")
		}
		slices.Sort(waits)
		if len(waits) > 0 {
			t.Logf("%d runs cut by kills finished by the other instance, called again %s to %s after the kill (lease %s); %d checked against the expiry of the lease they held",
				taken, waits[0].Round(10*time.Millisecond), waits[len(waits)-1].Round(10*time.Millisecond), chaosLease, againstLease)
		}
	})
}

// leases reads when the lease of each run leased in the database expires, by run id.
func (r *pgChaosRig) leases() (map[string]time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := pgtest.Query(ctx, r.dsn, `SELECT id, lease_expires FROM runs WHERE lease_expires > 0 AND NOT final`)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, row := range rows {
		id, ok := row[0].([]byte)
		expires, ok2 := row[1].(int64)
		if !ok || !ok2 || len(id) != len(store.RunID{}) {
			return nil, fmt.Errorf("a runs row of %T %T; want a 16-byte id and an int64 expiry", row[0], row[1])
		}
		out[store.RunID(id).String()] = time.Unix(0, expires)
	}
	return out, nil
}

func maps2slice(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
