// Package app assembles a running pushbackd from its configuration: logger, config
// snapshot, saga runner and listeners. It has Start, Addr and Stop so tests run real
// instances on port 0 without signals; cmd/pushbackd only turns signals into a context.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/console"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/metrics"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/tracing"
)

// Options say where the config is and what a caller overrides.
type Options struct {
	ConfigPath string
	// Listen overrides the config's listen address (tests pass 127.0.0.1:0).
	Listen string
	// Logger overrides the logger built from the config's log section.
	Logger *zap.Logger
	// DataDir overrides the config's data_dir.
	DataDir string
	// AdminListen overrides admin.listen (tests pass 127.0.0.1:0).
	AdminListen string
	// Tracing traces requests, runs and steps; nil: none. Run builds it from the OTEL_*
	// environment (tracing.FromEnv) when it is nil.
	Tracing trace.TracerProvider
	// ConfigApplied, when set, is called after the configuration is loaded at start and
	// after each reload that applied one. serve measures the configuration's heap then,
	// for the garbage collector's memory limit.
	ConfigApplied func()
}

// App is one pushbackd process.
type App struct {
	opts    Options
	log     *zap.Logger
	current atomic.Pointer[config.Config]
	gateway *gateway.Gateway
	store   store.Store // the backend is chosen once, in New
	lazy    *lazyStore  // the same store, with what only the app asks of it
	ready   readyCache
	// stopping is set when Stop begins: /readyz answers 503 through the shutdown grace,
	// while the pushback listener no longer takes connections.
	stopping atomic.Bool
	runs     *dispatch.Dispatcher
	pinned   *gateway.Pinned // the saga versions resumed runs started on
	engine   *saga.Engine
	metrics  *metrics.Metrics
	admin    *admin.API
	jobs     *jobRunner
	dataDir  string

	pushback listener // the senders' listener
	adminL   listener // the operators' listener
	// own is where both listeners are, for the egress rule that sagas never call them: the
	// configured addresses until they are bound, then the bound ones (port 0 resolved).
	own    atomic.Pointer[[]saga.Listener]
	bg     sync.WaitGroup
	cancel context.CancelFunc

	reloadMu   sync.Mutex // one reload or saga edit at a time
	lastReload reloadOutcome
	reloadSeen sync.Mutex // guards lastReload for readers
}

type reloadOutcome struct {
	at  time.Time
	err error
}

// New loads and validates the configuration; it does not listen yet.
func New(opts Options) (*App, error) {
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		if log, err = NewLogger(cfg.Server.Log); err != nil {
			return nil, err
		}
	}
	a := &App{opts: opts, log: log, dataDir: cfg.Server.DataDir}
	a.current.Store(cfg)
	a.setOwn(cmp.Or(opts.Listen, cfg.Server.Listen), cmp.Or(opts.AdminListen, cfg.Server.Admin.Listen))
	logEgressWarnings(log, cfg)
	if opts.DataDir != "" {
		a.dataDir = opts.DataDir
	}
	// Saga versions are recorded before the store serves anything: a resumed run's
	// invocation is built from them.
	lazy, err := a.openStore(cfg, func(st store.Store) { a.recordSagaVersionsIn(context.Background(), st, a.Current(), "start") })
	if err != nil {
		return nil, err
	}
	a.store, a.lazy = lazy, lazy
	token, err := a.adminToken(cfg)
	if err != nil {
		return nil, errors.Join(err, a.store.Close())
	}
	lim := cfg.Server.Limits
	a.pinned = gateway.NewPinned(a.store, 0)
	var runs *dispatch.Dispatcher
	a.metrics = metrics.New(func() int { return runs.QueueDepth() })
	runs = dispatch.New(dispatch.Options{
		Observer:  a.metrics,
		Store:     a.store,
		Rebuild:   a.rebuild,
		Logger:    log.Named("runs"),
		Workers:   lim.Workers,
		QueueSize: lim.Queue,
		LeaseTTL:  lim.LeaseTTL,
		Tracing:   opts.Tracing,
		// The run records the default answer the gateway sends, a failed run's 502 too.
		SyncAnswer: gateway.SyncAnswer,
	})
	a.runs = runs
	a.metrics.QueueLimit(runs.QueueLimit())
	a.engine = saga.NewEngine(saga.EngineOptions{
		Logger: log.Named("saga"),
		KV:     a.store,
		// egress.allow travels with each run (Invocation.Egress), so a reload applies it.
		// Whatever it allows, runs never reach these two listeners.
		Listeners:    a.ownListeners,
		Checkpointer: a.runs,
		// Every worker may be calling the same downstream.
		IdleConnsPerHost: lim.Workers,
		KVLimits:         lim.KVLimits(),
		MaxOutputBytes:   cfg.Server.History.MaxOutputBytes,
	})
	clients, _ := gateway.NewFailureLimiters(lim.AuthFailures)
	a.gateway = gateway.New(gateway.Options{Config: a, Runs: a.runs, Observer: a.metrics, ClientLimiter: clients, Logger: log, Tracing: opts.Tracing})
	a.jobs = newJobRunner(a)
	var consoleErr error
	newConsole := func(api http.Handler) http.Handler {
		c, err := console.New(console.Options{API: api, Token: token, Logger: log.Named("console")})
		consoleErr = err
		return c
	}
	if a.admin, err = admin.New(admin.Options{Control: a, Store: a.store, Token: token, Limiter: clients, Metrics: a.metrics.Handler(), Logger: log.Named("admin"), Rejections: a.gateway.Rejections(), Jobs: a.jobs, Console: newConsole}); err == nil {
		err = consoleErr
	}
	if err != nil {
		return nil, errors.Join(err, a.store.Close())
	}
	a.setReload(nil)
	if opts.ConfigApplied != nil {
		opts.ConfigApplied()
	}
	return a, nil
}

