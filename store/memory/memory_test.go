package memory_test

import (
	"testing"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
	"github.com/pushbackd/pushbackd/store/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.TestStore(t, func(t *testing.T, clock store.Clock) store.Store {
		s := memory.New(clock)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
