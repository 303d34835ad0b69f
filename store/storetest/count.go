package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// TestCount checks store.Counter on backends that have it: counts agree with what List
// finds, honour every indexed filter and the time window, stop at the bound, and refuse
// filters no index answers.
func TestCount(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.Store) {
	ctx := context.Background()
	clock := NewManualClock()
	s := newStore(t, clock)
	c, ok := s.(store.Counter)
	if !ok {
		t.Fatalf("%T does not implement store.Counter: every backend counts runs", s)
	}
	// An hour apart: three acme/retail/loans failed, two acme//loans succeeded, one
	// globex//loans failed, then one acme/retail/loans queued an hour later.
	start := clock.Now()
	for _, r := range []struct {
		partner, site, endpoint string
		st                      store.Status
	}{
		{"acme", "retail", "loans", store.StatusFailed},
		{"acme", "retail", "loans", store.StatusFailed},
		{"acme", "", "loans", store.StatusSucceeded},
		{"acme", "retail", "loans", store.StatusFailed},
		{"globex", "", "loans", store.StatusFailed},
		{"acme", "", "loans", store.StatusSucceeded},
	} {
		run := sampleRun(r.partner, r.site, r.endpoint)
		mustCreate(t, s, run)
		run.Status = r.st
		if err := s.Update(ctx, run); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	clock.Advance(time.Hour)
	later := clock.Now()
	mustCreate(t, s, sampleRun("acme", "retail", "loans"))

	cases := []struct {
		name   string
		f      store.Filter
		max    int
		want   int
		capped bool
	}{
		{"every run is counted with no filter", store.Filter{}, 100, 7, false},
		{"a status counts only its runs", store.Filter{Status: store.StatusFailed}, 100, 4, false},
		{"a partner counts only its runs", store.Filter{Partner: "acme"}, 100, 6, false},
		{"partner, site and endpoint narrow together", store.Filter{Partner: "acme", Site: "retail", Endpoint: "loans"}, 100, 4, false},
		{"an endpoint across partners counts both", store.Filter{Endpoint: "loans", Status: store.StatusFailed}, 100, 4, false},
		{"status and scope narrow together", store.Filter{Partner: "acme", Status: store.StatusSucceeded}, 100, 2, false},
		{"since leaves out older runs", store.Filter{Since: later}, 100, 1, false},
		{"until leaves out newer runs", store.Filter{Until: later}, 100, 6, false},
		{"since and until bound a window", store.Filter{Since: start.Add(time.Second), Until: start.Add(3 * time.Second)}, 100, 2, false},
		{"a count stops at its bound and says so", store.Filter{}, 3, 3, true},
		{"a count exactly at its bound is not capped", store.Filter{Status: store.StatusFailed}, 4, 4, false},
		{"no match counts zero", store.Filter{Partner: "initech"}, 100, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, capped, err := c.CountRuns(ctx, tc.f, tc.max)
			if err != nil || n != tc.want || capped != tc.capped {
				t.Fatalf("CountRuns(%+v, %d) = %d, %v, %v; want %d, %v", tc.f, tc.max, n, capped, err, tc.want, tc.capped)
			}
			if !tc.capped {
				if got := len(listAll(t, s, tc.f)); got != n {
					t.Errorf("List finds %d runs, CountRuns %d", got, n)
				}
			}
		})
	}

	for name, f := range map[string]store.Filter{
		"a saga":            {Saga: "x"},
		"a replay_of":       {ReplayOf: "0190c7f0-0000-7000-8000-000000000000"},
		"an unknown status": {Status: "nope"},
		"a NUL in a name":   {Partner: "a\x00b"},
	} {
		t.Run("a count by "+name+" is refused", func(t *testing.T) {
			if _, _, err := c.CountRuns(ctx, f, 10); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("CountRuns = %v, want ErrInvalid", err)
			}
		})
	}
	for _, max := range []int{0, -1, store.MaxCount + 1} {
		if _, _, err := c.CountRuns(ctx, store.Filter{}, max); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CountRuns(max %d) = %v, want ErrInvalid", max, err)
		}
	}
}
