package pgtest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/internal/pgtest"
)

var env pgtest.Env

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &env)) }

func TestClusterServesOneDatabasePerTest(t *testing.T) {
	c := env.Need(t)
	ctx := context.Background()
	start := time.Now()
	a, b := c.NewDatabase(t, ""), c.NewDatabase(t, "")
	t.Logf("two databases in %s", time.Since(start))
	if a == b {
		t.Fatalf("two tests got one database: %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	if _, err := conn2.Exec(ctx, "SELECT * FROM only_in_a"); err == nil {
		t.Fatal("a table made in one test's database is visible in another's")
	}
}

func TestStopAndStartKeepData(t *testing.T) {
	c := env.Need(t)
	ctx := context.Background()
	dsn := c.NewDatabase(t, "")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT * FROM kept"); err != nil {
		t.Fatalf("table lost across a restart: %v", err)
	}
}

func TestLogHoldsWhatTheCollectorWrote(t *testing.T) {
	env.Need(t) // Postgres is installed
	c, err := pgtest.Start("logging_collector=on", "log_min_duration_statement=100")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.2), 'slow-statement-marker'"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(c.Log()), "slow-statement-marker") {
		if time.Now().After(deadline) {
			t.Fatalf("the slow statement is not in the log after 10 s; the log:\n%s", c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := env.Need(t).Log(); len(got) != 0 {
		t.Fatalf("a cluster without the collector has a log: %q", got)
	}
}
