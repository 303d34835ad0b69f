package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
)

func (s *Store) Get(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := store.ValidKey(namespace, key); err != nil {
		return nil, false, err
	}
	if err := s.begin(ctx); err != nil {
		return nil, false, err
	}
	now := nanos(s.clock.Now())
	var v []byte
	var exp int64
	err := s.pool.QueryRow(ctx, "SELECT value, expires FROM kv WHERE ns = $1 AND key = $2", []byte(namespace), []byte(key)).Scan(&v, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, wrap("kv get", err)
	}
	if exp != 0 && now >= exp {
		return nil, false, nil
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

func (s *Store) Put(ctx context.Context, namespace, key string, value []byte, opts store.PutOptions) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	now := nanos(s.clock.Now())
	var exp int64
	if opts.TTL > 0 {
		exp = now + int64(opts.TTL)
	}
	if value == nil {
		value = []byte{}
	}
	return s.tx(ctx, "kv put", func(tx pgx.Tx) error {
		// The count row is the namespace's lock: check and write are one step.
		if _, err := tx.Exec(ctx, "INSERT INTO kv_counts (ns, n) VALUES ($1, 0) ON CONFLICT DO NOTHING", []byte(namespace)); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRow(ctx, "SELECT n FROM kv_counts WHERE ns = $1 FOR UPDATE", []byte(namespace)).Scan(&n); err != nil {
			return err
		}
		if opts.MaxEntries > 0 && n >= int64(opts.MaxEntries) {
			var held bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM kv WHERE ns = $1 AND key = $2)", []byte(namespace), []byte(key)).Scan(&held); err != nil {
				return err
			}
			if !held {
				// Expired entries must not keep a namespace full.
				tag, err := tx.Exec(ctx, "DELETE FROM kv WHERE ns = $1 AND expires <> 0 AND expires <= $2", []byte(namespace), now)
				if err != nil {
					return err
				}
				n -= tag.RowsAffected()
				if _, err := tx.Exec(ctx, "UPDATE kv_counts SET n = $2 WHERE ns = $1", []byte(namespace), n); err != nil {
					return err
				}
				if n >= int64(opts.MaxEntries) {
					return fmt.Errorf("%w: namespace %s holds %d entries, the limit is %d", store.ErrKVFull, namespace, n, opts.MaxEntries)
				}
			}
		}
		var inserted bool
		err := tx.QueryRow(ctx, `INSERT INTO kv (ns, key, value, expires) VALUES ($1, $2, $3, $4)
			ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
			RETURNING xmax = 0`, []byte(namespace), []byte(key), value, exp).Scan(&inserted)
		if err != nil {
			return err
		}
		if inserted {
			_, err = tx.Exec(ctx, "UPDATE kv_counts SET n = n + 1 WHERE ns = $1", []byte(namespace))
		}
		return err
	})
}

func (s *Store) Delete(ctx context.Context, namespace, key string) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	return s.tx(ctx, "kv delete", func(tx pgx.Tx) error {
		// The count row first, as Put takes them: the other order deadlocks with a Put.
		if _, err := tx.Exec(ctx, "SELECT 1 FROM kv_counts WHERE ns = $1 FOR UPDATE", []byte(namespace)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `WITH d AS (DELETE FROM kv WHERE ns = $1 AND key = $2 RETURNING 1)
			UPDATE kv_counts SET n = n - (SELECT count(*) FROM d) WHERE ns = $1 AND EXISTS (SELECT 1 FROM d)`, []byte(namespace), []byte(key))
		return err
	})
}

// sweepKV deletes expired entries, keeping the counts.
func sweepKV(ctx context.Context, tx pgx.Tx, now int64) error {
	_, err := tx.Exec(ctx, `WITH d AS (DELETE FROM kv WHERE expires <> 0 AND expires <= $1 RETURNING ns),
		c AS (SELECT ns, count(*) AS k FROM d GROUP BY ns)
		UPDATE kv_counts SET n = kv_counts.n - c.k FROM c WHERE kv_counts.ns = c.ns`, now)
	return err
}
