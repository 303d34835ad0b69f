package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaderLock is the session-level advisory lock the housekeeping leader holds.
var leaderLock = keyLock("pushbackd:leader")

// TryLead tries to become the one instance that does housekeeping (pruning, sweeping
// expired keys). It takes a session-level advisory lock on a connection of its own, taken
// out of the pool: the lock lasts as long as that connection, so when the leader's process
// dies, Postgres frees it and the next instance's TryLead succeeds. ok is false when
// another session leads. lost is closed when the connection holding the lock breaks (the
// instance no longer leads); release gives the lock up.
func (s *Store) TryLead(ctx context.Context) (release func(), lost <-chan struct{}, ok bool, err error) {
	if err := s.begin(ctx); err != nil {
		return nil, nil, false, err
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, false, wrap("try lead", err)
	}
	conn := pc.Hijack() // the lock lives with this connection: keep it out of the pool
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", leaderLock).Scan(&got); err != nil || !got {
		_ = conn.Close(context.Background())
		return nil, nil, false, wrap("try lead", err)
	}
	done := make(chan struct{})
	gone := make(chan struct{})
	go watchLead(conn, done, gone)
	var once sync.Once
	key := new(byte)
	release = func() {
		once.Do(func() {
			close(done)
			<-gone
			s.leadMu.Lock()
			delete(s.leads, key)
			s.leadMu.Unlock()
		})
	}
	s.leadMu.Lock()
	if s.leads == nil {
		s.leads = map[*byte]func(){}
	}
	s.leads[key] = release
	s.leadMu.Unlock()
	return release, gone, true, nil
}

// leadPing is how often the leader checks that its lock's connection is alive.
const leadPing = time.Second

func watchLead(conn *pgx.Conn, done <-chan struct{}, gone chan<- struct{}) {
	defer close(gone)
	defer conn.Close(context.Background()) // closing the session frees the lock
	t := time.NewTicker(leadPing)
	defer t.Stop()
	for {
		select {
		case <-done:
			// Unlocked before the session closes: closing frees the lock too, but only
			// once the server has noticed, so another instance (or a test) trying to
			// lead right after a graceful release could still find it held.
			ctx, cancel := context.WithTimeout(context.Background(), leadPing)
			_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", leaderLock)
			cancel()
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leadPing)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// Notifications nudges a worker pool when another process (or this one) makes a run due
// at once: a create, a suspension, a release, a final run unparking its successor. Each
// such commit NOTIFYs pushbackd_due; a dedicated connection LISTENs. The channel holds at
// most one pending nudge and closes when ctx ends. After the connection breaks it
// reconnects and nudges once, since notifications sent meanwhile are lost: callers keep
// their due-time timer (ClaimResult.Next) and poll; this only makes them quicker.
// LISTEN needs a session: it does not work through PgBouncer's transaction pooling, where
// the pool falls back to its timer.
func (s *Store) Notifications(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	nudge := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(ch)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil && !s.closed.Load() {
			err := s.listen(ctx, nudge)
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("postgres notifications: reconnecting", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			nudge()
		}
	}()
	return ch
}

func (s *Store) listen(ctx context.Context, nudge func()) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		nudge()
	}
}
