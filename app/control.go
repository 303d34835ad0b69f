package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fsnotify/fsnotify"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// Reload re-reads the whole configuration and swaps it in atomically. Requests in flight
// keep the snapshot they started with. A failure keeps the running configuration, is
// logged with every error, and shows in /readyz and the reload metric.
func (a *App) Reload(ctx context.Context, origin string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, err := config.Load(a.opts.ConfigPath)
	if err != nil {
		a.setReload(err)
		a.log.Error("configuration reload failed; the running configuration is kept", zap.String("origin", origin),
			zap.Strings("errors", errorLines(err)))
		return err
	}
	a.swap(ctx, cfg, origin)
	return nil
}

// swap makes cfg current. Caller holds reloadMu.
func (a *App) swap(ctx context.Context, cfg *config.Config, origin string) {
	old := a.current.Swap(cfg)
	a.recordSagaVersions(ctx, cfg, origin)
	a.setReload(nil)
	if old != nil {
		for _, w := range restartOnly(old.Server, cfg.Server) {
			a.log.Warn("a changed setting needs a restart to take effect", zap.String("setting", w))
		}
	}
	a.log.Info("configuration loaded", zap.String("origin", origin), zap.Int("partners", len(cfg.Partners)), zap.Int("sagas", len(cfg.Sagas)))
	logEgressWarnings(a.log, cfg)
	if a.opts.ConfigApplied != nil {
		a.opts.ConfigApplied()
	}
}

// restartOnly names the settings a reload does not apply: listeners, the data file and the
// worker pool are built once.
func restartOnly(old, cur config.Server) []string {
	var out []string
	if old.Listen != cur.Listen {
		out = append(out, "listen")
	}
	if old.Admin.Listen != cur.Admin.Listen {
		out = append(out, "admin.listen")
	}
	if old.DataDir != cur.DataDir {
		out = append(out, "data_dir")
	}
	if old.Limits.Workers != cur.Limits.Workers || old.Limits.Queue != cur.Limits.Queue {
		out = append(out, "limits.workers/queue")
	}
	if fmt.Sprint(old.TLS) != fmt.Sprint(cur.TLS) || fmt.Sprint(old.Admin.TLS) != fmt.Sprint(cur.Admin.TLS) {
		out = append(out, "tls file paths (the files themselves reload when they change)")
	}
	if old.Limits.AuthFailures != cur.Limits.AuthFailures {
		out = append(out, "limits.auth_failures")
	}
	if old.Limits.ReadHeaderTimeout != cur.Limits.ReadHeaderTimeout || old.Limits.ReadTimeout != cur.Limits.ReadTimeout || old.Limits.MaxHeaderBytes != cur.Limits.MaxHeaderBytes {
		out = append(out, "limits (listener timeouts)")
	}
	if old.Limits.KVLimits() != cur.Limits.KVLimits() {
		out = append(out, "limits.kv_*")
	}
	if old.History.MaxOutputBytes != cur.History.MaxOutputBytes {
		out = append(out, "history.max_output_bytes")
	}
	if old.Store.Driver != cur.Store.Driver || old.Store.DSN.Source() != cur.Store.DSN.Source() ||
		!bytes.Equal(old.Store.DSN.Secret.Reveal(), cur.Store.DSN.Secret.Reveal()) {
		out = append(out, "store")
	}
	return out
}

func errorLines(err error) []string {
	var out []string
	for _, e := range yamlconf.AsErrors(err) {
		out = append(out, e.Error())
	}
	return out
}

func (a *App) setReload(err error) {
	a.reloadSeen.Lock()
	a.lastReload = reloadOutcome{at: time.Now(), err: err}
	a.reloadSeen.Unlock()
	a.metrics.Reload(err == nil, time.Now())
}

// LastReload is when the configuration was last loaded and that load's error.
func (a *App) LastReload() (time.Time, error) {
	a.reloadSeen.Lock()
	defer a.reloadSeen.Unlock()
	return a.lastReload.at, a.lastReload.err
}

// recordSagaVersions keeps each loaded saga in the version history (identical sources are
// not repeated), so edits made on disk are versioned like edits made through the API.
func (a *App) recordSagaVersions(ctx context.Context, cfg *config.Config, origin string) {
	a.recordSagaVersionsIn(ctx, a.store, cfg, origin)
}

func (a *App) recordSagaVersionsIn(ctx context.Context, st store.Sagas, cfg *config.Config, origin string) {
	for name, s := range cfg.Sagas {
		if _, _, err := st.RecordSagaVersion(ctx, name, s.Source, origin); err != nil {
			a.log.Warn("cannot record the saga's version", zap.String("saga", name), zap.Error(err))
		}
	}
}

