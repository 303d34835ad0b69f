// Package app assembles a running pushbackd from its configuration: logger, config
// snapshot, saga runner and listeners. It has Start, Addr and Stop so tests run real
// instances on port 0 without signals; cmd/pushbackd only turns signals into a context.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
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
}

// App is one pushbackd process.
type App struct {
	opts    Options
	log     *zap.Logger
	current atomic.Pointer[config.Config]
	gateway *gateway.Gateway
	store   *store.Bolt
	runs    *dispatch.Dispatcher
	engine  *saga.Engine
	server  *http.Server
	ln      net.Listener
	served  chan error
	pruned  chan struct{}
	cancel  context.CancelFunc
	fresh   sync.Map // connections in http.StateNew: opened, nothing read yet
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
	a := &App{opts: opts, log: log}
	a.current.Store(cfg)
	dataDir := cfg.Server.DataDir
	if opts.DataDir != "" {
		dataDir = opts.DataDir
	}
	path := filepath.Join(dataDir, "pushbackd.db")
	if a.store, err = store.OpenBolt(path, store.BoltOptions{}); err != nil {
		return nil, err
	}
	lim := cfg.Server.Limits
	a.runs = dispatch.New(dispatch.Options{
		Store:     a.store,
		Rebuild:   func(run *store.Run) (*saga.Invocation, error) { return gateway.InvocationForRun(a.Current(), run) },
		Logger:    log.Named("runs"),
		Workers:   lim.Workers,
		QueueSize: lim.Queue,
	})
	a.engine = saga.NewEngine(saga.EngineOptions{
		Logger:       log.Named("saga"),
		KV:           a.store,
		Egress:       saga.EgressPolicy{Allow: cfg.Server.Egress.Allow},
		Checkpointer: a.runs,
	})
	a.gateway = gateway.New(gateway.Options{Config: a, Runs: a.runs, Logger: log})
	log.Info("run store open", zap.String("path", path))
	return a, nil
}

// Current is the configuration new requests run under.
func (a *App) Current() *config.Config { return a.current.Load() }

// Start listens and serves in the background.
func (a *App) Start(ctx context.Context) error {
	cfg := a.Current()
	addr := cfg.Server.Listen
	if a.opts.Listen != "" {
		addr = a.opts.Listen
	}
	// Resume what a crash interrupted before taking new work.
	if err := a.runs.Start(ctx, a.engine); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		_ = a.runs.Stop(ctx)
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	lim := cfg.Server.Limits
	a.ln = ln
	a.server = &http.Server{
		Handler:           a.gateway,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		// A sync saga may take up to sync_timeout before its answer is written.
		WriteTimeout:   lim.SyncTimeout + 10*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: lim.MaxHeaderBytes,
		ErrorLog:       zap.NewStdLog(a.log.Named("http")),
		ConnState:      a.trackFresh,
	}
	a.served = make(chan error, 1)
	go func() { a.served <- a.server.Serve(ln) }()
	pruneCtx, cancel := context.WithCancel(context.Background())
	a.cancel, a.pruned = cancel, make(chan struct{})
	go a.pruneLoop(pruneCtx, cfg.Server.History)
	a.log.Info("pushbackd listening", zap.String("addr", ln.Addr().String()),
		zap.String("config", cfg.File), zap.Int("partners", len(cfg.Partners)), zap.Int("sagas", len(cfg.Sagas)))
	return nil
}

// Addr is the address the pushback listener is bound to.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Stop stops accepting, lets requests in flight finish within ctx, then waits for sync
// sagas that outlived their request.
func (a *App) Stop(ctx context.Context) error {
	if a.server == nil {
		return a.store.Close()
	}
	shut := make(chan error, 1)
	go func() { shut <- a.server.Shutdown(ctx) }()
	a.closeFresh()
	err := <-shut
	if serr := <-a.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	a.cancel()
	<-a.pruned
	if werr := a.gateway.Wait(ctx); werr != nil {
		err = errors.Join(err, fmt.Errorf("sync sagas still running at shutdown: %w", werr))
	}
	// Queued and waiting runs stay on disk and resume at the next start.
	err = errors.Join(err, a.runs.Stop(ctx), a.store.Close())
	_ = a.log.Sync()
	return err
}

// trackFresh remembers connections on which no request has started. http.Server.Shutdown
// waits up to five seconds for those (clients often dial a spare connection they never
// use); Stop closes them at once instead, which loses nothing since nothing was sent.
func (a *App) trackFresh(c net.Conn, state http.ConnState) {
	if state == http.StateNew {
		a.fresh.Store(c, struct{}{})
	} else {
		a.fresh.Delete(c)
	}
}

func (a *App) closeFresh() {
	a.fresh.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		a.fresh.Delete(k)
		return true
	})
}

// Close releases the store of an app that was never started.
func (a *App) Close() error { return a.store.Close() }

// pruneLoop enforces history.retention and history.max_runs in the background.
func (a *App) pruneLoop(ctx context.Context, h config.History) {
	defer close(a.pruned)
	t := time.NewTicker(h.PruneInterval)
	defer t.Stop()
	for {
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
		case <-t.C:
		}
	}
}

// Run starts the app and stops it when ctx ends.
func Run(ctx context.Context, opts Options) error {
	a, err := New(opts)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return errors.Join(err, a.Close())
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), a.Current().Server.Limits.SyncTimeout+5*time.Second)
	defer cancel()
	return a.Stop(stopCtx)
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
