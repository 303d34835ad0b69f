package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/pgtest"
)

// severalInstancesBlocks are the ```sh blocks of the README's "Several instances" section.
func severalInstancesBlocks(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(src), "\n### Several instances\n")
	if !ok {
		t.Fatal("README has no Several instances section")
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	if i := strings.Index(sec, "\n### "); i >= 0 {
		sec = sec[:i]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?ms)^```sh\n(.*?)^```\n").FindAllStringSubmatch(sec, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) != 2 {
		t.Fatalf("%d sh blocks in Several instances, want 2 (start two, use them)", len(blocks))
	}
	return blocks
}

// TestReadmeSeveralInstances runs the README's two instances on one Postgres as printed
// (the built binary for go run, a throwaway cluster's DSN for the example one, free
// ports for the printed ones) and checks that a pushback to one is in the other's history.
func TestReadmeSeveralInstances(t *testing.T) {
	requireTools(t, "bash", "curl", "openssl")
	c, err := pgtest.Start()
	if err != nil {
		(&pgtest.Env{Err: err}).Need(t)
	}
	t.Cleanup(c.Stop)
	blocks := severalInstancesBlocks(t)
	bin := buildBinary(t)
	ports := map[string]string{}
	subst := func(s string) string {
		s = strings.ReplaceAll(s, "go run ./cmd/pushbackd", bin)
		return regexp.MustCompile(`127\.0\.0\.1:80\d\d`).ReplaceAllStringFunc(s, func(a string) string {
			if ports[a] == "" {
				ports[a] = freeAddr(t)
			}
			return ports[a]
		})
	}
	start := regexp.MustCompile(`(?m)^export PUSHBACKD_POSTGRES_DSN=.*$`).ReplaceAllString(subst(blocks[0]),
		"export PUSHBACKD_POSTGRES_DSN='"+c.NewDatabase(t, "")+"'")
	// The token the first block makes is needed by the second: it writes it down.
	tokenFile := filepath.Join(t.TempDir(), "token")
	start += "\necho \"$PUSHBACKD_ADMIN_TOKEN\" > " + tokenFile + "\nwait\n"
	var logs bytes.Buffer
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", start)
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("instances' output:\n%s", logs.String())
		}
	})
	var admins []string
	for printed, addr := range ports {
		if strings.HasSuffix(printed, "1") || strings.HasSuffix(printed, "3") {
			admins = append(admins, addr)
		}
	}
	if len(admins) != 2 {
		t.Fatalf("the README starts %d admin listeners, want 2: %v", len(admins), ports)
	}
	for _, a := range admins {
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + a + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance with admin %s not ready", a)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	use := exec.Command("bash", "-euo", "pipefail", "-c", subst(blocks[1]))
	use.Dir = repoRoot
	use.Env = append(os.Environ(), "PUSHBACKD_ADMIN_TOKEN="+strings.TrimSpace(string(token)))
	out, err := use.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	id := regexp.MustCompile(`"run_id":"([0-9a-f-]{36})"`).FindSubmatch(out)
	if id == nil {
		t.Fatalf("the pushback answered no run id:\n%s", out)
	}
	if n := bytes.Count(out, id[1]); n < 2 {
		t.Fatalf("the other instance's history lacks run %s:\n%s", id[1], out)
	}
}
