package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// A file opened read-only makes every write fail in bbolt like a read-only file system or
// a failing disk does, which root cannot otherwise provoke with permissions.
func TestBoltWritesOnAReadOnlyFileAreUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &store.Run{Partner: "acme", Endpoint: "e"}
	if _, err := b.Create(ctx, r, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	readOnly := func(name string, _ int, _ os.FileMode) (*os.File, error) { return os.Open(name) }
	b, err = Open(path, Options{openFile: readOnly})
	if err != nil {
		t.Fatalf("Open on a read-only file: %v", err)
	}
	defer b.Close()
	if _, err := b.GetRun(ctx, r.ID); err != nil {
		t.Errorf("reading a read-only file: %v", err)
	}
	_, err = b.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e"}, store.CreateOptions{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Create on a read-only file = %v, want ErrUnavailable", err)
	}
	r.Status = store.StatusFailed
	if err := b.Update(ctx, r); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update on a read-only file = %v, want ErrUnavailable", err)
	}
	if err := b.Put(ctx, "acme", "k", []byte(`1`), store.PutOptions{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put on a read-only file = %v, want ErrUnavailable", err)
	}
	if got, err := b.GetRun(ctx, r.ID); err != nil || got.Status != store.StatusQueued {
		t.Errorf("after failed writes: %+v, %v", got, err)
	}

	// A new file that cannot be written is refused at open.
	_, err = Open(filepath.Join(t.TempDir(), "new.db"), Options{openFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, mode)
		if err != nil {
			return nil, err
		}
		_ = f.Close()
		return os.Open(name)
	}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open of a new unwritable file = %v, want ErrUnavailable", err)
	}
}

