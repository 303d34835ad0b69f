//go:build linux

package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveConfig writes a small valid config listening on free loopback ports, returning its
// path, the pushback address and the data file.
func serveConfig(t *testing.T) (cfgPath, addr, dbFile string) {
	t.Helper()
	dir := t.TempDir()
	addr = freeAddr(t)
	cfgPath = filepath.Join(dir, "pushbackd.yaml")
	mustWrite(t, cfgPath, "listen: "+addr+"\nadmin: {listen: "+freeAddr(t)+"}\ndata_dir: "+filepath.Join(dir, "data")+"\n")
	mustWrite(t, filepath.Join(dir, "sagas/echo.yaml"), "name: echo\nsteps:\n  - {name: a, respond: {status: 200}}\n")
	mustWrite(t, filepath.Join(dir, "partners/a.yaml"), "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n")
	return cfgPath, addr, filepath.Join(dir, "data", "pushbackd.db")
}

func waitListening(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after %s", addr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// released reports whether the port can be bound and the data file locked, as a new server
// would need.
func released(addr, dbFile string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	f, err := os.OpenFile(dbFile, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

func waitReleased(t *testing.T, addr, dbFile string, within time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if released(addr, dbFile) {
			return true
		}
	}
	return false
}

// A server started by a process that is killed -9 stops with it when -exit-with-parent is
// set, freeing its port and data file; without it, the server outlives its parent, as a
// daemon started with nohup must.
func TestServeFollowsItsParentWhenAsked(t *testing.T) {
	bin := buildBinary(t)
	for _, c := range []struct {
		name  string
		flag  string
		stops bool
	}{
		{"with exit-with-parent the server stops when its parent is killed", "-exit-with-parent", true},
		{"without it the server outlives its parent", "-exit-with-parent=false", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgPath, addr, dbFile := serveConfig(t)
			logFile := filepath.Join(t.TempDir(), "serve.log")
			// The parent: a shell that starts the server, says its pid and waits.
			parent := exec.Command("sh", "-c", `"$0" serve -config "$1" "$2" >"$3" 2>&1 & echo $!; wait`, bin, cfgPath, c.flag, logFile)
			out, err := parent.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := parent.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			waitListening(t, addr, 20*time.Second)
			_ = parent.Process.Signal(syscall.SIGKILL)
			_ = parent.Wait()
			if c.stops {
				if !waitReleased(t, addr, dbFile, 15*time.Second) {
					t.Fatal("the server still holds its port or data file 15s after its parent died")
				}
				if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "the process that started serve has exited; stopping") {
					t.Errorf("log does not say why it stopped:\n%s", log)
				}
				return
			}
			time.Sleep(time.Second)
			if released(addr, dbFile) {
				t.Fatal("the server stopped with its parent without -exit-with-parent")
			}
		})
	}
}

// The README's `go run ./cmd/pushbackd serve & ... kill $!` stops the server: kill reaches
// go run, which does not pass it on, and the server under go run follows its parent.
func TestKillingGoRunStopsTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with go run")
	}
	cfgPath, addr, dbFile := serveConfig(t)
	goRun := exec.Command("go", "run", ".", "serve", "-config", cfgPath)
	// Its own process group, which the server inherits: the cleanup stops a server that
	// outlived go run, even when the test fails.
	goRun.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := goRun.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-goRun.Process.Pid, syscall.SIGKILL) })
	waitListening(t, addr, 2*time.Minute)
	_ = goRun.Process.Signal(syscall.SIGTERM) // what kill $! sends
	_ = goRun.Wait()
	if !waitReleased(t, addr, dbFile, 15*time.Second) {
		t.Fatal("the server still holds its port or data file 15s after go run was killed (without -exit-with-parent it never is)")
	}
}
