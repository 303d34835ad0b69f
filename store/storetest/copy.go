package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// CopySource is a store a copy reads from; CopyDest one it writes to.
type (
	CopySource interface {
		store.Store
		store.Exporter
	}
	CopyDest interface {
		store.Store
		store.Importer
	}
)

// Seeded names what Seed put into a store.
type Seeded struct {
	Runs     []string // every run id, in arrival order
	Crashed  string   // a running run whose worker is gone
	Parked   string   // a queued run behind an earlier unfinished run of its serialize_by key
	Waiting  string   // a debounced run, due in an hour
	Finished string   // succeeded, with idempotency and message keys
	IdemKey  string   // Finished's idempotency key
	MsgKey   string   // Finished's message key
	Sagas    map[string]int
	KV       map[[2]string]string // namespace, key -> value; "ttl" expires in an hour
}

// Seed fills s with a realistic mix at the clock's now: finished runs with answers and
// results, keys, queued, waiting, parked and running runs, kv entries with and without a
// TTL (and one that expires within the second), several saga versions. Advance the clock
// past a second afterwards and the crashed run's lease and the short kv entry expire.
func Seed(t testing.TB, s store.Store, clock store.Clock) Seeded {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	sd := Seeded{Sagas: map[string]int{}, KV: map[[2]string]string{}}
	for _, v := range []struct{ name, src, origin string }{
		{"loan-sync", "steps: [a]\n", "file"}, {"loan-sync", "steps: [a, b]\n", "admin"},
		{"loan-sync", "steps: [a]\n", "restore of 1"}, {"title", "steps: [t]\n", "file"},
	} {
		_, _, err := s.RecordSagaVersion(ctx, v.name, []byte(v.src), v.origin)
		must(err)
		sd.Sagas[v.name]++
	}
	for _, e := range []struct {
		ns, key, value string
		ttl            time.Duration
	}{
		{"acme", "forever", `{"n":1}`, 0}, {"acme", "ttl", `"soon"`, time.Hour},
		{"globex", "forever", `[1,2]`, 0}, {"acme", "short", `0`, time.Second},
	} {
		must(s.Put(ctx, e.ns, e.key, []byte(e.value), store.PutOptions{TTL: e.ttl}))
		if e.key != "short" {
			sd.KV[[2]string{e.ns, e.key}] = e.value
		}
	}
	scope := store.KeyScope{Partner: "acme", Endpoint: "loan-update"}
	req := store.Request{Method: "POST", Path: "/pushback/acme/loan-update", ContentType: "application/json",
		Headers: map[string][]string{"X-Trace": {"1", "2"}}, RemoteIP: "192.0.2.7", Query: "a=b", Body: []byte(`{"loan":"L-1"}`)}
	create := func(r *store.Run, opts store.CreateOptions) *store.Run {
		t.Helper()
		r.Partner, r.Endpoint, r.Mode, r.Request = "acme", "loan-update", "async", req
		res, err := s.Create(ctx, r, opts)
		must(err)
		if res.DuplicateOf != "" {
			t.Fatalf("seed run is a duplicate of %s", res.DuplicateOf)
		}
		sd.Runs = append(sd.Runs, r.ID)
		return r
	}
	fin := create(&store.Run{Saga: "loan-sync", SagaVersion: "2", IdempotencyKey: store.IdempotencyKey(scope, "k-1"),
		MessageKey: store.MessageKey(scope, "msg_1"), TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, store.CreateOptions{})
	fin.Status, fin.Answer = store.StatusSucceeded, &store.Answer{Status: 202, Body: []byte(`{"run":"x"}`)}
	fin.State, fin.Result = []byte(`{"step":2}`), []byte(`{"steps":["a","b"]}`)
	must(s.Update(ctx, fin))
	sd.Finished, sd.IdemKey, sd.MsgKey = fin.ID, fin.IdempotencyKey, fin.MessageKey
	failed := create(&store.Run{Saga: "title", ReplayOf: fin.ID}, store.CreateOptions{})
	failed.Status, failed.Error = store.StatusFailed, "step t: 500 from downstream"
	must(s.Update(ctx, failed))
	create(&store.Run{Saga: "loan-sync"}, store.CreateOptions{})
	crashed := create(&store.Run{Saga: "loan-sync"}, store.CreateOptions{Owner: "old", LeaseTTL: time.Second})
	sd.Crashed = crashed.ID
	create(&store.Run{Saga: "loan-sync", SerializeKey: "acme/loan-7"}, store.CreateOptions{})
	sd.Parked = create(&store.Run{Saga: "loan-sync", SerializeKey: "acme/loan-7"}, store.CreateOptions{}).ID
	sd.Waiting = create(&store.Run{Saga: "loan-sync", Status: store.StatusWaiting, WakeAt: clock.Now().Add(time.Hour),
		DebounceKey: store.DebounceKey(scope, "loan-sync", "L-9")}, store.CreateOptions{}).ID
	return sd
}

// TestCopy holds an exporter and an importer to the round-trip contract: a store copied
// from A into B answers GetRun, List, kv Get, SagaVersions, idempotency duplicates and Claim
// order as A does; a second copy adds nothing; an interrupted copy run again completes.
func TestCopy(t *testing.T, newSrc func(t *testing.T, clock store.Clock) CopySource, newDst func(t *testing.T, clock store.Clock) CopyDest) {
	ctx := context.Background()
	setup := func(t *testing.T) (*ManualClock, CopySource, CopyDest, Seeded) {
		clock := NewManualClock()
		src, dst := newSrc(t, clock), newDst(t, clock)
		sd := Seed(t, src, clock)
		clock.Advance(5 * time.Second) // the crashed run's lease and the short kv entry expire
		return clock, src, dst, sd
	}

	t.Run("a copied store answers every read as the source does", func(t *testing.T) {
		clock, src, dst, sd := setup(t)
		st, err := store.Copy(ctx, src, dst, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("saga versions 4 read, 4 new, kv 3 read, 3 new, runs %d read, %d new, keys 2 read, 2 new",
			len(sd.Runs), len(sd.Runs)); st.String() != want {
			t.Errorf("copy stats %q, want %q", st, want)
		}
		sameReads(t, clock, src, dst, sd)
	})

	t.Run("a copy run twice adds nothing and changes nothing", func(t *testing.T) {
		clock, src, dst, sd := setup(t)
		if _, err := store.Copy(ctx, src, dst, nil); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, dst, sd)
		clock.Advance(time.Second)
		st, err := store.Copy(ctx, src, dst, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range st.Kinds {
			if k.Added != 0 || k.Read == 0 {
				t.Errorf("second copy of %s: %d read, %d new; want some read, 0 new", k.Name, k.Read, k.Added)
			}
		}
		if after := snapshot(t, dst, sd); !reflect.DeepEqual(before, after) {
			t.Errorf("second copy changed the destination:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("a copy interrupted halfway and run again completes", func(t *testing.T) {
		clock, src, dst, sd := setup(t)
		_, err := store.Copy(ctx, src, &halfImporter{Importer: dst}, nil)
		if !errors.Is(err, errInterrupted) {
			t.Fatalf("interrupted copy: %v, want the interruption", err)
		}
		st, err := store.Copy(ctx, src, dst, nil)
		if err != nil {
			t.Fatal(err)
		}
		if runs := st.Kinds[2]; runs.Added == 0 || runs.Added == runs.Read {
			t.Errorf("runs after the interruption: %d of %d new; want the rest only", runs.Added, runs.Read)
		}
		sameReads(t, clock, src, dst, sd)
	})
}

var errInterrupted = errors.New("interrupted")

// halfImporter imports half of the first batch of runs and then fails, as a copy killed
// between two transactions leaves it.
type halfImporter struct{ store.Importer }

func (h *halfImporter) ImportRuns(ctx context.Context, runs []store.ExportedRun) (int, error) {
	n, err := h.Importer.ImportRuns(ctx, runs[:len(runs)/2])
	if err != nil {
		return n, err
	}
	return n, errInterrupted
}

// snapshot is what a store answers about the seeded state, for before/after comparisons.
func snapshot(t *testing.T, s store.Store, sd Seeded) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	for _, id := range sd.Runs {
		r, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatalf("get run %s: %v", id, err)
		}
		out["run "+id] = *r
	}
	list, _, err := s.List(ctx, store.Filter{Limit: store.MaxListLimit, Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	out["list"] = ids
	byKey, _, err := s.List(ctx, store.Filter{IdempotencyKey: sd.IdemKey})
	if err != nil || len(byKey) != 1 {
		t.Fatalf("list by idempotency key: %d runs, %v", len(byKey), err)
	}
	out["by key"] = byKey[0].ID
	for k := range sd.KV {
		v, ok, err := s.Get(ctx, k[0], k[1])
		if err != nil {
			t.Fatal(err)
		}
		out["kv "+k[0]+"/"+k[1]] = fmt.Sprint(string(v), ok)
	}
	_, short, _ := s.Get(ctx, "acme", "short")
	out["kv acme/short"] = short
	for name := range sd.Sagas {
		vs, err := s.SagaVersions(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out["sagas "+name] = vs
		for _, v := range vs {
			full, err := s.SagaVersion(ctx, name, v.Number)
			if err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("saga %s %d", name, v.Number)] = string(full.Source)
		}
	}
	n, err := s.Runnable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out["runnable"] = n
	return out
}

// sameReads checks that dst answers as src, then drives both queues the same way.
func sameReads(t *testing.T, clock *ManualClock, src, dst store.Store, sd Seeded) {
	t.Helper()
	ctx := context.Background()
	want, got := snapshot(t, src, sd), snapshot(t, dst, sd)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s:\n got %+v\nwant %+v", k, got[k], w)
		}
	}
	if got["kv acme/short"] != false {
		t.Errorf("an expired kv entry was copied")
	}

	for _, dup := range []*store.Run{{IdempotencyKey: sd.IdemKey}, {MessageKey: sd.MsgKey}} {
		dup.Partner, dup.Endpoint, dup.Mode = "acme", "loan-update", "async"
		res, err := dst.Create(ctx, dup, store.CreateOptions{})
		if err != nil || res.DuplicateOf != sd.Finished {
			t.Errorf("a duplicate of the finished run (%+v) after the copy: %+v, %v; want DuplicateOf %s", dup, res, err, sd.Finished)
		}
	}

	// The queue: both stores hand out the same runs in the same order — the crashed run
	// (its lease expired) among them — then the parked run once the one ahead of it
	// finished, then the waiting run when its hour is up.
	claimBoth := func(step string) []string {
		t.Helper()
		var ids [2][]string
		for i, s := range []store.Store{src, dst} {
			res, err := s.Claim(ctx, "new", 100, time.Minute)
			if err != nil {
				t.Fatalf("%s: claim: %v", step, err)
			}
			for _, c := range res.Runs {
				ids[i] = append(ids[i], c.Run.ID)
				c.Run.Status = store.StatusSucceeded
				if err := s.Save(ctx, c.Run, c.Lease); err != nil {
					t.Fatalf("%s: save: %v", step, err)
				}
			}
		}
		if !reflect.DeepEqual(ids[0], ids[1]) {
			t.Errorf("%s: the copy claims %v, the source %v", step, ids[1], ids[0])
		}
		return ids[1]
	}
	first := claimBoth("claim after the copy")
	if len(first) != 3 || first[2] != sd.Crashed {
		t.Errorf("first claim %v: want the queued run, the crashed one %s and the serialize_by head", first, sd.Crashed)
	}
	if got := claimBoth("claim after the serialize_by head finished"); !reflect.DeepEqual(got, []string{sd.Parked}) {
		t.Errorf("then claimed %v, want the parked run %s", got, sd.Parked)
	}
	clock.Advance(2 * time.Hour)
	if got := claimBoth("claim when the debounce window is over"); !reflect.DeepEqual(got, []string{sd.Waiting}) {
		t.Errorf("then claimed %v, want the waiting run %s", got, sd.Waiting)
	}
	for _, s := range []store.Store{src, dst} {
		if _, ok, err := s.Get(ctx, "acme", "ttl"); ok || err != nil {
			t.Errorf("kv entry with a TTL of an hour, two hours later: found %v, %v", ok, err)
		}
	}
}