// ApplySaga validates src as saga name exactly as start-up would (the whole configuration,
// with this file in place), then writes it atomically into sagas_dir, records a version and
// applies it. An invalid saga changes nothing.
func (a *App) ApplySaga(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, error) {
	if !admin.SagaName.MatchString(name) {
		return store.SagaVersion{}, fmt.Errorf("saga name %q is not allowed", name)
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	path := a.Current().SagaFile(name)
	cfg, err := config.LoadWith(a.opts.ConfigPath, map[string][]byte{path: src})
	if err != nil {
		return store.SagaVersion{}, err
	}
	if err := writeAtomic(path, src); err != nil {
		return store.SagaVersion{}, err
	}
	v, _, err := a.store.RecordSagaVersion(ctx, name, src, origin)
	if err != nil {
		return v, err
	}
	a.swap(ctx, cfg, origin)
	return v, nil
}

// ValidateSaga checks src as saga name exactly as ApplySaga would and changes nothing.
func (a *App) ValidateSaga(ctx context.Context, name string, src []byte) error {
	if !admin.SagaName.MatchString(name) {
		return fmt.Errorf("saga name %q is not allowed", name)
	}
	_, err := config.LoadWith(a.opts.ConfigPath, map[string][]byte{a.Current().SagaFile(name): src})
	return err
}

// writeAtomic replaces path with src so that a crash leaves the old file or the new one,
// never half of either.
func writeAtomic(path string, src []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Replay starts a new async run from a stored run's request, linked to it. The request's
// credentials were redacted when it was stored; the admin's token stands in for them.
func (a *App) Replay(ctx context.Context, id string) (string, error) {
	newID, _, err := a.replay(ctx, id, "")
	return newID, err
}

// replay makes the replay of run id. An operator asked for this run, so the saga's
// debounce and the sender's idempotency key do not apply (dispatch.AcceptReplay): three
// replays are three runs, none superseded. key, when set, is the replay's own idempotency
// key (a bulk job's): a replay already made with it is not made again, and its id comes
// back as duplicateOf.
func (a *App) replay(ctx context.Context, id, key string) (newID, duplicateOf string, err error) {
	orig, err := a.store.GetRun(ctx, id)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	uid, err := uuid.NewV7()
	if err != nil {
		return "", "", err
	}
	run := &store.Run{ID: uid.String(), Partner: orig.Partner, Site: orig.Site, Endpoint: orig.Endpoint, Saga: orig.Saga,
		ReceivedAt: now, ReplayOf: orig.ID, IdempotencyKey: key, Request: orig.Request}
	inv, err := gateway.InvocationForRun(a.Current(), run)
	if err != nil {
		return "", "", err
	}
	run.Saga, run.SagaVersion = inv.Saga.Name, inv.Saga.Version
	// Long enough that a job resumed days later still finds its replays.
	opts := store.CreateOptions{IdempotencyTTL: 30 * 24 * time.Hour}
	dup, err := a.runs.AcceptReplay(ctx, run, inv, opts)
	if err != nil {
		return "", "", err
	}
	if dup != "" {
		return dup, dup, nil
	}
	a.log.Info("run replayed", zap.String("run_id", run.ID), zap.String("replay_of", orig.ID))
	return run.ID, "", nil
}

// rebuild makes a stored run's invocation when it resumes: on the saga version it started
// with, whatever was applied since, under the current endpoints, settings and secrets.
// (The dispatcher gives no context; reading the history is a short local read.)
func (a *App) rebuild(run *store.Run) (*saga.Invocation, error) {
	return a.pinned.Invocation(context.Background(), a.Current(), run)
}

// Ready reports whether a configuration is loaded and the store takes writes. Its error
// is a notReady: /readyz needs no token, so what it shows is the reason alone, and the
// cause (which names the database's host, user and name) goes to the log.
func (a *App) Ready(ctx context.Context) error {
	err := a.readiness(ctx)
	a.ready.logCause(a.log, err)
	return err
}

func (a *App) readiness(ctx context.Context) error {
	if a.stopping.Load() {
		return &notReady{reason: "shutting down"}
	}
	if a.Current() == nil {
		return &notReady{reason: "no configuration loaded"}
	}
	if _, err := a.lazy.get(); err != nil {
		return &notReady{reason: "the run store is not open yet", cause: err}
	}
	if err := a.ready.check(ctx, a.lazy.Ping); err != nil && !errors.Is(err, errNoPing) {
		return &notReady{reason: "database not reachable", cause: err}
	}
	if err := a.store.Put(ctx, "pushbackd", "readyz", []byte(`true`), store.PutOptions{TTL: time.Minute}); err != nil {
		return &notReady{reason: "store not writable", cause: err}
	}
	return nil
}

// notReady is why the instance is not ready: reason for anyone, cause for the log.
type notReady struct {
	reason string
	cause  error
}

func (e *notReady) Error() string { return e.reason }
func (e *notReady) Unwrap() error { return e.cause }

// readyCache keeps a database ping's answer for readyFor, so /readyz under load (every
// load balancer polls every instance) does not hammer the database.
type readyCache struct {
	mu     sync.Mutex
	at     time.Time
	err    error
	logged string // the last reason logCause logged; "" = ready
}

const (
	readyFor     = time.Second
	readyTimeout = time.Second
)

// check pings, or answers the ping of less than readyFor ago. Concurrent callers wait
// for the one ping under way.
func (c *readyCache) check(ctx context.Context, ping func(context.Context) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < readyFor {
		return c.err
	}
	pctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	err := ping(pctx)
	if ctx.Err() == nil { // a caller that went away says nothing about the database
		c.at, c.err = time.Now(), err
	}
	return err
}

// logCause logs why the instance is not ready when that changes, so load balancers
// polling /readyz through an outage do not repeat one line every few seconds.
func (c *readyCache) logCause(log *zap.Logger, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
		if cause := errors.Unwrap(err); cause != nil {
			msg += ": " + cause.Error()
		}
	}
	c.mu.Lock()
	changed := msg != c.logged
	c.logged = msg
	c.mu.Unlock()
	switch {
	case !changed:
	case err != nil:
		log.Warn("not ready", zap.String("reason", msg))
	default:
		log.Info("ready")
	}
}

// adminToken is admin.token from the config, or the token in <data_dir>/admin.token,
// generated (0600) on first start. Its path is logged, never its value.
func (a *App) adminToken(cfg *config.Config) (security.Secret, error) {
	if t := cfg.Server.Admin.Token.Secret; !t.IsZero() {
		return t, nil
	}
	path := AdminTokenPath(a.dataDir)
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			if n := utf8.RuneCountInString(tok); n < config.MinAdminTokenLen {
				return security.Secret{}, fmt.Errorf("admin token in %s has %d characters, at least %d are required: delete it to have a new one generated at start, or write a longer one (openssl rand -hex 32)", path, n, config.MinAdminTokenLen)
			}
			a.log.Info("admin token read from file", zap.String("path", path))
			return security.NewSecret(tok), nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return security.Secret{}, fmt.Errorf("read admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return security.Secret{}, err
	}
	tok := hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return security.Secret{}, fmt.Errorf("write admin token: %w", err)
	}
	a.log.Info("admin token generated", zap.String("path", path))
	return security.NewSecret(tok), nil
}

