package memory

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/pushbackd/pushbackd/store"
)

type memSagaVersion struct {
	v    store.SagaVersion // Source included
	hash [sha256.Size]byte
}

func (m *Store) RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, bool, error) {
	if err := store.ValidSagaVersion(name, src, origin); err != nil {
		return store.SagaVersion{}, false, err
	}
	hash := store.SagaHash(src)
	if err := m.begin(ctx); err != nil {
		return store.SagaVersion{}, false, err
	}
	defer m.mu.Unlock()
	versions := m.sagas[name]
	if n := len(versions); n > 0 && versions[n-1].hash == hash {
		return listed(versions[n-1].v), false, nil
	}
	v := store.SagaVersion{Name: name, Number: len(versions) + 1, Hash: store.HexHash(hash),
		Source: append([]byte(nil), src...), Created: store.SagaNow(m.clock), Origin: origin}
	if m.sagas == nil {
		m.sagas = map[string][]memSagaVersion{}
	}
	m.sagas[name] = append(versions, memSagaVersion{v: v, hash: hash})
	return listed(v), true, nil
}

func (m *Store) SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error) {
	if err := store.ValidSagaName(name); err != nil {
		return nil, err
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]store.SagaVersion, 0, len(m.sagas[name]))
	for _, e := range slices.Backward(m.sagas[name]) {
		out = append(out, listed(e.v))
	}
	return out, nil
}

func (m *Store) SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error) {
	if err := store.ValidSagaName(name); err != nil {
		return store.SagaVersion{}, err
	}
	if err := m.begin(ctx); err != nil {
		return store.SagaVersion{}, err
	}
	defer m.mu.Unlock()
	versions := m.sagas[name]
	if number <= 0 || number > len(versions) {
		return store.SagaVersion{}, fmt.Errorf("get saga %s version %d: %w", name, number, store.ErrNotFound)
	}
	v := versions[number-1].v
	v.Source = append([]byte(nil), v.Source...)
	return v, nil
}

// listed is v as listings return it: without Source.
func listed(v store.SagaVersion) store.SagaVersion {
	v.Source = nil
	return v
}
