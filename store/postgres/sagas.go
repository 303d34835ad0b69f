package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
)

func (s *Store) RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, bool, error) {
	if err := store.ValidSagaVersion(name, src, origin); err != nil {
		return store.SagaVersion{}, false, err
	}
	hash := store.HexHash(store.SagaHash(src))
	var v store.SagaVersion
	var created bool
	err := s.tx(ctx, "record saga version", func(tx pgx.Tx) error {
		created = false
		if err := lockKeys(ctx, tx, "saga:"+name); err != nil {
			return err
		}
		var last store.SagaVersion
		var origin0 []byte
		var at int64
		err := tx.QueryRow(ctx, `SELECT number, hash, created, origin FROM saga_versions WHERE name = $1
			ORDER BY number DESC LIMIT 1`, name).Scan(&last.Number, &last.Hash, &at, &origin0)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err == nil && last.Hash == hash {
			last.Name, last.Created, last.Origin = name, store.NanosTime(at), string(origin0)
			v = last
			return nil
		}
		v = store.SagaVersion{Name: name, Number: last.Number + 1, Hash: hash, Created: store.SagaNow(s.clock), Origin: origin}
		_, err = tx.Exec(ctx, `INSERT INTO saga_versions (name, number, hash, source, created, origin)
			VALUES ($1, $2, $3, $4, $5, $6)`, name, v.Number, hash, src, nanos(v.Created), []byte(origin))
		created = err == nil
		return err
	})
	return v, created, err
}

func (s *Store) SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error) {
	if err := store.ValidSagaName(name); err != nil {
		return nil, err
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT number, hash, created, origin FROM saga_versions WHERE name = $1
		ORDER BY number DESC`, name)
	if err != nil {
		return nil, wrap("saga versions", err)
	}
	out := []store.SagaVersion{}
	for rows.Next() {
		v := store.SagaVersion{Name: name}
		var at int64
		var origin []byte
		if err := rows.Scan(&v.Number, &v.Hash, &at, &origin); err != nil {
			return nil, wrap("saga versions", err)
		}
		v.Created, v.Origin = store.NanosTime(at), string(origin)
		out = append(out, v)
	}
	return out, wrap("saga versions", rows.Err())
}

func (s *Store) SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error) {
	if err := s.begin(ctx); err != nil {
		return store.SagaVersion{}, err
	}
	if err := store.ValidSagaName(name); err != nil {
		return store.SagaVersion{}, err
	}
	v := store.SagaVersion{Name: name, Number: number}
	var at int64
	var origin []byte
	err := s.pool.QueryRow(ctx, `SELECT hash, source, created, origin FROM saga_versions WHERE name = $1 AND number = $2`,
		name, number).Scan(&v.Hash, &v.Source, &at, &origin)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("saga %s version %d: %w", name, number, store.ErrNotFound)
	}
	if err != nil {
		return v, wrap("saga version", err)
	}
	v.Created, v.Origin = store.NanosTime(at), string(origin)
	return v, nil
}