// Current is the configuration new requests run under.
func (a *App) Current() *config.Config { return a.current.Load() }

// Start resumes interrupted runs, then listens on both addresses and serves in the
// background.
func (a *App) Start(ctx context.Context) error {
	cfg := a.Current()
	if err := a.runs.Start(ctx, a.engine); err != nil {
		return err
	}
	lim := cfg.Server.Limits
	pushbackTLS, err := tlsConfig(cfg.Server.TLS, a.log)
	if err != nil {
		return errors.Join(fmt.Errorf("tls: %w", err), a.runs.Stop(ctx))
	}
	adminTLS, err := tlsConfig(cfg.Server.Admin.TLS, a.log)
	if err != nil {
		return errors.Join(fmt.Errorf("admin.tls: %w", err), a.runs.Stop(ctx))
	}
	pushbackAddr := cmp.Or(a.opts.Listen, cfg.Server.Listen)
	if err := a.pushback.listen(ctx, pushbackAddr, &http.Server{
		Handler:           a.gateway,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		// A sync saga may take up to sync_timeout before its answer is written.
		WriteTimeout:   lim.SyncTimeout + 10*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: lim.MaxHeaderBytes,
		ErrorLog:       zap.NewStdLog(a.log.Named("http")),
	}, pushbackTLS); err != nil {
		return errors.Join(err, a.runs.Stop(ctx))
	}
	adminAddr := cmp.Or(a.opts.AdminListen, cfg.Server.Admin.Listen)
	if err := a.adminL.listen(ctx, adminAddr, &http.Server{
		Handler:           a.admin,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      time.Minute,
		ErrorLog:          zap.NewStdLog(a.log.Named("admin-http")),
	}, adminTLS); err != nil {
		return errors.Join(err, a.pushback.stop(ctx), a.runs.Stop(ctx))
	}
	a.setOwn(a.Addr(), a.AdminAddr())
	a.jobs.start()
	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	wt := a.newWatcher()
	a.bg.Add(2)
	go func() { defer a.bg.Done(); a.housekeeping(bg) }()
	go func() { defer a.bg.Done(); a.watch(bg, wt) }()
	a.log.Info("pushbackd listening", zap.String("addr", a.Addr()), zap.String("admin", a.AdminAddr()),
		zap.String("config", cfg.File), zap.Int("partners", len(cfg.Partners)), zap.Int("sagas", len(cfg.Sagas)))
	return nil
}

// setOwn records the listeners' addresses; one that is not an IP:port (a host name, before
// it is bound) is left out.
func (a *App) setOwn(pushback, admin string) {
	var own []saga.Listener
	for _, l := range []struct{ name, addr string }{{"pushback", pushback}, {"admin", admin}} {
		if ap, err := netip.ParseAddrPort(l.addr); err == nil && ap.Port() != 0 {
			own = append(own, saga.Listener{Name: l.name, Addr: ap})
		}
	}
	a.own.Store(&own)
}

func (a *App) ownListeners() []saga.Listener {
	if p := a.own.Load(); p != nil {
		return *p
	}
	return nil
}

// logEgressWarnings logs each setting whose URL the egress policy refuses.
func logEgressWarnings(log *zap.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings {
		log.Warn("a setting's URL is refused by the egress policy", zap.String("at", w.Error()))
	}
}

// Addr is the address the pushback listener is bound to.
func (a *App) Addr() string { return a.pushback.addr() }

// AdminAddr is the address the admin listener is bound to.
func (a *App) AdminAddr() string { return a.adminL.addr() }

