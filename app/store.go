package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/postgres"
)

// leader is a store shared by several instances that elects one of them for
// housekeeping (store/postgres). A store that is not one (bbolt) serves one instance,
// which always does its own housekeeping.
type leader interface {
	TryLead(ctx context.Context) (release func(), lost <-chan struct{}, ok bool, err error)
}

// pinger is a store on a server that /readyz checks with a ping rather than a write.
type pinger interface {
	Ping(ctx context.Context) error
}

// The wait between attempts to reach a database that is not there at start doubles from
// min to max.
const (
	openBackoffMin = 250 * time.Millisecond
	openBackoffMax = 10 * time.Second
)

// openStore opens the store cfg names. bbolt opens at once (a failure is fatal: it is a
// local file). Postgres is opened in the background, retried with backoff while it fails,
// so the process starts, /healthz answers, and /readyz and pushbacks answer 503 until the
// database is there; onOpen runs before the store serves anything.
func (a *App) openStore(cfg *config.Config, onOpen func(store.Store)) (*lazyStore, error) {
	s := newLazyStore()
	switch cfg.Server.Store.Driver {
	case config.StorePostgres:
		dsn := string(cfg.Server.Store.DSN.Secret.Reveal())
		if err := postgres.CheckDSN(dsn); err != nil {
			return nil, fmt.Errorf("store.dsn: %w", err)
		}
		go s.retryOpen(a.log, onOpen, func(ctx context.Context) (store.Store, error) {
			return postgres.Open(ctx, dsn, postgres.Options{})
		})
		a.log.Info("opening the run store", zap.String("driver", config.StorePostgres))
	default:
		path := filepath.Join(a.dataDir, "pushbackd.db")
		db, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		onOpen(db)
		s.publish(db)
		close(s.done)
		a.log.Info("run store open", zap.String("driver", config.StoreBolt), zap.String("path", path))
	}
	return s, nil
}

// lazyStore is the app's store.Store: until the backend is open, every call fails with
// store.ErrUnavailable (the gateway answers 503 + Retry-After, /readyz 503), then each
// call goes to the backend.
type lazyStore struct {
	inner   atomic.Pointer[store.Store]
	opened  chan struct{} // closed once inner is set
	lastErr atomic.Pointer[error]

	stop      chan struct{} // closed by Close: give up opening
	done      chan struct{} // closed when retryOpen returns
	closeOnce sync.Once
}

func newLazyStore() *lazyStore {
	return &lazyStore{opened: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
}

var (
	_ store.Store       = (*lazyStore)(nil)
	_ dispatch.Notifier = (*lazyStore)(nil)
)

func (s *lazyStore) publish(st store.Store) {
	s.inner.Store(&st)
	close(s.opened)
}

// retryOpen opens the backend until it succeeds or Close. Each failure is logged (the
// backend's errors never carry the DSN's password); the first success runs onOpen, then
// publishes the store.
func (s *lazyStore) retryOpen(log *zap.Logger, onOpen func(store.Store), open func(context.Context) (store.Store, error)) {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-s.done:
		}
	}()
	wait := openBackoffMin
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := open(actx)
		acancel()
		if err == nil {
			onOpen(st)
			s.publish(st)
			log.Info("run store open", zap.String("driver", config.StorePostgres))
			return
		}
		s.lastErr.Store(&err)
		if ctx.Err() != nil {
			return
		}
		log.Warn("cannot open the run store; pushbacks answer 503 until it opens, trying again",
			zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, openBackoffMax)
	}
}

// get is the open backend, or why there is none yet.
func (s *lazyStore) get() (store.Store, error) {
	if p := s.inner.Load(); p != nil {
		return *p, nil
	}
	if p := s.lastErr.Load(); p != nil {
		return nil, fmt.Errorf("the run store is not open yet: %w: %w", store.ErrUnavailable, *p)
	}
	return nil, fmt.Errorf("the run store is not open yet: %w", store.ErrUnavailable)
}

// Close gives up opening and closes the backend when it is open.
func (s *lazyStore) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	if p := s.inner.Load(); p != nil {
		return (*p).Close()
	}
	return nil
}

// TryLead elects the housekeeping leader on a shared store; an unshared store's only
// instance always leads.
func (s *lazyStore) TryLead(ctx context.Context) (func(), <-chan struct{}, bool, error) {
	st, err := s.get()
	if err != nil {
		return nil, nil, false, err
	}
	if l, ok := st.(leader); ok {
		return l.TryLead(ctx)
	}
	return func() {}, nil, true, nil
}

// Ping checks a backend on a server; one that is a local file (no pinger) has nothing
// to ping and answers errNoPing.
func (s *lazyStore) Ping(ctx context.Context) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	if p, ok := st.(pinger); ok {
		return p.Ping(ctx)
	}
	return errNoPing
}

