//go:build unix

package bolt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/pushbackd/pushbackd/store"
)

// openAhead opens path writing ahead whatever the temporary directory's free space.
func openAhead(t *testing.T, path string) *Store {
	t.Helper()
	b, err := Open(path, Options{preallocReserve: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The zeros never land on bbolt's pages, even when one transaction grows the file past
// the margin (bbolt then grows the file itself).
func TestTheDataFileIsWrittenAheadWithoutTouchingData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	b := openAhead(t, path)
	value := func(i int) []byte {
		return append(bytes.Repeat([]byte{'x'}, 600<<10), fmt.Sprintf("%d", i)...) // ~600 KB, each its own
	}
	const n = 48
	// Eight at a time: they share commits, so a transaction writes ~5 MB, past the
	// margin, and bbolt must grow the file on its own.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := b.Put(ctx, "ns", fmt.Sprint("k", i), value(i), store.PutOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Then one at a time, so the margin is topped up between them.
	for i := n; i < n+16; i++ {
		if err := b.Put(ctx, "ns", fmt.Sprint("k", i), value(i), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(b *Store) {
		t.Helper()
		for i := range n + 16 {
			got, ok, err := b.Get(ctx, "ns", fmt.Sprint("k", i))
			if err != nil || !ok || !bytes.Equal(got, value(i)) {
				t.Fatalf("value %d read back: %d bytes, %v, %v", i, len(got), ok, err)
			}
		}
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
	}
	check(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openAhead(t, path)
	defer b.Close()
	check(b)
}

// Writes smaller than the margin never make bbolt grow the file itself: the file is
// written ahead of what bbolt uses, with real blocks, not a sparse tail.
func TestTheDataFileIsWrittenAheadWithRealBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	b := openAhead(t, path)
	defer b.Close()
	for i := range 100 {
		if err := b.Put(context.Background(), "ns", fmt.Sprint("k", i), bytes.Repeat([]byte{'v'}, 64<<10), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var used int64
	_ = b.db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if ahead := fi.Size() - used; ahead < preallocMin {
		t.Errorf("the file is %d bytes, %d past the %d bbolt uses; want at least %d written ahead", fi.Size(), ahead, used, preallocMin)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatal("no block count for the file")
	}
	// bbolt's first pages may sit in a small sparse stretch from before the first write.
	if allocated := st.Blocks * 512; allocated < fi.Size()-256<<10 {
		t.Errorf("%d of the file's %d bytes are allocated; want the tail written, not sparse", allocated, fi.Size())
	}
}

// A write of zeros that fails (here: a descriptor that cannot write; in life, a full disk)
// leaves bbolt's writes alone and is not tried again for a while.
func TestAFailedWriteAheadPausesAndHarmsNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pushbackd.db")
	b := openAhead(t, path)
	defer b.Close()
	// Swap in a read-only descriptor before any write: the writer goroutine only touches
	// prealloc inside a write transaction, and none has run.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b.prealloc.file.Close()
	b.prealloc.file = ro
	for i := range 20 {
		if err := b.Put(ctx, "ns", fmt.Sprint("k", i), bytes.Repeat([]byte{'v'}, 300<<10), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if b.prealloc.pauseUntil.IsZero() {
		t.Errorf("a failed write of zeros did not pause the writing ahead")
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

// Nothing is written ahead into the last of a disk: the zeros would take space the data
// file and the data dir's other files need.
func TestNothingIsWrittenAheadOnANearlyFullDisk(t *testing.T) {
	dir := t.TempDir()
	free, ok := freeBytes(dir)
	if !ok {
		t.Skip("free space is unknown on this system, and then nothing is written ahead")
	}
	path := filepath.Join(dir, "pushbackd.db")
	// A reserve larger than the disk's free space: the disk counts as nearly full.
	b, err := Open(path, Options{preallocReserve: free + 1<<30})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	before, _ := os.Stat(path)
	if err := b.Put(context.Background(), "ns", "k", []byte(`1`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if after.Size() > before.Size() {
		t.Errorf("the file grew from %d to %d bytes on a nearly full disk", before.Size(), after.Size())
	}
	if b.prealloc.pauseUntil.IsZero() {
		t.Errorf("a nearly full disk did not pause the writing ahead")
	}
}

// BenchmarkCommitTail replays a commit's file writes — 8 pages appended, 10 rewritten, two
// syncs around the meta page — into a tail bbolt's way (ftruncate, sparse) and this
// package's way (written with zeros first): the figures prealloc.go's comment quotes.
// go test ./store/bolt -run '^$' -bench CommitTail -benchtime 2000x
func BenchmarkCommitTail(b *testing.B) {
	for _, zeroed := range []bool{false, true} {
		name := "truncated"
		if zeroed {
			name = "zeroed"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "tail"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			// A write that failed (a full disk) would make the figures a lie: stop at once.
			writeAt := func(p []byte, off int64) {
				if _, err := f.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
			}
			const head, chunk = 4 << 20, 16 << 20
			zeros := make([]byte, 1<<20)
			for off := int64(0); off < head; off += int64(len(zeros)) {
				writeAt(zeros, off)
			}
			size := int64(head)
			grow := func(to int64) {
				if zeroed {
					for ; size < to; size += int64(len(zeros)) {
						writeAt(zeros, size)
					}
				} else {
					size = to
					if err := f.Truncate(size); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			grow(head + chunk)
			page := make([]byte, 4096)
			off := int64(head)
			b.ResetTimer()
			for i := range b.N {
				if off+8*4096 > size {
					b.StopTimer()
					grow(size + chunk)
					b.StartTimer()
				}
				for range 8 {
					writeAt(page, off)
					off += 4096
				}
				for j := range 10 {
					writeAt(page, int64(1+(i*10+j)%1000)*4096)
				}
				if err := syncData(f); err != nil {
					b.Fatal(err)
				}
				writeAt(page, 0) // the meta page
				if err := syncData(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
