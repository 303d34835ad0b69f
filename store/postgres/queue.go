package postgres

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
)

// Claim takes due runs with FOR UPDATE SKIP LOCKED over runs_due, so concurrent claimers,
// in this process or another, each take different runs without waiting on each other.
func (s *Store) Claim(ctx context.Context, owner string, limit int, ttl time.Duration) (store.ClaimResult, error) {
	if err := store.CheckClaimArgs(owner, ttl); err != nil {
		return store.ClaimResult{}, err
	}
	limit = max(limit, 1)
	now := s.clock.Now()
	var res store.ClaimResult
	err := s.tx(ctx, "claim runs", func(tx pgx.Tx) error {
		res = store.ClaimResult{}
		rows, err := tx.Query(ctx, `SELECT id, rec, lease_token FROM runs
			WHERE due_at IS NOT NULL AND NOT parked AND due_at <= $1
			ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`, nanos(now), limit)
		if err != nil {
			return err
		}
		type got struct {
			r     *store.Run
			token int64
		}
		var gs []got
		for rows.Next() {
			var id, rec []byte
			var token int64
			if err := rows.Scan(&id, &rec, &token); err != nil {
				rows.Close()
				return err
			}
			r, err := decode(id, rec, true)
			if err != nil {
				rows.Close()
				return err
			}
			gs = append(gs, got{r, token})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		exp := now.Add(ttl)
		for _, g := range gs {
			store.ClaimRun(g.r, now)
			l := store.Lease{RunID: g.r.ID, Owner: owner, Token: uint64(g.token) + 1, Expires: exp}
			id, _ := store.ParseRunID(g.r.ID)
			if _, err := tx.Exec(ctx, `UPDATE runs SET status = 'running', due_at = $2, lease_owner = $3,
				lease_token = $4, lease_expires = $2, rec = $5 WHERE id = $1`,
				id[:], nanos(exp), []byte(owner), int64(l.Token), store.EncodeRun(nil, g.r, g.r.Request.Body)); err != nil {
				return err
			}
			res.Runs = append(res.Runs, store.Claimed{Run: g.r, Lease: l})
		}
		var next *int64
		if err := tx.QueryRow(ctx, `SELECT min(due_at) FROM runs WHERE due_at IS NOT NULL AND NOT parked`).Scan(&next); err != nil {
			return err
		}
		if next != nil {
			res.Next = store.NanosTime(*next)
		}
		return nil
	})
	return res, err
}

func (s *Store) Renew(ctx context.Context, leases []store.Lease, ttl time.Duration) ([]string, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew leases: %w: ttl %s", store.ErrInvalid, ttl)
	}
	exp := nanos(s.clock.Now().Add(ttl))
	// The rows are locked in id order, as the save batch locks its rows (ORDER BY id FOR
	// UPDATE): in the dispatcher's order (a map's) the two deadlocked, and every worker
	// whose run either held waited out deadlock_timeout (1 s) before Postgres broke it.
	type renewal struct {
		id store.RunID
		l  store.Lease
	}
	sorted := make([]renewal, 0, len(leases))
	for _, l := range leases {
		id, err := store.ParseRunID(l.RunID)
		if err != nil {
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		sorted = append(sorted, renewal{id, l})
	}
	slices.SortFunc(sorted, func(a, b renewal) int { return bytes.Compare(a.id[:], b.id[:]) })
	var lost []string
	err := s.tx(ctx, "renew leases", func(tx pgx.Tx) error {
		lost = nil
		for _, r := range sorted {
			tag, err := tx.Exec(ctx, `UPDATE runs SET lease_expires = $2, due_at = $2 WHERE id = $1
				AND status = 'running' AND lease_token = $3 AND lease_owner = $4 AND lease_expires <> 0`,
				r.id[:], exp, int64(r.l.Token), []byte(r.l.Owner))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				lost = append(lost, r.l.RunID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lost, nil
}

// Cancel applies store.RequestCancel in one transaction; write files the run where its new
// status puts it (a waiting run due at once, a cancelled one final, unparking the next run
// on its serialize_by key).
func (s *Store) Cancel(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("cancel run: %w", err)
	}
	now := s.clock.Now()
	var out store.Run
	err = s.tx(ctx, "cancel run", func(tx pgx.Tx) error {
		stored, _, err := lockRun(ctx, tx, rid, true)
		if err != nil {
			return err
		}
		if err := store.RequestCancel(stored, now); err != nil {
			return err
		}
		out = *stored
		return s.write(ctx, tx, stored, now)
	})
	if err != nil {
		return nil, err
	}
	out.State, out.Result, out.Request.Body = nil, nil, nil
	return &out, nil
}

func (s *Store) Release(ctx context.Context, lease store.Lease) error {
	id, err := store.ParseRunID(lease.RunID)
	if err != nil {
		return fmt.Errorf("release run: %w", err)
	}
	now := nanos(s.clock.Now())
	return s.tx(ctx, "release run", func(tx pgx.Tx) error {
		stored, st, err := lockRun(ctx, tx, id, false)
		if err != nil {
			return err
		}
		if !st.held(stored, lease) {
			return store.LeaseLost(lease)
		}
		if _, err := tx.Exec(ctx, `UPDATE runs SET lease_owner = ''::bytea, lease_expires = 0, due_at = $2 WHERE id = $1`,
			id[:], now); err != nil {
			return err
		}
		return notify(ctx, tx)
	})
}

func (s *Store) Runnable(ctx context.Context) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	var n, rows int
	err := s.pool.QueryRow(ctx, runnableSQL).Scan(&n, &rows)
	return n, wrap("runnable", err)
}
