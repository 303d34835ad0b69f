package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/config"
)

func TestPostgresConfig(t *testing.T) {
	t.Run("a config with a Postgres DSN loads with driver postgres, the DSN and the admin token in it", func(t *testing.T) {
		c := cfg{PostgresDSN: "host=/tmp/pgtest-sock port=5432 user=postgres dbname=s8_accept sslmode=disable", AdminToken: randomToken()}
		if err := c.write(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		srv, err := config.LoadServer(c.file)
		if err != nil {
			t.Fatalf("the generated config does not load: %v", err)
		}
		if srv.Store.Driver != config.StorePostgres || !srv.Store.DSN.IsSet() || !srv.Admin.Token.IsSet() {
			t.Fatalf("store %+v, admin token set %v; want driver postgres with a DSN and a token", srv.Store, srv.Admin.Token.IsSet())
		}
	})
	t.Run("without a DSN the config keeps the bbolt store and a generated token", func(t *testing.T) {
		c := cfg{}
		if err := c.write(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		srv, err := config.LoadServer(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if srv.Store.Driver == config.StorePostgres || srv.Admin.Token.IsSet() {
			t.Fatalf("store %+v; want bbolt and no token in the config", srv.Store)
		}
	})
}

// TestTreeCPU: Postgres does its work in backend processes under the postmaster, so the
// database's CPU must include its descendants, live and exited.
func TestTreeCPU(t *testing.T) {
	t.Run("a process's tree counts the CPU of a grandchild that has exited", func(t *testing.T) {
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Skip("no sh")
		}
		// The inner sh burns CPU and exits; the outer waits for it, then sleeps.
		cmd := exec.Command(sh, "-c", `sh -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done'; sleep 30`)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		p := &proc{cmd: cmd}
		deadline := time.Now().Add(60 * time.Second)
		for treeCPU(cmd.Process.Pid) < 100*time.Millisecond {
			if time.Now().After(deadline) {
				t.Fatalf("tree CPU %v after 60 s; want the grandchild's burn counted", treeCPU(cmd.Process.Pid))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if own := p.cpu(); own >= treeCPU(cmd.Process.Pid) {
			t.Fatalf("the process's own CPU %v is not below its tree's %v", own, treeCPU(cmd.Process.Pid))
		}
	})
	t.Run("a process that is gone counts nothing", func(t *testing.T) {
		cmd := exec.Command(filepath.Join("/bin", "true"))
		if err := cmd.Run(); err != nil {
			t.Skip(err)
		}
		if got := treeCPU(cmd.Process.Pid); got != 0 {
			t.Fatalf("treeCPU of an exited pid = %v, want 0", got)
		}
	})
}
