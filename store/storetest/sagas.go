package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// TestSagas runs the saga version history contract against fresh stores from newStore,
// which must build the store on the given clock and close it in t.Cleanup. TestStore runs
// it too.
func TestSagas(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.Store) {
	ctx := context.Background()
	srcA := []byte("name: order\nsteps:\n  - call: a\n")
	srcB := []byte("name: order\nsteps:\n  - call: b\n")

	t.Run("versions are numbered per name and identical consecutive sources are one version", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		v1 := mustRecord(t, s, "order", srcA, "file", true)
		want := store.SagaVersion{Name: "order", Number: 1, Hash: hexSHA(srcA), Created: clock.Now(), Origin: "file"}
		assertSameVersion(t, v1, want)

		clock.Advance(time.Minute)
		again := mustRecord(t, s, "order", srcA, "admin", false)
		assertSameVersion(t, again, want) // the latest, unchanged: its time and origin

		v2 := mustRecord(t, s, "order", srcB, "admin", true)
		assertSameVersion(t, v2, store.SagaVersion{Name: "order", Number: 2, Hash: hexSHA(srcB), Created: clock.Now(), Origin: "admin"})
		clock.Advance(time.Minute)
		v3 := mustRecord(t, s, "order", srcA, "restore of 1", true) // A, B, A: three versions
		if v3.Number != 3 || v3.Hash != v1.Hash || !v3.Created.Equal(clock.Now()) {
			t.Errorf("A after B = %+v, want number 3 with A's hash, created now", v3)
		}
		other := mustRecord(t, s, "refund", srcA, "file", true) // same source, another name
		if other.Number != 1 {
			t.Errorf("first version of another name is number %d, want 1", other.Number)
		}
		if n := len(mustVersions(t, s, "order")); n != 3 {
			t.Errorf("order has %d versions, want 3", n)
		}
	})

	t.Run("versions list newest first without source", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var want []store.SagaVersion
		for i := 0; i < 5; i++ {
			v := mustRecord(t, s, "order", fmt.Appendf(nil, "rev: %d\n", i), fmt.Sprint("origin ", i), true)
			want = append(want, v)
			clock.Advance(time.Second)
		}
		mustRecord(t, s, "order-2", srcA, "file", true) // a name the first one is a prefix of
		mustRecord(t, s, "orde", srcA, "file", true)
		slices.Reverse(want)
		got := mustVersions(t, s, "order")
		if len(got) != len(want) {
			t.Fatalf("%d versions listed, want %d: %+v", len(got), len(want), got)
		}
		for i := range got {
			if got[i].Source != nil {
				t.Errorf("listing has the source of version %d", got[i].Number)
			}
			assertSameVersion(t, got[i], want[i])
		}
	})

	t.Run("an unknown name lists as empty, not an error", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		mustRecord(t, s, "order", srcA, "file", true)
		got, err := s.SagaVersions(ctx, "nobody")
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("SagaVersions(unknown) = %#v, %v; want an empty slice", got, err)
		}
	})

	t.Run("one version reads back with its source; unknown ones are ErrNotFound", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		mustRecord(t, s, "order", srcA, "file", true)
		clock.Advance(time.Hour)
		v2 := mustRecord(t, s, "order", srcB, "admin", true)
		got, err := s.SagaVersion(ctx, "order", 2)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Source) != string(srcB) {
			t.Errorf("source = %q, want %q", got.Source, srcB)
		}
		got.Source = nil
		assertSameVersion(t, got, v2)
		got, err = s.SagaVersion(ctx, "order", 1)
		if err != nil || string(got.Source) != string(srcA) || got.Number != 1 || got.Origin != "file" {
			t.Errorf("version 1 = %+v, %v", got, err)
		}
		for _, c := range []struct {
			name   string
			number int
		}{{"order", 3}, {"order", 0}, {"order", -1}, {"nobody", 1}, {"orde", 1}} {
			if _, err := s.SagaVersion(ctx, c.name, c.number); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("SagaVersion(%q, %d) = %v, want ErrNotFound", c.name, c.number, err)
			}
		}
	})

	t.Run("bad names, empty sources and long origins are ErrInvalid and write nothing", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		for _, name := range []string{"", "Order", "-order", "_order", "ord/er", "ord er", "ord\x00er", "örder", strings.Repeat("a", 64)} {
			if _, _, err := s.RecordSagaVersion(ctx, name, srcA, "file"); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RecordSagaVersion(%q) = %v, want ErrInvalid", name, err)
			}
			if _, err := s.SagaVersions(ctx, name); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("SagaVersions(%q) = %v, want ErrInvalid", name, err)
			}
			if _, err := s.SagaVersion(ctx, name, 1); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("SagaVersion(%q) = %v, want ErrInvalid", name, err)
			}
		}
		for _, src := range [][]byte{nil, {}} {
			if _, _, err := s.RecordSagaVersion(ctx, "order", src, "file"); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RecordSagaVersion(empty source %#v) = %v, want ErrInvalid", src, err)
			}
		}
		long := strings.Repeat("x", store.MaxSagaOriginLen+1)
		if _, _, err := s.RecordSagaVersion(ctx, "order", srcA, long); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("RecordSagaVersion(long origin) = %v, want ErrInvalid", err)
		}
		if n := len(mustVersions(t, s, "order")); n != 0 {
			t.Errorf("%d versions after refused writes, want 0", n)
		}
		for _, name := range []string{"0", "a", "order_v2-final", strings.Repeat("a", 63)} {
			mustRecord(t, s, name, srcA, strings.Repeat("x", store.MaxSagaOriginLen), true)
		}
	})

	t.Run("the caller's slices are not kept or shared", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		in := []byte("name: order\n")
		mustRecord(t, s, "order", in, "file", true)
		in[0] = 'X'
		got, _ := s.SagaVersion(ctx, "order", 1)
		if string(got.Source) != "name: order\n" {
			t.Fatalf("store kept the caller's slice: %q", got.Source)
		}
		got.Source[0] = 'Y'
		again, _ := s.SagaVersion(ctx, "order", 1)
		if string(again.Source) != "name: order\n" {
			t.Fatalf("store returned its own slice: %q", again.Source)
		}
	})

	t.Run("concurrent records of one name get gap-free unique numbers", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		const n = 50
		var mu sync.Mutex
		numbers := map[int]string{}
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := fmt.Appendf(nil, "rev: %d\n", i)
				v, created, err := s.RecordSagaVersion(ctx, "order", src, "admin")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case !created:
					t.Errorf("distinct source %q was not created", src)
				case numbers[v.Number] != "":
					t.Errorf("number %d given twice", v.Number)
				default:
					numbers[v.Number] = v.Hash
				}
			}()
		}
		wg.Wait()
		for i := 1; i <= n; i++ {
			if numbers[i] == "" {
				t.Errorf("number %d missing: %d numbers given", i, len(numbers))
			}
		}
		list := mustVersions(t, s, "order")
		for i, v := range list {
			if v.Number != n-i || v.Hash != numbers[v.Number] {
				t.Fatalf("listing[%d] = %+v, want number %d hash %s", i, v, n-i, numbers[n-i])
			}
		}
		if len(list) != n {
			t.Fatalf("%d versions listed, want %d", len(list), n)
		}
	})

	t.Run("concurrent records of one source make one version", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, c, err := s.RecordSagaVersion(ctx, "order", srcA, "file")
				mu.Lock()
				defer mu.Unlock()
				if err != nil || v.Number != 1 {
					t.Errorf("RecordSagaVersion = %+v, %v; want version 1", v, err)
				}
				if c {
					created++
				}
			}()
		}
		wg.Wait()
		if created != 1 {
			t.Fatalf("%d calls created a version, want 1", created)
		}
	})

	t.Run("prune keeps saga versions", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		mustRecord(t, s, "order", srcA, "file", true)
		mustRecord(t, s, "order", srcB, "admin", true)
		for i := 0; i < 3; i++ {
			r := sampleRun("acme", "", "e")
			mustCreate(t, s, r)
			r.Status = store.StatusSucceeded
			if err := s.Update(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(365 * 24 * time.Hour)
		if n, err := s.Prune(ctx, clock.Now(), 1); err != nil || n != 3 {
			t.Fatalf("Prune = %d, %v; want 3", n, err)
		}
		if n := len(mustVersions(t, s, "order")); n != 2 {
			t.Fatalf("%d versions after Prune, want 2", n)
		}
		if v, err := s.SagaVersion(ctx, "order", 1); err != nil || string(v.Source) != string(srcA) {
			t.Fatalf("version 1 after Prune = %+v, %v", v, err)
		}
	})

	t.Run("a cancelled context and a closed store are errors", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := s.RecordSagaVersion(cctx, "order", srcA, "file"); err == nil {
			t.Error("RecordSagaVersion with a cancelled context succeeded")
		}
		if _, err := s.SagaVersions(cctx, "order"); err == nil {
			t.Error("SagaVersions with a cancelled context succeeded")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.RecordSagaVersion(ctx, "order", srcA, "file"); !errors.Is(err, store.ErrClosed) {
			t.Errorf("RecordSagaVersion after Close = %v, want ErrClosed", err)
		}
		if _, err := s.SagaVersions(ctx, "order"); !errors.Is(err, store.ErrClosed) {
			t.Errorf("SagaVersions after Close = %v, want ErrClosed", err)
		}
		if _, err := s.SagaVersion(ctx, "order", 1); !errors.Is(err, store.ErrClosed) {
			t.Errorf("SagaVersion after Close = %v, want ErrClosed", err)
		}
	})
}

