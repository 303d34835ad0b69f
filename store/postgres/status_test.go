package postgres_test

import (
	"context"
	"testing"

	"github.com/pushbackd/pushbackd/store/postgres"
)

func TestDatabaseVersionReadsWithoutMigrating(t *testing.T) {
	c := env.Need(t)
	t.Run("a database pushbackd never migrated is at version 0, and stays unmigrated", func(t *testing.T) {
		dsn := c.NewDatabase(t, "")
		for range 2 {
			v, err := postgres.DatabaseVersion(context.Background(), dsn)
			if err != nil || v != 0 {
				t.Fatalf("version = %d, %v; want 0", v, err)
			}
		}
	})
	t.Run("a migrated database is at SchemaVersion and pings", func(t *testing.T) {
		dsn := newDB(t)
		v, err := postgres.DatabaseVersion(context.Background(), dsn)
		if err != nil || v != postgres.SchemaVersion() || v == 0 {
			t.Fatalf("version = %d, %v; want %d", v, err, postgres.SchemaVersion())
		}
		s := open(t, dsn, postgres.Options{})
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
