package postgres_test

import (
	"path/filepath"
	"testing"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/postgres"
	"github.com/pushbackd/pushbackd/store/storetest"
)

// A stopped instance's bbolt file copied into Postgres answers as the file did.
func TestCopyFromBolt(t *testing.T) {
	storetest.TestCopy(t, func(t *testing.T, clock store.Clock) storetest.CopySource {
		b, err := bolt.Open(filepath.Join(t.TempDir(), "pushbackd.db"), bolt.Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}, func(t *testing.T, clock store.Clock) storetest.CopyDest {
		return open(t, newDB(t), postgres.Options{Clock: clock})
	})
}
