package saga

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/store/bolt"
)

// kvSaga stores the body's key and value; retry would repeat a step that failed for a
// reason that may pass, so a limit must not be retried.
const kvSaga = `
name: remember
steps:
  - name: put
    kv: {op: put, key: "${ body.k }", value: "${ body.v }"}
    retry: {attempts: 3, backoff: 1s}
`

func TestKVStepsStayWithinTheirLimits(t *testing.T) {
	s := mustParse(t, "remember", kvSaga)
	for _, tc := range []struct {
		name   string
		limits KVLimits
		puts   []map[string]any // all but the last must succeed
		want   string           // in the last put's error; "" = it succeeds
	}{
		{name: "a 30 KB key is refused by the default key limit",
			puts: []map[string]any{{"k": strings.Repeat("k", 30_000), "v": "x"}},
			want: "the key is 30000 bytes, over the limit of 512 (limits.kv_max_key_bytes)"},
		{name: "a 900 KB value is refused by the default value limit",
			puts: []map[string]any{{"k": "loan-1", "v": strings.Repeat("v", 900_000)}},
			want: "the value is 900002 bytes as JSON, over the limit of 65536 (limits.kv_max_value_bytes)"},
		{name: "a key of exactly the limit is stored",
			limits: KVLimits{MaxKeyBytes: 8},
			puts:   []map[string]any{{"k": "12345678", "v": "x"}}},
		{name: "a configured key limit applies",
			limits: KVLimits{MaxKeyBytes: 8},
			puts:   []map[string]any{{"k": "123456789", "v": "x"}},
			want:   "over the limit of 8 (limits.kv_max_key_bytes)"},
		{name: "a configured value limit applies",
			limits: KVLimits{MaxValueBytes: 10},
			puts:   []map[string]any{{"k": "a", "v": "12345678"}, {"k": "a", "v": "123456789"}},
			want:   "the value is 11 bytes as JSON, over the limit of 10 (limits.kv_max_value_bytes)"},
		{name: "a partner at its entry cap cannot add a key",
			limits: KVLimits{MaxEntries: 2},
			puts:   []map[string]any{{"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "c", "v": 1}},
			want:   "partner acme already holds 2 entries, the limit set by limits.kv_max_entries_per_partner"},
		{name: "a partner at its entry cap can still replace a key",
			limits: KVLimits{MaxEntries: 2},
			puts:   []map[string]any{{"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "a", "v": 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clock, kv := testEngine(t, func(o *EngineOptions) { o.KVLimits = tc.limits })
			for i, body := range tc.puts {
				res := e.Run(context.Background(), invocation(s, body))
				last := i == len(tc.puts)-1
				if !last || tc.want == "" {
					if res.Status != StatusSucceeded {
						t.Fatalf("put %d: %s: %s", i+1, res.Status, res.Error)
					}
					continue
				}
				if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) {
					t.Fatalf("put %d: %s %q, want failed with %q", i+1, res.Status, res.Error, tc.want)
				}
				if n := res.Steps[0].Attempts; n != 1 {
					t.Errorf("the step was tried %d times; a limit is not worth retrying", n)
				}
				if len(clock.Sleeps()) != 0 {
					t.Errorf("the run waited %v before failing", clock.Sleeps())
				}
			}
			if tc.want != "" {
				if n := kv.Len(); n != len(tc.puts)-1 {
					t.Errorf("%d entries stored, want %d", n, len(tc.puts)-1)
				}
			}
		})
	}
}

// Over-limit keys and values never reach the store: 200 runs that each try to store a
// 900 KB value, half of them under a 30 KB key, leave the data file as it was. (Before the
// limits, 200 puts of a 30 KB key with a 900 KB value grew it from 32 KB to 205 MB.)
func TestOverLimitKVWritesDoNotGrowTheDataFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	db, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = db })
	s := mustParse(t, "remember", kvSaga)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	start := size()
	value := strings.Repeat("v", 900_000)
	for _, key := range []string{strings.Repeat("k", 30_000), "loan-1"} {
		inv := invocation(s, map[string]any{"k": key, "v": value}) // parsed once: the runs are what is measured
		for i := range 100 {
			if res := e.Run(context.Background(), inv); res.Status != StatusFailed {
				t.Fatalf("run %d with a %d-byte key: %s", i, len(key), res.Status)
			}
		}
	}
	if end := size(); end != start {
		t.Fatalf("the data file grew from %d to %d bytes", start, end)
	}
}