// Stop stops accepting, lets requests in flight finish within ctx, waits for sync sagas
// that outlived their request, stops the workers (runs still executing when ctx ends are
// interrupted and resume from their last checkpoint at the next start) and, once every
// worker has returned, closes the store. Queued and waiting runs stay on disk. Runs
// interrupted are reported in the error, as a *dispatch.InterruptedError.
func (a *App) Stop(ctx context.Context) error {
	interrupted, err := a.stop(ctx)
	if interrupted != nil {
		return errors.Join(err, interrupted)
	}
	return err
}

// stop is Stop with the runs interrupted (nil when none were) apart from what failed.
func (a *App) stop(ctx context.Context) (*dispatch.InterruptedError, error) {
	a.stopping.Store(true)
	if a.cancel == nil {
		return nil, a.store.Close()
	}
	err := a.pushback.stop(ctx)
	if werr := a.gateway.Wait(ctx); werr != nil {
		err = errors.Join(err, fmt.Errorf("sync sagas still running at shutdown: %w", werr))
	}
	a.jobs.stop() // before the workers: a job's replays go to them
	var interrupted *dispatch.InterruptedError
	if rerr := a.runs.Stop(ctx); !errors.As(rerr, &interrupted) {
		err = errors.Join(err, rerr)
	}
	err = errors.Join(err, a.adminL.stop(ctx))
	a.cancel()
	a.bg.Wait()
	err = errors.Join(err, a.store.Close())
	_ = a.log.Sync()
	return interrupted, err
}

// Close releases the store of an app that was never started.
func (a *App) Close() error { return a.store.Close() }

// leadRetry is how often an instance that does not lead housekeeping tries to take over.
// Each try opens a database connection (the lock lives with it), so not every second.
const leadRetry = 3 * time.Second

// housekeeping prunes history and sweeps expired keys (Prune) on one instance: the leader
// the store elects among the instances sharing it; with bbolt, this one. When the lead is
// lost (the leader's connection broke), it stops and tries again later, as does every
// instance that is not the leader, so another takes over when the leader dies.
func (a *App) housekeeping(ctx context.Context) {
	for {
		release, lost, ok, err := a.lazy.TryLead(ctx)
		switch {
		case ctx.Err() != nil:
			if ok {
				release()
			}
			return
		case err != nil:
			a.log.Debug("cannot take part in the housekeeping election yet", zap.Error(err))
		case ok:
			if lost != nil {
				a.log.Info("leading housekeeping: this instance prunes history and sweeps expired keys")
			}
			a.pruneLoop(ctx, lost)
			release()
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("lost the housekeeping lead; trying again")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leadRetry):
		}
	}
}

// pruneLoop enforces history.retention and history.max_runs in the background, with the
// values of the configuration current at each pass, until ctx ends or lost closes.
func (a *App) pruneLoop(ctx context.Context, lost <-chan struct{}) {
	t := time.NewTicker(a.Current().Server.History.PruneInterval)
	defer t.Stop()
	for {
		h := a.Current().Server.History
		n, err := a.store.Prune(ctx, time.Now().Add(-h.Retention), h.MaxRuns)
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Warn("pruning run history failed", zap.Error(err))
		case n > 0:
			a.log.Info("pruned run history", zap.Int("runs", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-lost:
			return
		case <-t.C:
		}
	}
}

// Run starts the app, reloads the configuration on every value from reload (SIGHUP), and
// stops it when ctx ends.
func Run(ctx context.Context, opts Options, reload <-chan os.Signal) (err error) {
	if opts.Tracing == nil {
		tp, shutdown, terr := tracing.FromEnv(ctx)
		if terr != nil {
			return terr
		}
		opts.Tracing = tp
		defer func() {
			// Flush the spans still buffered, but never hang the exit on a dead collector.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if serr := shutdown(sctx); serr != nil {
				err = errors.Join(err, fmt.Errorf("flushing traces: %w", serr))
			}
		}()
	}
	a, err := New(opts)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return errors.Join(err, a.Close())
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-reload:
			_ = a.Reload(ctx, "sighup")
		}
	}
	a.log.Info("shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), a.Current().Server.Limits.SyncTimeout+5*time.Second)
	defer cancel()
	// Runs interrupted when the grace ran out are part of a graceful stop (they resume at
	// the next start): logged, not an exit status a service manager would count as a failure.
	interrupted, err := a.stop(stopCtx)
	if interrupted != nil {
		a.log.Warn("stopped with runs interrupted", zap.Int("runs", interrupted.Runs), zap.Error(interrupted))
	}
	return err
}

// NewLogger builds the zap logger the log section describes.
func NewLogger(c config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.DisableStacktrace = true
	zc.Sampling = nil // never drop the one auth-failure line someone is looking for
	return zc.Build()
}
