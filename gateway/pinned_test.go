package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// countingHistory counts the saga sources read from a real store.
type countingHistory struct {
	SagaHistory
	reads atomic.Int32
}

func (c *countingHistory) SagaVersion(ctx context.Context, name string, n int) (store.SagaVersion, error) {
	c.reads.Add(1)
	return c.SagaHistory.SagaVersion(ctx, name, n)
}

func pinnedSagaSrc(step string) string {
	return "name: order\nsteps:\n  - {name: " + step + ", set: {x: 1}}\n"
}

// pinnedFixture is a configuration whose saga "order" is at its third version, a bbolt
// store whose history has all three, and the versions as compiled.
func pinnedFixture(t *testing.T) (*config.Config, *bolt.Store, []*saga.Saga) {
	t.Helper()
	dir := t.TempDir()
	var versions []*saga.Saga
	st, err := bolt.Open(filepath.Join(dir, "data.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, step := range []string{"first", "second", "third"} {
		src := pinnedSagaSrc(step)
		s, errs := saga.Parse("order.yaml", []byte(src))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		versions = append(versions, s)
		if _, _, err := st.RecordSagaVersion(context.Background(), "order", []byte(src), "test"); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"pushbackd.yaml":     "listen: 127.0.0.1:0\n",
		"sagas/order.yaml":   pinnedSagaSrc("third"),
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: order, security: {method: bearer, tokens: [{value: t}]}}]\n",
	}
	for name, src := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "pushbackd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, versions
}

func stepNames(s *saga.Saga) string {
	var names []string
	for _, st := range s.Steps {
		names = append(names, st.Name)
	}
	return strings.Join(names, ",")
}

func TestAResumedRunGetsTheSagaVersionItStartedOn(t *testing.T) {
	cfg, st, versions := pinnedFixture(t)
	ctx := context.Background()
	run := func(version string) *store.Run {
		return &store.Run{ID: "01a21cab-b5e0-7ce9-bd72-c1ce5605e7a5", Partner: "acme", Endpoint: "e", Saga: "order", SagaVersion: version,
			Request: store.Request{Method: "POST", ContentType: "application/json", Body: []byte(`{}`)}}
	}

	t.Run("a run on the configured version gets the configured saga and reads no history", func(t *testing.T) {
		hist := &countingHistory{SagaHistory: st}
		inv, err := NewPinned(hist, 0).Invocation(ctx, cfg, run(versions[2].Version))
		if err != nil || inv.Saga != cfg.Sagas["order"] || hist.reads.Load() != 0 {
			t.Fatalf("saga %v, %d reads, %v", inv, hist.reads.Load(), err)
		}
	})
	t.Run("a run on an older version gets that version's steps from the history", func(t *testing.T) {
		hist := &countingHistory{SagaHistory: st}
		p := NewPinned(hist, 0)
		for i, v := range versions[:2] {
			inv, err := p.Invocation(ctx, cfg, run(v.Version))
			if err != nil {
				t.Fatal(err)
			}
			if got := stepNames(inv.Saga); got != stepNames(v) || inv.Saga.Version != v.Version {
				t.Errorf("version %d: steps %s (version %s), want %s", i+1, got, inv.Saga.Version, stepNames(v))
			}
			if inv.Partner.ID != "acme" || inv.Endpoint != "e" {
				t.Errorf("the invocation lost its endpoint: %+v", inv)
			}
		}
	})
	t.Run("a compiled version is kept, so the next resume on it reads nothing", func(t *testing.T) {
		hist := &countingHistory{SagaHistory: st}
		p := NewPinned(hist, 0)
		for range 3 {
			if _, err := p.Saga(ctx, cfg, "order", versions[0].Version); err != nil {
				t.Fatal(err)
			}
		}
		if n := hist.reads.Load(); n != 1 {
			t.Errorf("%d reads of the history, want 1", n)
		}
	})
	t.Run("no more than max compiled versions are kept", func(t *testing.T) {
		hist := &countingHistory{SagaHistory: st}
		p := NewPinned(hist, 1)
		for _, v := range []*saga.Saga{versions[0], versions[1], versions[0]} {
			if _, err := p.Saga(ctx, cfg, "order", v.Version); err != nil {
				t.Fatal(err)
			}
		}
		if n := hist.reads.Load(); n != 3 {
			t.Errorf("%d reads, want 3: with room for one, the second version pushes the first out", n)
		}
		p.mu.Lock()
		kept := p.order.Len()
		p.mu.Unlock()
		if kept != 1 {
			t.Errorf("%d versions kept, want 1", kept)
		}
	})
	t.Run("a version the history lacks fails and says where the versions are listed", func(t *testing.T) {
		_, err := NewPinned(st, 0).Invocation(ctx, cfg, run("0123456789ab"))
		if err == nil || !strings.Contains(err.Error(), "saga order version 0123456789ab, which the run started on, is not in the saga history") ||
			!strings.Contains(err.Error(), "/admin/v1/sagas/order/versions") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a saga no longer configured still resumes on its version", func(t *testing.T) {
		cfg2 := *cfg
		cfg2.Sagas = map[string]*saga.Saga{}
		s, err := NewPinned(st, 0).Saga(ctx, &cfg2, "order", versions[1].Version)
		if err != nil || stepNames(s) != "second" {
			t.Errorf("saga %v, %v", s, err)
		}
	})
	t.Run("many runs resumed at once on old versions share them", func(t *testing.T) {
		hist := &countingHistory{SagaHistory: st}
		p := NewPinned(hist, 0)
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := versions[i%2]
				if s, err := p.Saga(ctx, cfg, "order", v.Version); err != nil || s.Version != v.Version {
					t.Errorf("%v %v", s, err)
				}
			}()
		}
		wg.Wait()
		p.mu.Lock()
		kept, keys := p.order.Len(), len(p.byKey)
		p.mu.Unlock()
		if kept != 2 || keys != 2 {
			t.Errorf("%d versions kept under %d keys, want each of the two once", kept, keys)
		}
	})
}
