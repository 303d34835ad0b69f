package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// SagaVersion is one applied revision of a saga file.
//
// Created comes back in UTC with nanosecond precision and no monotonic reading.
type SagaVersion struct {
	Name    string
	Number  int    // 1, 2, 3... per saga name, in the order applied
	Hash    string // hex sha256 of Source
	Source  []byte // the YAML as applied; nil in listings
	Created time.Time
	Origin  string // who/what applied it: "admin", "file", "restore of 3", ... (free text, short)
}

// Sagas is the version history of saga files: every applied edit, from the admin API or
// the sagas directory, is kept so old versions can be read and re-applied. Prune never
// deletes versions.
type Sagas interface {
	// RecordSagaVersion stores src as the next version of name — unless it is identical
	// (same hash) to the latest version, in which case the latest is returned unchanged
	// and created=false. Durable (fsync) before returning. v comes without Source (the
	// caller has it). ErrInvalid for a name that
	// does not match SagaNamePattern, empty src, or an origin longer than MaxSagaOriginLen.
	RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (v SagaVersion, created bool, err error)
	// SagaVersions lists name's versions, newest first, without Source. Empty slice (not an
	// error) for an unknown name.
	SagaVersions(ctx context.Context, name string) ([]SagaVersion, error)
	// SagaVersion returns one version with its Source, or ErrNotFound.
	SagaVersion(ctx context.Context, name string, number int) (SagaVersion, error)
}

// SagaNamePattern is the shape of saga names the version history accepts.
var SagaNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// MaxSagaOriginLen bounds SagaVersion.Origin, in bytes.
const MaxSagaOriginLen = 256

func ValidSagaName(name string) error {
	if !SagaNamePattern.MatchString(name) {
		return fmt.Errorf("%w: saga name %q must match %s", ErrInvalid, name, SagaNamePattern)
	}
	return nil
}

func ValidSagaVersion(name string, src []byte, origin string) error {
	if err := ValidSagaName(name); err != nil {
		return err
	}
	if len(src) == 0 {
		return fmt.Errorf("%w: saga %s: empty source", ErrInvalid, name)
	}
	if len(origin) > MaxSagaOriginLen {
		return fmt.Errorf("%w: saga %s: origin longer than %d bytes", ErrInvalid, name, MaxSagaOriginLen)
	}
	return nil
}

func SagaHash(src []byte) [sha256.Size]byte { return sha256.Sum256(src) }

func HexHash(h [sha256.Size]byte) string { return hex.EncodeToString(h[:]) }

// SagaNow is the clock's reading as a stored time comes back: UTC, no monotonic reading.
func SagaNow(c Clock) time.Time { return NanosTime(c.Now().UnixNano()) }
