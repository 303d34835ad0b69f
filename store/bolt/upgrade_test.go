package bolt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

type upgradeClock struct{ now time.Time }

func (c *upgradeClock) Now() time.Time { return c.now }

// oldRun is a run as layout version 1 stored it, with its keys in the old scoping.
type oldRun struct {
	run     store.Run
	expires time.Time // of its idempotency key
}

// writeV1File builds a data file as the code of layout version 1 wrote it: the same
// buckets, and runs, indexes, idempotency keys and kv entries written by the same code
// paths (encodeRun, putIndexes, the idem and kv layouts), with keys scoped the old way.
func writeV1File(t *testing.T, path string, runs []*oldRun, kv map[string][]string, now time.Time) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids store.IDGen
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRuns, bucketBodies, bucketIdxStatus, bucketIdxScope,
			bucketIdxStatusScope, bucketIdxDebounce, bucketIdem, bucketIdemExp, bucketKV, bucketKVExp, bucketSagaVersions} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(metaSchema, be64(1)); err != nil {
			return err
		}
		for _, o := range runs {
			r := &o.run
			id := ids.Next(r.ReceivedAt)
			r.ID = id.String()
			if err := tx.Bucket(bucketRuns).Put(id[:], store.EncodeRun(nil, r, nil)); err != nil {
				return err
			}
			if err := putIndexes(tx, id, r); err != nil {
				return err
			}
			if r.IdempotencyKey != "" {
				if err := claimKey(tx, r.IdempotencyKey, id, o.expires); err != nil {
					return err
				}
			}
			if err := addRunCount(tx, 1); err != nil {
				return err
			}
		}
		for ns, keys := range kv {
			for _, k := range keys {
				if err := tx.Bucket(bucketKV).Put(kvKey(ns, k), append(be64(0), `1`...)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A file written before keys were scoped by site and endpoint is upgraded at open: a
// duplicate of an event accepted before the upgrade is still refused within its ttl, a run
// waiting before it is still superseded, and the kv entries it holds count against the cap.
func TestBoltUpgradesAVersion1File(t *testing.T) {
	for _, tc := range []struct {
		name string
		// crash, when set, runs the upgrade's first transactions and stops, as a process
		// killed in the middle of the upgrade would.
		crash bool
	}{
		{name: "in one go"},
		{name: "resumed after a crash between its transactions", crash: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clock := &upgradeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			before := clock.now.Add(-time.Hour)
			long := strings.Repeat("x", 600) // over maxKeyLen: stored as its hash
			done := func(p, site, e, key string, exp time.Duration) *oldRun {
				return &oldRun{run: store.Run{Partner: p, Site: site, Endpoint: e, Saga: "loans", Status: store.StatusSucceeded,
					ReceivedAt: before, UpdatedAt: before, FinishedAt: before,
					IdempotencyKey: p + "/" + e + "/" + key}, expires: before.Add(exp)}
			}
			waiting := func(site, loan string) *oldRun {
				return &oldRun{run: store.Run{Partner: "acme", Site: site, Endpoint: "waits", Saga: "milestones", Status: store.StatusWaiting,
					ReceivedAt: before, UpdatedAt: before, WakeAt: clock.now.Add(time.Hour),
					DebounceKey: "acme/milestones/" + loan}}
			}
			runs := []*oldRun{
				done("acme", "branch", "loans", "E-777", 48*time.Hour), // the branch's event took the partner's key
				done("acme", "", "loans", "E-100", 48*time.Hour),
				done("acme", "", "loans", "E-old", 30*time.Minute), // expired before the upgrade
				done("acme", "", "loans", long, 48*time.Hour),
				waiting("", "loan-1"),
				waiting("branch", "loan-2"),
			}
			path := filepath.Join(t.TempDir(), "pushbackd.db")
			writeV1File(t, path, runs, map[string][]string{"acme": {"a", "b", "c"}, "globex": {"a"}}, clock.now)

			if tc.crash {
				db, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(startUpgrade); err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(tx *bbolt.Tx) error {
					done, err := upgradeSome(tx, clock.now, 2)
					if done {
						t.Error("two entries finished the upgrade")
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}

			b, err := Open(path, Options{Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.Check(); err != nil {
				t.Fatalf("Check after the upgrade: %v", err)
			}
			_ = b.db.View(func(tx *bbolt.Tx) error {
				if v := u64(tx.Bucket(bucketMeta).Get(metaSchema)); v != schemaVersion {
					t.Errorf("layout version %d after the upgrade", v)
				}
				if tx.Bucket(bucketUpgrade) != nil {
					t.Error("the upgrade bucket is still there")
				}
				return nil
			})

			create := func(site, endpoint, key string) store.CreateResult {
				t.Helper()
				r := &store.Run{Partner: "acme", Site: site, Endpoint: endpoint, Saga: "loans",
					IdempotencyKey: store.IdempotencyKey(store.KeyScope{Partner: "acme", Site: site, Endpoint: endpoint}, key)}
				res, err := b.Create(ctx, r, store.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			for _, c := range []struct {
				name, site, key string
				want            string
			}{
				{"the partner's duplicate of an event from before the upgrade is refused", "", "E-100", runs[1].run.ID},
				{"the site's duplicate of its event from before the upgrade is refused", "branch", "E-777", runs[0].run.ID},
				{"the partner's own event that the site's had blocked now runs", "", "E-777", ""},
				{"an event whose key expired before the upgrade runs", "", "E-old", ""},
				{"a key too long to store as it is still matches", "", long, runs[3].run.ID},
			} {
				if got := create(c.site, "loans", c.key).DuplicateOf; got != c.want {
					t.Errorf("%s: DuplicateOf = %q, want %q", c.name, got, c.want)
				}
			}

			for i, c := range []struct{ site, loan string }{{"", "loan-1"}, {"branch", "loan-2"}} {
				r := &store.Run{Partner: "acme", Site: c.site, Endpoint: "waits", Saga: "milestones", Status: store.StatusWaiting,
					DebounceKey: store.DebounceKey(store.KeyScope{Partner: "acme", Site: c.site, Endpoint: "waits"}, "milestones", c.loan)}
				res, err := b.Create(ctx, r, store.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if want := []string{runs[4+i].run.ID}; !slices.Equal(res.Superseded, want) {
					t.Errorf("a new event for %s at site %q superseded %v, want %v", c.loan, c.site, res.Superseded, want)
				}
			}

			if err := b.Put(ctx, "acme", "d", []byte(`1`), store.PutOptions{MaxEntries: 3}); !errors.Is(err, store.ErrKVFull) {
				t.Errorf("a 4th kv entry for acme with a cap of 3 = %v, want ErrKVFull: entries from before the upgrade must count", err)
			}
			if err := b.Put(ctx, "globex", "b", []byte(`1`), store.PutOptions{MaxEntries: 3}); err != nil {
				t.Errorf("globex's 2nd entry: %v", err)
			}
			if err := b.Check(); err != nil {
				t.Fatalf("Check after using the upgraded file: %v", err)
			}
		})
	}
}

func TestBoltRefusesAFileOfANewerLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, be64(schemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "use a newer pushbackd") {
		t.Fatalf("Open = %v, want a refusal naming the newer layout", err)
	}
}

// Message keys live twice Standard Webhooks' tolerance; once expired they are swept, so a
// busy endpoint's ids do not pile up in the file.
func TestBoltSweepsExpiredMessageKeys(t *testing.T) {
	ctx := context.Background()
	clock := &upgradeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := Open(filepath.Join(t.TempDir(), "pushbackd.db"), Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 300 {
		r := &store.Run{Partner: "acme", Endpoint: "hooks", MessageKey: store.MessageKey(store.KeyScope{Partner: "acme", Endpoint: "hooks"}, "msg_"+strings.Repeat("x", i))}
		if _, err := b.Create(ctx, r, store.CreateOptions{MessageTTL: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	held := func() (n int) {
		_ = b.db.View(func(tx *bbolt.Tx) error {
			n = tx.Bucket(bucketIdem).Stats().KeyN + tx.Bucket(bucketIdemExp).Stats().KeyN
			return nil
		})
		return n
	}
	if n := held(); n != 600 {
		t.Fatalf("%d key entries after 300 runs, want 600 (key and expiry each)", n)
	}
	clock.now = clock.now.Add(10 * time.Minute)
	if _, err := b.Prune(ctx, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != 0 {
		t.Fatalf("%d key entries left after the ttl and a prune, want 0", n)
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

// A namespace at its cap takes nothing more: 200 puts of new 900 KB values leave the data
// file as it was.
func TestBoltFullNamespaceDoesNotGrowTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	capped := store.PutOptions{MaxEntries: 2}
	for _, k := range []string{"a", "b"} {
		if err := b.Put(ctx, "acme", k, []byte(`1`), capped); err != nil {
			t.Fatal(err)
		}
	}
	size := func() int64 { // what bbolt uses of the file (the file is written ahead)
		var n int64
		_ = b.db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil })
		return n
	}
	start := size()
	value := []byte(`"` + strings.Repeat("v", 900<<10) + `"`)
	for i := range 200 {
		if err := b.Put(ctx, "acme", "k"+strings.Repeat("k", i), value, capped); !errors.Is(err, store.ErrKVFull) {
			t.Fatalf("put %d = %v, want ErrKVFull", i, err)
		}
	}
	if end := size(); end != start {
		t.Fatalf("the data grew from %d to %d bytes", start, end)
	}
}

// writeV3File builds a layout version 3 file: runs in several statuses and scopes written by
// this code, plus the idx_status and idx_scope buckets version 3 kept.
func writeV3File(t *testing.T, path string) []*store.Run {
	t.Helper()
	ctx := context.Background()
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var runs []*store.Run
	for i, sc := range [][3]string{{"acme", "retail", "a"}, {"acme", "retail", "b"}, {"globex", "", "a"}, {"acme", "", "a"}} {
		for j := 0; j < 3; j++ {
			r := &store.Run{Partner: sc[0], Site: sc[1], Endpoint: sc[2], Saga: "s"}
			if _, err := b.Create(ctx, r, store.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if (i+j)%3 != 0 {
				r.Status = []store.Status{store.StatusRunning, store.StatusSucceeded}[(i+j)%3-1]
				if err := b.Update(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			runs = append(runs, r)
		}
	}
	err = b.db.Update(func(tx *bbolt.Tx) error {
		st, err := tx.CreateBucket(bucketIdxStatus)
		if err != nil {
			return err
		}
		sc, err := tx.CreateBucket(bucketIdxScope)
		if err != nil {
			return err
		}
		for _, r := range runs {
			id, err := store.ParseRunID(r.ID)
			if err != nil {
				return err
			}
			if err := st.Put(join(id[:], string(r.Status)), empty); err != nil {
				return err
			}
			if err := sc.Put(join(id[:], r.Partner, r.Site, r.Endpoint), empty); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, be64(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return runs
}

// Layout version 4 drops idx_status and idx_scope: a version 3 file opens as version 4
// without them (so a pushbackd that still keeps them refuses the file), and answers every
// status and scope query as before; a version 3 file that cannot be written still opens and
// answers them.
func TestBoltUpgradesAVersion3File(t *testing.T) {
	ctx := context.Background()
	readOnly := func(name string, _ int, _ os.FileMode) (*os.File, error) { return os.Open(name) }
	for _, tc := range []struct {
		name     string
		opts     Options
		wantVers uint64
	}{
		{"a writable file is upgraded to version 4", Options{}, schemaVersion},
		{"a read-only file stays version 3 and is read the same", Options{openFile: readOnly}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pushbackd.db")
			runs := writeV3File(t, path)
			b, err := Open(path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			err = b.db.View(func(tx *bbolt.Tx) error {
				if v := u64(tx.Bucket(bucketMeta).Get(metaSchema)); v != tc.wantVers {
					t.Errorf("layout version = %d, want %d", v, tc.wantVers)
				}
				for _, name := range [][]byte{bucketIdxStatus, bucketIdxScope} {
					if gone := tx.Bucket(name) == nil; gone != (tc.wantVers == schemaVersion) {
						t.Errorf("%s gone = %v after opening a version %d file", name, gone, tc.wantVers)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []store.Status{store.StatusQueued, store.StatusRunning, store.StatusSucceeded} {
				var want []string
				for _, r := range runs {
					if r.Status == st {
						want = append(want, r.ID)
					}
				}
				for _, desc := range []bool{false, true} {
					got, _, err := b.List(ctx, store.Filter{Status: st, Limit: 100, Oldest: !desc})
					if err != nil {
						t.Fatal(err)
					}
					var ids []string
					for _, r := range got {
						ids = append(ids, r.ID)
					}
					w := slices.Clone(want)
					if desc {
						slices.Reverse(w)
					}
					if !slices.Equal(ids, w) {
						t.Errorf("List status=%s desc=%v = %v, want %v", st, desc, ids, w)
					}
				}
			}
			for _, f := range []store.Filter{{Partner: "acme"}, {Partner: "acme", Site: "retail"}, {Endpoint: "a"}, {Partner: "globex", Endpoint: "a"}} {
				var want []string
				for _, r := range runs {
					if (f.Partner == "" || r.Partner == f.Partner) && (f.Site == "" || r.Site == f.Site) && (f.Endpoint == "" || r.Endpoint == f.Endpoint) {
						want = append(want, r.ID)
					}
				}
				f.Limit, f.Oldest = 100, true
				got, _, err := b.List(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range got {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("List %+v = %v, want %v", f, ids, want)
				}
				n, _, err := b.CountRuns(ctx, f, 100)
				if err != nil || n != len(want) {
					t.Errorf("CountRuns %+v = %d, %v, want %d", f, n, err, len(want))
				}
			}
			unf, err := b.Unfinished(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids, want []string
			for _, r := range unf {
				ids = append(ids, r.ID)
			}
			for _, r := range runs {
				if !r.Status.Final() {
					want = append(want, r.ID)
				}
			}
			if !slices.Equal(ids, want) {
				t.Errorf("Unfinished = %v, want %v", ids, want)
			}
			if err := b.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}
