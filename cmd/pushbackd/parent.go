package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// underGoRun reports whether this binary is the temporary one `go run` built. `go run`
// does not pass its signals on: `go run ./cmd/pushbackd serve & kill $!` stops go run and
// leaves the server holding its ports and data file. So under go run, serve follows its
// parent by default; a built binary keeps running when its parent exits, as nohup and
// daemons expect.
func underGoRun() bool {
	exe, err := os.Executable()
	if err != nil {
		return false
	}
	return strings.Contains(filepath.ToSlash(exe), "/go-build")
}

// withParent returns a context that ends when the process that started this one exits:
// the kernel then gives this process a new parent (init or a subreaper), so its parent id
// changes. Polling the id is portable, and unlike a parent-death signal it does not fire
// when the thread that forked us exits while the parent lives on.
func withParent(ctx context.Context, getppid func() int, every time.Duration, exited func()) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	parent := getppid()
	if parent <= 1 {
		return ctx, cancel // started by init (or orphaned already): no parent to follow
	}
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if getppid() != parent {
					exited()
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}
