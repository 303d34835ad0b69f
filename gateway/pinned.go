package gateway

import (
	"container/list"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// SagaHistory is the part of the store old saga versions are read from.
type SagaHistory interface {
	SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error)
	SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error)
}

// DefaultPinnedVersions is how many compiled old saga versions a Pinned keeps. Runs
// resumed on a version the configuration no longer has are rare (a restart after an edit
// made while they ran), and each version may be a 1 MiB file compiled.
const DefaultPinnedVersions = 16

// Pinned finds the saga version a run started on, so that a resumed run finishes on the
// steps it began with even when the saga was edited or its file changed since: a
// checkpoint's step indexes and outputs belong to that version. The configuration's
// current saga serves when it is still that version; otherwise the version is compiled
// from the store's saga history, which keeps every version applied, and the last few
// compiled are kept.
type Pinned struct {
	hist SagaHistory
	max  int

	mu    sync.Mutex
	order *list.List               // of *pinnedSaga, most recently used first
	byKey map[string]*list.Element // name@version -> its element in order
}

type pinnedSaga struct {
	key string
	s   *saga.Saga
}

// NewPinned keeps up to max compiled versions (DefaultPinnedVersions when max <= 0).
func NewPinned(hist SagaHistory, max int) *Pinned {
	if max <= 0 {
		max = DefaultPinnedVersions
	}
	return &Pinned{hist: hist, max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// Invocation rebuilds a stored run's invocation for a resume: the run's saga at the
// version it recorded, under cfg's endpoint, settings, secrets and egress lists.
func (p *Pinned) Invocation(ctx context.Context, cfg *config.Config, run *store.Run) (*saga.Invocation, error) {
	s, err := p.Saga(ctx, cfg, run.Saga, run.SagaVersion)
	if err != nil {
		return nil, err
	}
	return invocationFor(cfg, run, s)
}

// Saga returns saga name at version (saga.Saga.Version); an empty version is whatever cfg
// has now.
func (p *Pinned) Saga(ctx context.Context, cfg *config.Config, name, version string) (*saga.Saga, error) {
	if s, ok := cfg.Sagas[name]; ok && (version == "" || s.Version == version) {
		return s, nil
	}
	if version == "" {
		return nil, fmt.Errorf("saga %q is no longer configured", name)
	}
	key := name + "@" + version
	if s := p.cached(key); s != nil {
		return s, nil
	}
	// Compiled outside the lock: two runs of one version resumed at once may both compile
	// it, which costs less than making every resume wait behind one compile.
	s, err := p.compile(ctx, cfg, name, version)
	if err != nil {
		return nil, err
	}
	p.keep(key, s)
	return s, nil
}

func (p *Pinned) cached(key string) *saga.Saga {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byKey[key]
	if !ok {
		return nil
	}
	p.order.MoveToFront(e)
	return e.Value.(*pinnedSaga).s
}

func (p *Pinned) keep(key string, s *saga.Saga) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.byKey[key]; ok {
		p.order.MoveToFront(e)
		return
	}
	p.byKey[key] = p.order.PushFront(&pinnedSaga{key: key, s: s})
	for p.order.Len() > p.max {
		last := p.order.Back()
		delete(p.byKey, last.Value.(*pinnedSaga).key)
		p.order.Remove(last)
	}
}

// compile finds the version in the history by its hash, whose first hex digits the
// version is, and compiles it.
func (p *Pinned) compile(ctx context.Context, cfg *config.Config, name, version string) (*saga.Saga, error) {
	versions, err := p.hist.SagaVersions(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("saga %s version %s: %w", name, version, err)
	}
	for _, v := range versions {
		if !strings.HasPrefix(v.Hash, version) {
			continue
		}
		full, err := p.hist.SagaVersion(ctx, name, v.Number)
		if err != nil {
			return nil, fmt.Errorf("saga %s version %s: %w", name, version, err)
		}
		// Named as its file would be: the loader checks the saga's name against it.
		s, errs := saga.Parse(cfg.SagaFile(name), full.Source)
		if len(errs) > 0 {
			return nil, fmt.Errorf("saga %s version %s (number %d in the history) no longer compiles: %w", name, version, v.Number, errs)
		}
		if s.Version != version {
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("saga %s version %s, which the run started on, is not in the saga history "+
		"(GET /admin/v1/sagas/%s/versions lists what is), so the run cannot finish on its own steps", name, version, name)
}