func TestBoltCheckFindsBrokenIndexes(t *testing.T) {
	ctx := context.Background()
	b, err := Open(filepath.Join(t.TempDir(), "runs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 3; i++ {
		if _, err := b.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: string(rune('a' + i)), DebounceKey: "d"}, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatalf("Check on a sound file: %v", err)
	}
	err = b.db.Update(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketIdxStatusScope).Cursor().First()
		return tx.Bucket(bucketIdxStatusScope).Delete(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(); err == nil || !strings.Contains(err.Error(), "idx_status_scope") {
		t.Fatalf("Check after deleting a status entry = %v, want an idx_status complaint", err)
	}
}

// One write bbolt refuses must not fail the others that shared its transaction.
func TestBoltAFailingWriteDoesNotSinkItsBatch(t *testing.T) {
	ctx := context.Background()
	b, err := Open(filepath.Join(t.TempDir(), "runs.db"), Options{MaxBatchDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 5 {
				errs[i] = b.Put(ctx, "acme", strings.Repeat("k", 40_000), []byte(`1`), store.PutOptions{}) // over bbolt's key limit
				return
			}
			_, errs[i] = b.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: fmt.Sprint(i)}, store.CreateOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 5) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if runs, _, _ := b.List(ctx, store.Filter{}); len(runs) != 9 {
		t.Fatalf("%d runs stored, want 9", len(runs))
	}
}

// A file written before saga versions existed has no saga_versions bucket: open adds it,
// and when the file cannot be written it still opens, with no saga versions to read.
func TestBoltOpensAFileFromBeforeSagaVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &store.Run{Partner: "acme", Endpoint: "e"}
	if _, err := b.Create(ctx, r, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketSagaVersions) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	readOnly := func(name string, _ int, _ os.FileMode) (*os.File, error) { return os.Open(name) }
	b, err = Open(path, Options{openFile: readOnly})
	if err != nil {
		t.Fatalf("Open on a read-only file without saga_versions: %v", err)
	}
	if _, err := b.GetRun(ctx, r.ID); err != nil {
		t.Errorf("GetRun: %v", err)
	}
	if list, err := b.SagaVersions(ctx, "order"); err != nil || list == nil || len(list) != 0 {
		t.Errorf("SagaVersions = %#v, %v; want an empty slice", list, err)
	}
	if _, err := b.SagaVersion(ctx, "order", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SagaVersion = %v, want ErrNotFound", err)
	}
	if _, _, err := b.RecordSagaVersion(ctx, "order", []byte("a: 1\n"), "file"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("RecordSagaVersion on a read-only file = %v, want ErrUnavailable", err)
	}
	if err := b.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketSagaVersions) == nil {
			return errNotInitialised
		}
		return nil
	}); err != nil {
		t.Fatalf("a writable open did not add the bucket: %v", err)
	}
	if v, created, err := b.RecordSagaVersion(ctx, "order", []byte("a: 1\n"), "file"); err != nil || !created || v.Number != 1 {
		t.Fatalf("RecordSagaVersion = %+v, %v, %v", v, created, err)
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestBoltCheckFindsBrokenSagaVersions(t *testing.T) {
	ctx := context.Background()
	b, err := Open(filepath.Join(t.TempDir(), "runs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, src := range []string{"a", "b", "c"} {
		if _, _, err := b.RecordSagaVersion(ctx, "order", []byte(src), "file"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatalf("Check on a sound file: %v", err)
	}
	err = b.db.Update(func(tx *bbolt.Tx) error {
		bucket := tx.Bucket(bucketSagaVersions)
		v := append([]byte(nil), bucket.Get(sagaKey("order", 3))...)
		v[len(v)-1] = 'x' // the source no longer matches its hash
		if err := bucket.Put(sagaKey("order", 3), v); err != nil {
			return err
		}
		return bucket.Delete(sagaKey("order", 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Check()
	if err == nil || !strings.Contains(err.Error(), "version 3 follows 1") || !strings.Contains(err.Error(), "hash does not match") {
		t.Fatalf("Check after breaking the history = %v, want a gap and a hash complaint", err)
	}
}

// A file of layout version 2 has no work queue: open builds it from the unfinished runs, so
// they are claimed as if they had been queued by this version.
func TestBoltGivesAVersion2FileItsWorkQueue(t *testing.T) {
	ctx := context.Background()
	clock := &upgradeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "runs.db")
	b, err := Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(st store.Status, key string, wake time.Time) *store.Run {
		r := &store.Run{Partner: "acme", Endpoint: "e", Status: st, SerializeKey: key, WakeAt: wake}
		if _, err := b.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	done := mk(store.StatusSucceeded, "", time.Time{})
	running := mk(store.StatusRunning, "", time.Time{}) // its process died
	serial1 := mk(store.StatusQueued, "acme/s/L-1", time.Time{})
	serial2 := mk(store.StatusQueued, "acme/s/L-1", time.Time{})
	later := mk(store.StatusWaiting, "", clock.now.Add(time.Hour))
	// Back to layout version 2: no queue buckets, no runnable count.
	if err := b.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketQueue, bucketIdxDue, bucketIdxSerial} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Delete(metaRunnable); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, be64(2))
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Check(); err != nil {
		t.Fatalf("Check after the upgrade: %v", err)
	}
	if n, _ := b.Runnable(ctx); n != 3 {
		t.Errorf("Runnable = %d, want 3 (two queued, one waiting)", n)
	}
	res, err := b.Claim(ctx, "w", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range res.Runs {
		got = append(got, c.Run.ID)
	}
	if want := []string{running.ID, serial1.ID}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("claimed %v, want %v: the orphaned run and the first of its key (not %s, %s nor %s)", got, want, serial2.ID, later.ID, done.ID)
	}
	if res.Runs[0].Run.Attempt != 1 {
		t.Errorf("the orphaned run resumes as attempt %d, want 1 (it was created running, attempt 0)", res.Runs[0].Run.Attempt)
	}
}

// The file lock says no other process uses the file, so a lease found in it at open is a
// dead process's: its run is due at once, not when the lease would have expired.
func TestBoltReleasesTheLeasesOfADeadProcessAtOpen(t *testing.T) {
	ctx := context.Background()
	clock := &upgradeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "runs.db")
	b, err := Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	r := &store.Run{Partner: "acme", Endpoint: "e"}
	res, err := b.Create(ctx, r, store.CreateOptions{Owner: "dead", LeaseTTL: time.Hour})
	if err != nil || res.Lease == nil {
		t.Fatalf("Create = %+v, %v", res, err)
	}
	if err := b.Close(); err != nil { // as kill -9 leaves it: the lease is still in the file
		t.Fatal(err)
	}
	b, err = Open(path, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Claim(ctx, "alive", 1, time.Minute)
	if err != nil || len(got.Runs) != 1 || got.Runs[0].Run.Attempt != 2 || got.Runs[0].Lease.Token != 2 {
		t.Fatalf("Claim after reopening = %+v, %v; want the run, attempt 2, token 2", got.Runs, err)
	}
	stale := *r
	stale.Status = store.StatusSucceeded
	if err := b.Save(ctx, &stale, *res.Lease); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a write under the dead process's lease = %v, want ErrLeaseLost", err)
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestBoltCheckFindsABrokenQueue(t *testing.T) {
	ctx := context.Background()
	b, err := Open(filepath.Join(t.TempDir(), "runs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 2 {
		if _, err := b.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", SerializeKey: "k"}, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatalf("Check on a sound file: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		breakIt    func(tx *bbolt.Tx) error
	}{
		{"a due entry deleted", "idx_due", func(tx *bbolt.Tx) error {
			k, _ := tx.Bucket(bucketIdxDue).Cursor().First()
			return tx.Bucket(bucketIdxDue).Delete(k)
		}},
		{"the runnable count off by one", "runnable count", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(metaRunnable, be64(7))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var undo func(tx *bbolt.Tx) error
			if err := b.db.Update(func(tx *bbolt.Tx) error {
				snapshot := map[string][]byte{}
				for _, name := range [][]byte{bucketIdxDue, bucketMeta} {
					_ = tx.Bucket(name).ForEach(func(k, v []byte) error {
						snapshot[string(name)+"\x00"+string(k)] = append([]byte(nil), v...)
						return nil
					})
				}
				undo = func(tx *bbolt.Tx) error {
					for k, v := range snapshot {
						name, key, _ := strings.Cut(k, "\x00")
						if err := tx.Bucket([]byte(name)).Put([]byte(key), v); err != nil {
							return err
						}
					}
					return nil
				}
				return tc.breakIt(tx)
			}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := b.db.Update(undo); err != nil {
					t.Fatal(err)
				}
			}()
			if err := b.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v, want a complaint about %s", err, tc.want)
			}
		})
	}
}

func TestBoltIndexesIdempotencyKeysOfAFileFromBeforeTheIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "runs.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var keyed []string
	for i := 0; i < 5; i++ {
		r := &store.Run{Partner: "acme", Endpoint: "e", Status: store.StatusSucceeded}
		if i%2 == 0 {
			r.IdempotencyKey = "acme//e/order-7"
		}
		if _, err := b.Create(ctx, r, store.CreateOptions{IdempotencyTTL: time.Nanosecond}); err != nil {
			t.Fatal(err)
		}
		if r.IdempotencyKey != "" {
			keyed = append([]string{r.ID}, keyed...) // newest first, as List answers
		}
		time.Sleep(2 * time.Millisecond) // the key expires, so the next run may take it
	}
	if err := b.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketIdxIdem) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	find := func(t *testing.T, b *Store) {
		t.Helper()
		runs, next, err := b.List(ctx, store.Filter{IdempotencyKey: "acme//e/order-7"})
		if err != nil || next != "" {
			t.Fatalf("List = %v, %q", err, next)
		}
		got := make([]string, len(runs))
		for i, r := range runs {
			got[i] = r.ID
		}
		if !slices.Equal(got, keyed) {
			t.Errorf("List by key = %v, want %v", got, keyed)
		}
		if err := b.Check(); err != nil {
			t.Errorf("Check: %v", err)
		}
	}

	t.Run("a read-only open finds the runs by a scan", func(t *testing.T) {
		readOnly := func(name string, _ int, _ os.FileMode) (*os.File, error) { return os.Open(name) }
		b, err := Open(path, Options{openFile: readOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		find(t, b)
	})
	t.Run("a writable open builds the index from the runs", func(t *testing.T) {
		b, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		n := 0
		_ = b.db.View(func(tx *bbolt.Tx) error {
			if idx := tx.Bucket(bucketIdxIdem); idx != nil {
				n = idx.Stats().KeyN
			}
			return nil
		})
		if n != len(keyed) {
			t.Fatalf("idx_idem holds %d entries, want %d", n, len(keyed))
		}
		find(t, b)
	})
}

func TestBoltListReadsABoundedNumberOfRunsPerPage(t *testing.T) {
	ctx := context.Background()
	b, err := Open(filepath.Join(t.TempDir(), "runs.db"), Options{listScan: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var want []string
	for i := 0; i < 10; i++ {
		r := &store.Run{Partner: "acme", Endpoint: "e", Saga: "common"}
		if i == 1 || i == 8 {
			r.Saga, r.IdempotencyKey = "rare", fmt.Sprintf("acme//e/rare-%d", i)
		}
		if _, err := b.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if r.Saga == "rare" {
			want = append(want, r.ID)
		}
	}
	f := store.Filter{Saga: "rare", Oldest: true}
	var got []string
	pages := 0
	for {
		runs, next, err := b.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("runs = %v, want %v", got, want)
	}
	// 10 runs read 4 at a time: the scan stops twice and resumes where it stopped.
	if pages != 3 {
		t.Errorf("pages = %d, want 3 (each reading at most 4 runs)", pages)
	}
	// The key's index reads only its own run: one page, where a scan would stop at 4.
	runs, next, err := b.List(ctx, store.Filter{IdempotencyKey: "acme//e/rare-8", Oldest: true})
	if err != nil || next != "" || len(runs) != 1 || runs[0].ID != want[1] {
		t.Errorf("List by key = %d runs, next %q, %v; want the one run at once", len(runs), next, err)
	}
}