// AdminTokenPath is where a generated admin token lives.
func AdminTokenPath(dataDir string) string { return filepath.Join(dataDir, "admin.token") }

// watcher reloads when files in the configuration directories change, after a short quiet
// period so an editor's write-rename-chmod burst is one reload.
type watcher struct {
	w       *fsnotify.Watcher
	watched map[string]bool
}

// newWatcher starts watching before Start returns, so no change made after start is missed.
func (a *App) newWatcher() *watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Warn("cannot watch the configuration; reload with SIGHUP or the admin API", zap.Error(err))
		return nil
	}
	wt := &watcher{w: w, watched: map[string]bool{}}
	a.watchDirs(wt)
	return wt
}

// watchDirs adds the current configuration's directories (they may change on reload).
func (a *App) watchDirs(wt *watcher) {
	for _, dir := range a.Current().WatchedDirs() {
		if wt.watched[dir] {
			continue
		}
		if err := wt.w.Add(dir); err != nil {
			a.log.Warn("cannot watch directory", zap.String("dir", dir), zap.Error(err))
			continue
		}
		wt.watched[dir] = true
	}
}

func (a *App) watch(ctx context.Context, wt *watcher) {
	if wt == nil {
		return
	}
	defer wt.w.Close()
	const quiet = 300 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-wt.w.Events:
			if !ok {
				return
			}
			base := filepath.Base(ev.Name)
			// YAML configuration, and JSON for the payload schemas endpoints name.
			if strings.HasPrefix(base, ".") || !(strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || strings.HasSuffix(base, ".json")) {
				continue // editors' swap files and our own temp files
			}
			timer.Reset(quiet)
		case err, ok := <-wt.w.Errors:
			if !ok {
				return
			}
			a.log.Warn("configuration watcher error", zap.Error(err))
		case <-timer.C:
			_ = a.Reload(ctx, "file")
			a.watchDirs(wt)
		}
	}
}
