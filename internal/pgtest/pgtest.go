// Package pgtest runs a throwaway Postgres cluster for tests: initdb as the postgres OS
// user in a temp dir, the server on a unix socket only, one database per test. One cluster
// serves a whole test binary (start it in TestMain); tests stay isolated because each gets
// its own database. A missing Postgres skips the tests, or fails them when
// PUSHBACKD_REQUIRE_TOOLS is set (as in CI).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway Postgres server.
type Cluster struct {
	bin      string // directory of initdb, postgres, pg_ctl
	dir      string // root temp dir: data/ and sock/
	port     int
	runAs    []string // prefix that runs a command as the postgres user ("" when not root)
	settings []string
	n        atomic.Int64
	mu       sync.Mutex
	server   *exec.Cmd
}

// ErrNoPostgres says the server binaries are not installed.
var ErrNoPostgres = errors.New("postgres server binaries not found in /usr/lib/postgresql/*/bin")

// BinDir finds the newest installed server's binaries: Debian keeps them off PATH.
func BinDir() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", ErrNoPostgres
	}
	sort.Slice(m, func(i, j int) bool { return verOf(m[i]) < verOf(m[j]) })
	return filepath.Dir(m[len(m)-1]), nil
}

func verOf(p string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return v
}

// Start initialises and starts a cluster. Call Stop when done (TestMain). settings are
// extra "name=value" server settings, after (so overriding) the fast, non-durable
// defaults: a benchmark of commits passes "fsync=on", "synchronous_commit=on".
func Start(settings ...string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir, settings: settings}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the server as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	if err := c.run(filepath.Join(bin, "initdb"), "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		c.cleanup()
		return nil, err
	}
	if err := c.run("mkdir", "-p", c.Socket()); err != nil {
		c.cleanup()
		return nil, err
	}
	if c.port, err = freePort(); err != nil {
		c.cleanup()
		return nil, err
	}
	if err := c.StartServer(); err != nil {
		c.cleanup()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// Socket is the directory of the server's unix socket.
func (c *Cluster) Socket() string { return filepath.Join(c.dir, "sock") }

func (c *Cluster) cmd(name string, args ...string) *exec.Cmd {
	all := append(append(append([]string{}, c.runAs...), name), args...)
	return exec.Command(all[0], all[1:]...)
}

func (c *Cluster) run(name string, args ...string) error {
	out, err := c.cmd(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, out)
	}
	return nil
}

// freePort picks a port no one listens on: the socket file name carries it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartServer starts the server (again, after StopServer) and waits until it takes
// connections. Settings favour speed: the data is thrown away.
func (c *Cluster) StartServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := c.cmd(filepath.Join(c.bin, "postgres"), "-D", c.data(), "-k", c.Socket(), "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	for _, kv := range c.settings {
		cmd.Args = append(cmd.Args, "-c", kv)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.server = cmd
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("postgres exited at start: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			go func() { <-done }()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("postgres did not accept connections within 30s")
}

// StopServer stops the server fast (pg_ctl stop -m fast), keeping its data: StartServer
// brings it back. Tests use it to take the database away.
func (c *Cluster) StopServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run(filepath.Join(c.bin, "pg_ctl"), "stop", "-D", c.data(), "-m", "fast", "-w")
}

// PID is the running server's (the postmaster's) process id, 0 when it is not running:
// the bench reads its CPU time, and its backends' (its children), from /proc.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil || c.server.Process == nil {
		return 0
	}
	return c.server.Process.Pid
}

// Log is what the server logged so far, when its settings turned logging_collector on
// (the collector writes under the data directory, in log/, which Stop deletes); empty
// otherwise. A line saying why is all it holds when the log cannot be read.
func (c *Cluster) Log() []byte {
	files, err := filepath.Glob(filepath.Join(c.data(), "log", "*"))
	if err != nil {
		return []byte(err.Error() + "\n")
	}
	sort.Strings(files) // the default names carry their start time
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte(err.Error() + "\n")
		}
		all = append(all, b...)
	}
	return all
}

// Stop stops the server and deletes the cluster.
func (c *Cluster) Stop() {
	_ = c.StopServer()
	c.cleanup()
}

func (c *Cluster) cleanup() { os.RemoveAll(c.dir) }

// DSN is a key=value connection string for database db over the unix socket.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.Socket(), c.port, db)
}

// CreateDatabase creates database name, a copy of template when not empty (copying a
// migrated template is much faster than migrating each test's database), and returns its DSN.
func (c *Cluster) CreateDatabase(name, template string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to test cluster: %w", err)
	}
	defer conn.Close(ctx)
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// Query runs sql on the database dsn names and returns its rows, each as its columns'
// values (pgx's: bytea as []byte, bigint as int64): for tests that look at what a store
// wrote without going through the store.
func Query(ctx context.Context, dsn, sql string, args ...any) ([][]any, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// NewDatabase creates a database for one test, empty or a copy of template, and returns
// its DSN; the database is dropped when the test ends.
func (c *Cluster) NewDatabase(t testing.TB, template string) string {
	t.Helper()
	name := fmt.Sprintf("t_%d", c.n.Add(1))
	dsn, err := c.CreateDatabase(name, template)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			return // the server is down: the cluster goes anyway
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return dsn
}

// Env is what TestMain found: a running cluster, or why there is none.
type Env struct {
	Cluster *Cluster
	Err     error
}

// Main is TestMain for a package whose tests need the cluster: it starts one, runs the
// tests, stops it. When Postgres is missing, env.Err says why and Need skips (or fails).
func Main(m interface{ Run() int }, env *Env) int {
	c, err := Start()
	if err != nil {
		env.Err = err
		return m.Run()
	}
	env.Cluster = c
	defer c.Stop()
	return m.Run()
}

// Need returns the cluster, or skips t (fails it under PUSHBACKD_REQUIRE_TOOLS) when none runs.
func (e *Env) Need(t testing.TB) *Cluster {
	t.Helper()
	if e.Cluster != nil {
		return e.Cluster
	}
	if os.Getenv("PUSHBACKD_REQUIRE_TOOLS") != "" {
		t.Fatalf("postgres: %v (PUSHBACKD_REQUIRE_TOOLS is set)", e.Err)
	}
	t.Skipf("postgres: %v (set PUSHBACKD_REQUIRE_TOOLS=1 to make this a failure)", e.Err)
	return nil
}
