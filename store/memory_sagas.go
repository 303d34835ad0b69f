package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
)

type memSagaVersion struct {
	v    SagaVersion // Source included
	hash [sha256.Size]byte
}

func (m *Memory) RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (SagaVersion, bool, error) {
	if err := validSagaVersion(name, src, origin); err != nil {
		return SagaVersion{}, false, err
	}
	hash := sagaHash(src)
	if err := m.begin(ctx); err != nil {
		return SagaVersion{}, false, err
	}
	defer m.mu.Unlock()
	versions := m.sagas[name]
	if n := len(versions); n > 0 && versions[n-1].hash == hash {
		return listed(versions[n-1].v), false, nil
	}
	v := SagaVersion{Name: name, Number: len(versions) + 1, Hash: hexHash(hash),
		Source: append([]byte(nil), src...), Created: sagaNow(m.clock), Origin: origin}
	if m.sagas == nil {
		m.sagas = map[string][]memSagaVersion{}
	}
	m.sagas[name] = append(versions, memSagaVersion{v: v, hash: hash})
	return listed(v), true, nil
}

func (m *Memory) SagaVersions(ctx context.Context, name string) ([]SagaVersion, error) {
	if err := validSagaName(name); err != nil {
		return nil, err
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	out := make([]SagaVersion, 0, len(m.sagas[name]))
	for _, e := range slices.Backward(m.sagas[name]) {
		out = append(out, listed(e.v))
	}
	return out, nil
}

func (m *Memory) SagaVersion(ctx context.Context, name string, number int) (SagaVersion, error) {
	if err := validSagaName(name); err != nil {
		return SagaVersion{}, err
	}
	if err := m.begin(ctx); err != nil {
		return SagaVersion{}, err
	}
	defer m.mu.Unlock()
	versions := m.sagas[name]
	if number <= 0 || number > len(versions) {
		return SagaVersion{}, fmt.Errorf("get saga %s version %d: %w", name, number, ErrNotFound)
	}
	v := versions[number-1].v
	v.Source = append([]byte(nil), v.Source...)
	return v, nil
}

// listed is v as listings return it: without Source.
func listed(v SagaVersion) SagaVersion {
	v.Source = nil
	return v
}
