package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTuneProcsDoublesGosDefaultUnlessTheOperatorOrAQuotaSetIt(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(def)
	for _, tc := range []struct {
		env    string
		numCPU int
		want   int
	}{
		{"", def, procsPerCPU * def},
		{"3", def, def},                  // the operator's value stands (the runtime applied it at start)
		{"zero", def, procsPerCPU * def}, // the runtime ignores what does not parse, so do we
		{"0", def, procsPerCPU * def},
		{"", def + 1, def}, // Go's default is below the CPUs: a container's CPU quota set it
	} {
		runtime.GOMAXPROCS(def)
		got := tuneProcs(func(k string) string {
			if k == "GOMAXPROCS" {
				return tc.env
			}
			return ""
		}, tc.numCPU)
		if got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
			t.Errorf("GOMAXPROCS=%q, %d CPUs: tuneProcs returned %d and set %d; want %d", tc.env, tc.numCPU, got, runtime.GOMAXPROCS(0), tc.want)
		}
	}
}

// serve itself applies it: the runtime's own gauge on /metrics says what is in force.
func TestServeRunsTwoProcessorsPerCPU(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set for the tests; the default cannot be compared")
	}
	want := procsPerCPU * runtime.GOMAXPROCS(0)
	if runtime.GOMAXPROCS(0) < runtime.NumCPU() {
		want = runtime.GOMAXPROCS(0) // a CPU quota set Go's default: serve keeps it
	}
	bin := buildBinary(t)
	for _, tc := range []struct {
		env  string
		want int
	}{
		{"", want},
		{"GOMAXPROCS=3", 3},
	} {
		dir, addr, admin := t.TempDir(), freeAddr(t), freeAddr(t)
		mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlog: {level: warn}\n", addr, admin, filepath.Join(dir, "data")))
		mustWrite(t, filepath.Join(dir, "partners/acme.yaml"), "id: acme\nendpoints: [{name: in, saga: s, security: {method: bearer, tokens: [{value: t}]}}]\n")
		mustWrite(t, filepath.Join(dir, "sagas/s.yaml"), "name: s\nsteps:\n  - {name: a, set: {x: 1}}\n")
		cmd := exec.Command(bin, "serve", "-config", filepath.Join(dir, "pushbackd.yaml"))
		cmd.Env = append(withoutEnv(os.Environ(), "GOMAXPROCS"), tc.env)
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, err := gaugeWhenReady("http://"+admin+"/metrics", "go_sched_gomaxprocs_threads", 20*time.Second)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.env, err, log.String())
		}
		if got != tc.want {
			t.Errorf("environment %q: serve runs GOMAXPROCS %d; want %d", tc.env, got, tc.want)
		}
	}
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// gaugeWhenReady polls url until it answers, then reads the unlabelled gauge name.
func gaugeWhenReady(url, name string, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
					return strconv.Atoi(v)
				}
			}
			return 0, fmt.Errorf("%s has no %s", url, name)
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
