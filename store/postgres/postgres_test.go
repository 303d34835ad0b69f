package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
	"github.com/pushbackd/pushbackd/store/storetest"
)

var env pgtest.Env

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &env)) }

func open(t testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPostgresStore(t *testing.T) {
	c := env.Need(t)
	storetest.TestStore(t, func(t *testing.T, clock store.Clock) store.Store {
		return open(t, c.NewDatabase(t), postgres.Options{Clock: clock})
	})
}