func mustRecord(t *testing.T, s store.Sagas, name string, src []byte, origin string, wantCreated bool) store.SagaVersion {
	t.Helper()
	v, created, err := s.RecordSagaVersion(context.Background(), name, src, origin)
	if err != nil {
		t.Fatalf("RecordSagaVersion(%q): %v", name, err)
	}
	if created != wantCreated {
		t.Fatalf("RecordSagaVersion(%q, %q) created = %v, want %v", name, src, created, wantCreated)
	}
	if v.Source != nil {
		t.Errorf("RecordSagaVersion returned the source")
	}
	return v
}

func mustVersions(t *testing.T, s store.Sagas, name string) []store.SagaVersion {
	t.Helper()
	list, err := s.SagaVersions(context.Background(), name)
	if err != nil {
		t.Fatalf("SagaVersions(%q): %v", name, err)
	}
	return list
}

func hexSHA(src []byte) string {
	h := sha256.Sum256(src)
	return hex.EncodeToString(h[:])
}

// assertSameVersion compares versions with Created by instant and checks it is UTC.
func assertSameVersion(t *testing.T, got, want store.SagaVersion) {
	t.Helper()
	if got.Created.Location() != time.UTC {
		t.Errorf("version %s/%d: Created %v is not UTC", got.Name, got.Number, got.Created)
	}
	if !got.Created.Equal(want.Created) {
		t.Errorf("version %s/%d: Created %v, want %v", got.Name, got.Number, got.Created, want.Created)
	}
	got.Created, want.Created = time.Time{}, time.Time{}
	if got.Name != want.Name || got.Number != want.Number || got.Hash != want.Hash ||
		got.Origin != want.Origin || string(got.Source) != string(want.Source) || (got.Source == nil) != (want.Source == nil) {
		t.Errorf("version differs:\n got %+v\nwant %+v", got, want)
	}
}
