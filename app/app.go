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
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pushbackd/pushbackd/config"
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
	// NewRunner builds the saga runner; nil means NewEngine, the real one.
	NewRunner func(cfg *config.Config, log *zap.Logger) saga.Runner
}

// App is one pushbackd process.
type App struct {
	opts    Options
	log     *zap.Logger
	current atomic.Pointer[config.Config]
	gateway *gateway.Gateway
	server  *http.Server
	ln      net.Listener
	served  chan error
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
	newRunner := opts.NewRunner
	if newRunner == nil {
		newRunner = NewEngine
	}
	runner := newRunner(cfg, log)
	a.gateway = gateway.New(gateway.Options{Config: a, Runner: runner, Logger: log})
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
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
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
	}
	a.served = make(chan error, 1)
	go func() { a.served <- a.server.Serve(ln) }()
	a.log.Info("pushbackd listening", zap.String("addr", ln.Addr().String()),
		zap.String("config", cfg.File), zap.Int("partners", len(cfg.Partners)), zap.Int("sagas", len(cfg.Sagas)))
	for _, p := range cfg.Partners {
		if p.HasAsyncEndpoints() {
			a.log.Warn("partner has async endpoints; this build has no durable run store yet, so they answer 503", zap.String("partner", p.ID))
		}
	}
	return nil
}

// Addr is the address the pushback listener is bound to.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Stop stops accepting, lets requests in flight finish within ctx, then waits for sync
// sagas that outlived their request.
func (a *App) Stop(ctx context.Context) error {
	if a.server == nil {
		return nil
	}
	err := a.server.Shutdown(ctx)
	if serr := <-a.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if werr := a.gateway.Wait(ctx); werr != nil {
		err = errors.Join(err, fmt.Errorf("sagas still running at shutdown: %w", werr))
	}
	_ = a.log.Sync()
	return err
}

// Run starts the app and stops it when ctx ends.
func Run(ctx context.Context, opts Options) error {
	a, err := New(opts)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	stopCtx, cancel := context.WithTimeout(context.Background(), a.Current().Server.Limits.SyncTimeout+5*time.Second)
	defer cancel()
	return a.Stop(stopCtx)
}

// NewEngine is the saga engine the shipped binary runs: egress as pushbackd.yaml says, and
// kv state in memory until the durable store lands (so kv values do not survive a restart).
func NewEngine(cfg *config.Config, log *zap.Logger) saga.Runner {
	return saga.NewEngine(saga.EngineOptions{
		Logger: log.Named("saga"),
		KV:     store.NewMemoryKV(nil),
		Egress: saga.EgressPolicy{Allow: cfg.Server.Egress.Allow},
	})
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
