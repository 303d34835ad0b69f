// Package store holds pushbackd's durable state: run history, idempotency keys, the work
// queue and the key-value state sagas keep per partner.
//
// Everything outside this package sees interfaces only, so the embedded bbolt store and a
// later shared (Postgres) one are interchangeable; every implementation must pass the
// contract tests in storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrEmptyKey is returned for an empty namespace or key: no backend can store one.
var ErrEmptyKey = errors.New("store: empty namespace or key")

// KV is durable key-value state for sagas' kv steps. The namespace is the partner id, so
// partners never see each other's keys. Values are JSON documents; implementations store the
// bytes as given and return a copy.
type KV interface {
	// Get returns the value and true, or nil and false when the key is absent or expired.
	Get(ctx context.Context, namespace, key string) ([]byte, bool, error)
	// Put stores value under key; ttl > 0 makes it expire that long after now, 0 keeps it.
	Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, namespace, key string) error
}

// Clock is the time source for expiry; saga.Clock satisfies it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func validKey(namespace, key string) error {
	if namespace == "" || key == "" {
		return ErrEmptyKey
	}
	return nil
}
