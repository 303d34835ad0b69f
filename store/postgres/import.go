package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
)

// Postgres as the destination of a copy (store.Importer): each batch is one transaction
// of inserts that do nothing on a conflict, so a copy run again adds nothing and changes
// nothing, and one interrupted resumes where its last committed batch ended.

var _ store.Importer = (*Store)(nil)

// ImportRuns inserts runs in the order given, which is the order serialize_by runs keep
// here (seq). A running run comes without its lease and due at once; any other unfinished
// run is due as its status says (a waiting one at WakeAt), parked when it was parked.
func (s *Store) ImportRuns(ctx context.Context, runs []store.ExportedRun) (int, error) {
	added := 0
	err := s.tx(ctx, "import runs", func(tx pgx.Tx) error {
		added = 0
		now := s.clock.Now()
		wake := false
		for _, e := range runs {
			r := e.Run
			id, err := store.ParseRunID(r.ID)
			if err != nil {
				return err
			}
			if !r.Status.Valid() {
				return fmt.Errorf("%w: run %s: status %q", store.ErrInvalid, r.ID, r.Status)
			}
			var due *int64
			parked := e.Parked && r.Status.Runnable()
			if !r.Status.Final() {
				d := nanos(store.DueAt(r, now, now)) // a running run: as if its lease expired now
				due = &d
			}
			tag, err := tx.Exec(ctx, `INSERT INTO runs (id, partner, site, endpoint, status, saga, idem_key, replay_of,
				retry_of, serialize_key, debounce_key, final, parked, due_at, rec)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (id) DO NOTHING`,
				id[:], []byte(r.Partner), []byte(r.Site), []byte(r.Endpoint), string(r.Status), []byte(r.Saga),
				[]byte(r.IdempotencyKey), []byte(r.ReplayOf), []byte(r.RetryOf), []byte(r.SerializeKey), []byte(r.DebounceKey),
				r.Status.Final(), parked, due, store.EncodeRun(nil, r, r.Request.Body))
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 {
				added++
				wake = wake || (due != nil && !parked)
			}
		}
		if wake {
			return notify(ctx, tx)
		}
		return nil
	})
	return added, err
}

// ImportRunKeys inserts idempotency and message keys with their expiry.
func (s *Store) ImportRunKeys(ctx context.Context, keys []store.RunKey) (int, error) {
	added := 0
	err := s.tx(ctx, "import keys", func(tx pgx.Tx) error {
		added = 0
		for _, k := range keys {
			id, err := store.ParseRunID(k.RunID)
			if err != nil {
				return err
			}
			if k.Key == "" {
				return store.ErrEmptyKey
			}
			tag, err := tx.Exec(ctx, `INSERT INTO run_keys (key, run_id, expires) VALUES ($1, $2, $3)
				ON CONFLICT (key) DO NOTHING`, []byte(k.Key), id[:], nanos(k.Expires))
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
		}
		return nil
	})
	return added, err
}

// ImportKV inserts kv entries with their expiry and counts them in their namespace's
// entry count, as Put does.
func (s *Store) ImportKV(ctx context.Context, entries []store.KVEntry) (int, error) {
	added := 0
	err := s.tx(ctx, "import kv", func(tx pgx.Tx) error {
		added = 0
		for _, e := range entries {
			if err := store.ValidKey(e.Namespace, e.Key); err != nil {
				return err
			}
			value := e.Value
			if value == nil {
				value = []byte{}
			}
			tag, err := tx.Exec(ctx, `INSERT INTO kv (ns, key, value, expires) VALUES ($1, $2, $3, $4)
				ON CONFLICT (ns, key) DO NOTHING`, []byte(e.Namespace), []byte(e.Key), value, nanos(e.Expires))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			added++
			if _, err := tx.Exec(ctx, `INSERT INTO kv_counts (ns, n) VALUES ($1, 1)
				ON CONFLICT (ns) DO UPDATE SET n = kv_counts.n + 1`, []byte(e.Namespace)); err != nil {
				return err
			}
		}
		return nil
	})
	return added, err
}

// ImportSagaVersions inserts saga versions with their numbers, times and origins. The
// hash is computed from the source, not taken on trust, so a damaged source file cannot
// plant a version whose hash lies.
func (s *Store) ImportSagaVersions(ctx context.Context, versions []store.SagaVersion) (int, error) {
	added := 0
	err := s.tx(ctx, "import saga versions", func(tx pgx.Tx) error {
		added = 0
		for _, v := range versions {
			if err := store.ValidSagaVersion(v.Name, v.Source, v.Origin); err != nil {
				return err
			}
			if v.Number <= 0 {
				return fmt.Errorf("%w: saga %s: version number %d", store.ErrInvalid, v.Name, v.Number)
			}
			hash := store.HexHash(store.SagaHash(v.Source))
			if v.Hash != "" && v.Hash != hash {
				return fmt.Errorf("%w: saga %s version %d: the source does not match its hash", store.ErrInvalid, v.Name, v.Number)
			}
			tag, err := tx.Exec(ctx, `INSERT INTO saga_versions (name, number, hash, source, created, origin)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, number) DO NOTHING`,
				v.Name, v.Number, hash, v.Source, nanos(v.Created), []byte(v.Origin))
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
		}
		return nil
	})
	return added, err
}