var errNoPing = errors.New("the store has no ping")

// sharedPoll is how often the workers of an instance on a shared store claim without being
// nudged: the fallback for nudges that never come (LISTEN through PgBouncer's transaction
// pooling, a notification lost while the listening connection reconnected). The claim is
// one indexed query.
const sharedPoll = time.Second

// Notifications nudges once when the backend opens (runs may be waiting in it), then
// passes on the backend's own nudges when it has them (Postgres LISTEN/NOTIFY) and, on a
// shared store, nudges every sharedPoll as well: work another instance accepted is never
// left waiting for a notification that does not come.
func (s *lazyStore) Notifications(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	nudge := func() {
		select {
		case out <- struct{}{}:
		default: // one pending nudge is enough
		}
	}
	go func() {
		defer close(out)
		select {
		case <-ctx.Done():
			return
		case <-s.opened:
		}
		nudge()
		st := *s.inner.Load()
		var notes <-chan struct{}
		if n, ok := st.(dispatch.Notifier); ok {
			notes = n.Notifications(ctx)
		}
		var poll <-chan time.Time
		if _, shared := st.(leader); shared {
			t := time.NewTicker(sharedPoll)
			defer t.Stop()
			poll = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-notes:
				if !ok {
					notes = nil // ctx ended, or the backend stopped listening: poll on
					continue
				}
				nudge()
			case <-poll:
				nudge()
			}
		}
	}()
	return out
}

func (s *lazyStore) Get(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	st, err := s.get()
	if err != nil {
		return nil, false, err
	}
	return st.Get(ctx, namespace, key)
}

func (s *lazyStore) Put(ctx context.Context, namespace, key string, value []byte, opts store.PutOptions) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	return st.Put(ctx, namespace, key, value, opts)
}

func (s *lazyStore) Delete(ctx context.Context, namespace, key string) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	return st.Delete(ctx, namespace, key)
}

func (s *lazyStore) Create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	st, err := s.get()
	if err != nil {
		return store.CreateResult{}, err
	}
	return st.Create(ctx, run, opts)
}

func (s *lazyStore) Update(ctx context.Context, run *store.Run) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	return st.Update(ctx, run)
}

func (s *lazyStore) GetRun(ctx context.Context, id string) (*store.Run, error) {
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	return st.GetRun(ctx, id)
}

func (s *lazyStore) List(ctx context.Context, f store.Filter) ([]*store.Run, string, error) {
	st, err := s.get()
	if err != nil {
		return nil, "", err
	}
	return st.List(ctx, f)
}

func (s *lazyStore) Unfinished(ctx context.Context) ([]*store.Run, error) {
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	return st.Unfinished(ctx)
}

func (s *lazyStore) Prune(ctx context.Context, before time.Time, maxRuns int) (int, error) {
	st, err := s.get()
	if err != nil {
		return 0, err
	}
	return st.Prune(ctx, before, maxRuns)
}

func (s *lazyStore) Claim(ctx context.Context, owner string, max int, ttl time.Duration) (store.ClaimResult, error) {
	st, err := s.get()
	if err != nil {
		return store.ClaimResult{}, err
	}
	return st.Claim(ctx, owner, max, ttl)
}

func (s *lazyStore) Renew(ctx context.Context, leases []store.Lease, ttl time.Duration) ([]string, error) {
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	return st.Renew(ctx, leases, ttl)
}

func (s *lazyStore) Save(ctx context.Context, run *store.Run, lease store.Lease) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	return st.Save(ctx, run, lease)
}

func (s *lazyStore) Cancel(ctx context.Context, id string) (*store.Run, error) {
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	return st.Cancel(ctx, id)
}

func (s *lazyStore) Release(ctx context.Context, lease store.Lease) error {
	st, err := s.get()
	if err != nil {
		return err
	}
	return st.Release(ctx, lease)
}

// Runnable is 0 until the backend opens: nothing is known to wait yet, and the
// dispatcher starts without it (its claims fail, and are retried, until the open nudge).
func (s *lazyStore) Runnable(ctx context.Context) (int, error) {
	st, err := s.get()
	if err != nil {
		return 0, nil
	}
	return st.Runnable(ctx)
}

func (s *lazyStore) RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, bool, error) {
	st, err := s.get()
	if err != nil {
		return store.SagaVersion{}, false, err
	}
	return st.RecordSagaVersion(ctx, name, src, origin)
}

func (s *lazyStore) SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error) {
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	return st.SagaVersions(ctx, name)
}

func (s *lazyStore) SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error) {
	st, err := s.get()
	if err != nil {
		return store.SagaVersion{}, err
	}
	return st.SagaVersion(ctx, name, number)
}
