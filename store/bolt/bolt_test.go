package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/storetest"
)

func openBolt(t testing.TB, path string, clock store.Clock) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && err != store.ErrClosed {
			t.Errorf("Check after the test: %v", err)
		}
		_ = s.Close()
	})
	return s
}

func TestBoltStore(t *testing.T) {
	storetest.TestStore(t, func(t *testing.T, clock store.Clock) store.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "runs.db"), clock)
	})
}

func TestBoltKeepsEverythingAcrossReopen(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	path := filepath.Join(t.TempDir(), "data", "runs.db") // the directory is created
	s, err := bolt.Open(path, bolt.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	var created []*store.Run
	for i := 0; i < 5; i++ {
		r := &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: fmt.Sprint("k", i),
			Request: store.Request{Body: []byte(fmt.Sprint("body", i))}}
		if _, err := s.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		created = append(created, r)
	}
	created[1].Status, created[1].State = store.StatusSucceeded, []byte(`{"done":true}`)
	if err := s.Update(ctx, created[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "acme", "cursor", []byte(`42`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700 | os.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
	}

	s = openBolt(t, path, clock)
	for _, want := range created {
		got, err := s.GetRun(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != want.Status || string(got.Request.Body) != string(want.Request.Body) || string(got.State) != string(want.State) {
			t.Errorf("after reopen run %s is %+v", want.ID, got)
		}
	}
	if v, found, err := s.Get(ctx, "acme", "cursor"); err != nil || !found || string(v) != "42" {
		t.Errorf("kv after reopen: %q %v %v", v, found, err)
	}
	res, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: "k3"}, store.CreateOptions{})
	if err != nil || res.DuplicateOf != created[3].ID {
		t.Errorf("idempotency key lost across reopen: %+v, %v", res, err)
	}
	unfinished, err := s.Unfinished(ctx)
	if err != nil || len(unfinished) != 4 {
		t.Errorf("Unfinished after reopen: %d runs, %v; want 4", len(unfinished), err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestHelperProcess is not a test: the lock test runs the test binary again with
// PUSHBACKD_STORE_HELPER set, so the lock is held by a different process (bbolt's flock
// is per process).
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("PUSHBACKD_STORE_HELPER")
	if path == "" {
		return
	}
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin) // hold the lock until the parent closes stdin
	_ = s.Close()
	os.Exit(0)
}

func TestBoltRefusesAFileAnotherProcessHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "PUSHBACKD_STORE_HELPER="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	start := time.Now()
	s, err := bolt.Open(path, bolt.Options{Timeout: 200 * time.Millisecond})
	if err == nil {
		_ = s.Close()
		t.Fatal("second Open succeeded while another process holds the file")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open took %v to give up", took)
	}
	want := "open " + path + ": the data file is in use by another pushbackd process (lock not acquired within 200ms)"
	if err.Error() != want || !errors.Is(err, store.ErrLocked) {
		t.Errorf("error = %q, want %q wrapping ErrLocked", err, want)
	}

	_ = stdin.Close() // the helper exits and releases the lock
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open after the other process left: %v", err)
	}
	_ = s.Close()
}

func TestBoltInAReadOnlyDirectoryIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		_ = f.Close()
		t.Skip("permissions do not stop this user (root?); TestBoltWritesOnAReadOnlyFileAreUnavailable covers the failure")
	}
	_, err := bolt.Open(filepath.Join(dir, "sub", "runs.db"), bolt.Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open in a read-only directory = %v, want ErrUnavailable", err)
	}
	_, err = bolt.Open(filepath.Join(dir, "runs.db"), bolt.Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open of a new file in a read-only directory = %v, want ErrUnavailable", err)
	}
}

func TestBoltGroupsConcurrentWritesIntoFewCommits(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "runs.db"), nil)
	before := s.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Create(context.Background(), &store.Run{Partner: "acme", Endpoint: "e"}, store.CreateOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	after := s.Stats()
	commits, writes := after.Commits-before.Commits, after.Writes-before.Writes
	t.Logf("200 concurrent creates: %d commits", commits)
	if writes != 200 || commits > 40 {
		t.Fatalf("%d writes in %d commits; want 200 writes in far fewer than 200 commits", writes, commits)
	}
}

func TestBoltCloseCommitsWhatIsQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	s, err := bolt.Open(path, bolt.Options{MaxBatchDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ok := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &store.Run{Partner: "acme", Endpoint: "e"}
			if _, err := s.Create(context.Background(), r, store.CreateOptions{}); err == nil {
				ok <- r.ID
			} else if !errors.Is(err, store.ErrClosed) {
				t.Error(err)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(ok)
	s = openBolt(t, path, nil)
	for id := range ok {
		if _, err := s.GetRun(context.Background(), id); err != nil {
			t.Errorf("run %s was acknowledged but is gone after Close: %v", id, err)
		}
	}
}

func TestBoltKeepsSagaVersionsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	path := filepath.Join(t.TempDir(), "runs.db")
	s, err := bolt.Open(path, bolt.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	sources := [][]byte{[]byte("rev: 1\n"), []byte("rev: 2\n"), []byte("rev: 1\n")}
	var want []store.SagaVersion
	for i, src := range sources {
		v, created, err := s.RecordSagaVersion(ctx, "order", src, fmt.Sprint("origin ", i))
		if err != nil || !created {
			t.Fatalf("RecordSagaVersion #%d = %+v, %v, %v", i, v, created, err)
		}
		want = append(want, v)
		clock.Advance(time.Second)
	}
	if _, _, err := s.RecordSagaVersion(ctx, "refund", []byte("rev: 1\n"), "file"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path, clock)
	list, err := s.SagaVersions(ctx, "order")
	if err != nil || len(list) != 3 {
		t.Fatalf("SagaVersions after reopen = %+v, %v; want 3", list, err)
	}
	for i, w := range want {
		if got := list[len(list)-1-i]; got.Number != w.Number || got.Hash != w.Hash || got.Origin != w.Origin || !got.Created.Equal(w.Created) {
			t.Errorf("listed after reopen: %+v, want %+v", got, w)
		}
		got, err := s.SagaVersion(ctx, "order", w.Number)
		if err != nil || string(got.Source) != string(sources[i]) || got.Hash != w.Hash || !got.Created.Equal(w.Created) {
			t.Errorf("SagaVersion(%d) after reopen = %+v, %v", w.Number, got, err)
		}
	}
	// Numbering and the dedupe carry on from what the file holds.
	if v, created, err := s.RecordSagaVersion(ctx, "order", sources[2], "file"); err != nil || created || v.Number != 3 {
		t.Errorf("recording the latest source again after reopen = %+v, %v, %v; want version 3, not created", v, created, err)
	}
	if v, created, err := s.RecordSagaVersion(ctx, "order", []byte("rev: 4\n"), "file"); err != nil || !created || v.Number != 4 {
		t.Errorf("a new source after reopen = %+v, %v, %v; want version 4", v, created, err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}
