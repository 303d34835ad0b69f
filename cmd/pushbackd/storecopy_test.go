package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/postgres"
	"github.com/pushbackd/pushbackd/store/storetest"
)

// startPostgres starts a throwaway cluster for one test; the cmd tests need Postgres
// rarely, so none is started for the whole package.
func startPostgres(t *testing.T) *pgtest.Cluster {
	t.Helper()
	c, err := pgtest.Start()
	if err != nil {
		if errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("PUSHBACKD_REQUIRE_TOOLS") == "" {
			t.Skipf("postgres: %v (set PUSHBACKD_REQUIRE_TOOLS=1 to make this a failure)", err)
		}
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// seedFile writes a stopped instance's data file: the storetest mix, closed.
func seedFile(t *testing.T, dir string) (string, storetest.Seeded) {
	t.Helper()
	path := filepath.Join(dir, "pushbackd.db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sd := storetest.Seed(t, b, store.SystemClock{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return path, sd
}

func runBin(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func TestStoreCopyCommand(t *testing.T) {
	c := startPostgres(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	path, sd := seedFile(t, dir)
	dsn, err := c.CreateDatabase("copy", "")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PUSHBACKD_POSTGRES_DSN=" + dsn}
	cfg := filepath.Join(dir, "pushbackd.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("the copy prints progress per kind and a summary, and postgres then holds every run", func(t *testing.T) {
		code, out := runBin(t, bin, env, "store", "copy", "-from", "bbolt", "-to", "postgres", "-config", cfg, "-progress", "0")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		// The seed's one-second kv entry may or may not have expired by now: kv counts vary.
		for _, want := range []string{"copying " + path + " into postgres", "progress: saga versions 4 read, 4 new, kv 0 read",
			"done: saga versions 4 read, 4 new, kv ", "runs 7 read, 7 new, keys 2 read, 2 new\n", " new records\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		pg, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		for _, id := range sd.Runs {
			if _, err := pg.GetRun(context.Background(), id); err != nil {
				t.Errorf("run %s after the copy: %v", id, err)
			}
		}
	})

	t.Run("a second copy adds nothing and says 0 new", func(t *testing.T) {
		code, out := runBin(t, bin, env, "store", "copy", "-from", "bbolt", "-to", "postgres", "-from-file", path)
		if code != 0 || !strings.Contains(out, "runs 7 read, 0 new") || !strings.Contains(out, "0 new records") {
			t.Fatalf("exit %d, want 0 and 0 new:\n%s", code, out)
		}
	})

	t.Run("a config switched to postgres gives the dsn, with no environment", func(t *testing.T) {
		switched := filepath.Join(dir, "switched.yaml")
		yaml := "data_dir: " + dir + "\nadmin:\n  token: {value: " + strings.Repeat("t", 40) + "}\n" +
			"store:\n  driver: postgres\n  dsn: {value: '" + dsn + "'}\n"
		if err := os.WriteFile(switched, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := runBin(t, bin, []string{"PUSHBACKD_POSTGRES_DSN="}, "store", "copy", "-from", "bbolt", "-to", "postgres", "-config", switched)
		if code != 0 || !strings.Contains(out, "runs 7 read, 0 new") {
			t.Fatalf("exit %d, want 0 and the copy made before found again:\n%s", code, out)
		}
		if strings.Contains(out, dsn) {
			t.Errorf("the output shows the DSN:\n%s", out)
		}
	})

	t.Run("a file a running instance holds is refused", func(t *testing.T) {
		held, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		code, out := runBin(t, bin, env, "store", "copy", "-from", "bbolt", "-to", "postgres", "-from-file", path)
		if code != 1 || !strings.Contains(out, store.ErrLocked.Error()) || !strings.Contains(out, "stop that instance first") {
			t.Fatalf("exit %d, want 1 and the file in use:\n%s", code, out)
		}
	})

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"store without a subcommand is a usage error", env, []string{"store"}, 2, "usage: pushbackd store copy"},
		{"an unknown subcommand is a usage error", env, []string{"store", "move"}, 2, "usage: pushbackd store copy"},
		{"an unknown flag is a usage error", env, []string{"store", "copy", "-from", "bbolt", "-to", "postgres", "-bogus"}, 2, "flag provided but not defined"},
		{"another pair of stores is refused", env, []string{"store", "copy", "-from", "bbolt", "-to", "mysql"}, 2, "only -from bbolt -to postgres"},
		{"no DSN is refused", []string{"PUSHBACKD_POSTGRES_DSN="}, []string{"store", "copy", "-from", "bbolt", "-to", "postgres", "-from-file", path}, 2, "set PUSHBACKD_POSTGRES_DSN"},
		{"a missing file is an error, not an empty copy", env, []string{"store", "copy", "-from", "bbolt", "-to", "postgres", "-from-file", filepath.Join(dir, "nope.db")}, 1, "no such file"},
		{"an unreachable postgres is an error", nil, []string{"store", "copy", "-from", "bbolt", "-to", "postgres", "-from-file", path, "-dsn", "host=" + filepath.Join(dir, "nosock") + " dbname=x connect_timeout=2"}, 1, "store unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runBin(t, bin, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d and %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}
