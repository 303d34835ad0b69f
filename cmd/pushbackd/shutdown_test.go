package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGTERM whose grace runs out with a run still executing is still a graceful stop: the
// run resumes from its checkpoint at the next start, so the process logs it and exits 0,
// which a service manager counts as a clean stop.
func TestASIGTERMThatInterruptsARunExitsZero(t *testing.T) {
	held := make(chan struct{})
	reached := make(chan struct{}, 1)
	mock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case reached <- struct{}{}:
		default:
		}
		select {
		case <-held:
		case <-r.Context().Done():
		}
	}))
	defer mock.Close()
	defer close(held)
	r := &crashRig{t: t, bin: buildBinary(t), dir: t.TempDir()}
	r.addr, r.adminAddr = freeAddr(t), freeAddr(t)
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlimits: {sync_timeout: 1s}\nlog: {level: warn}\negress: {allow: [127.0.0.1]}\n",
		r.addr, r.adminAddr, filepath.Join(r.dir, "data")))
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), fmt.Sprintf("id: acme\nsettings: {mock: %q}\nendpoints: [{name: work, saga: held, security: {method: bearer, tokens: [{value: t}]}}]\n", mock.URL))
	mustWrite(t, filepath.Join(r.dir, "sagas/held.yaml"), "name: held\nsteps:\n  - {name: call, http: {url: \"${ settings.mock }/held\", timeout: 60s}}\n")
	r.start()
	if id, _ := r.post(http.DefaultClient, "work", `{}`); id == "" {
		t.Fatalf("the post was not accepted\n%s", r.log())
	}
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("the run never called the downstream\n%s", r.log())
	}
	start := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	// Through the grace the pushback listener is closed, and /readyz says so to load
	// balancers.
	ready := 0
	for ready != http.StatusServiceUnavailable && time.Since(start) < 4*time.Second {
		if resp, err := http.Get("http://" + r.adminAddr + "/readyz"); err == nil {
			ready = resp.StatusCode
			resp.Body.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ready != http.StatusServiceUnavailable {
		t.Errorf("/readyz answered %d during the shutdown grace; want 503", ready)
	}
	err := r.cmd.Wait()
	r.logFile.Close()
	var exit *exec.ExitError
	if err != nil && errors.As(err, &exit) {
		t.Fatalf("exit %d after %v; want 0\n%s", exit.ExitCode(), time.Since(start), r.log())
	}
	if err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(filepath.Join(r.dir, "server.log")); !strings.Contains(string(log), "stopped with runs interrupted") {
		t.Errorf("the log does not say a run was interrupted:\n%s", log)
	}
}
