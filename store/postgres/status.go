package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ping checks that the pool reaches the server: /readyz asks it, with a short deadline.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	return wrap("ping postgres", s.pool.Ping(ctx))
}

// DatabaseVersion connects to dsn and reads the schema version the database is at (0 for
// a database pushbackd never migrated), reading only: `pushbackd validate` shows it beside
// SchemaVersion without touching the database. A server it cannot reach is
// store.ErrUnavailable.
func DatabaseVersion(ctx context.Context, dsn string) (int64, error) {
	// Parsed as Open parses it: pool settings (pool_max_conns) are the pool's, not the
	// server's, which would refuse them as unknown parameters.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return 0, fmt.Errorf("postgres dsn: %w", err) // pgx leaves the password out
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return 0, wrap("connect to postgres", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v int64
	err = conn.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM pushbackd_schema_version WHERE is_applied`).Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: never migrated
		return 0, nil
	}
	if err != nil {
		return 0, wrap("read the schema version", err)
	}
	return v, nil
}

// CheckDSN parses dsn as Open does, without connecting: a malformed one is a start-up
// error (and a validate error), not something to retry. The error leaves the password out.
func CheckDSN(dsn string) error {
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return fmt.Errorf("postgres dsn: %w", err)
	}
	return nil
}
