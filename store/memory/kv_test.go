package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
	"github.com/pushbackd/pushbackd/store/storetest"
)

func TestMemoryKV(t *testing.T) {
	storetest.TestKV(t, func(t *testing.T, clock store.Clock) store.KV {
		return memory.NewKV(clock)
	})
}

func TestMemoryKVDropsExpiredKeysNobodyReads(t *testing.T) {
	clock := storetest.NewManualClock()
	kv := memory.NewKV(clock)
	ctx := context.Background()
	for i := 0; i < 2048; i++ {
		if err := kv.Put(ctx, "acme", "k"+string(rune('a'+i%26))+time.Duration(i).String(), []byte(`1`), store.PutOptions{TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	if n := kv.Len(); n > 1100 {
		t.Fatalf("%d keys held after sweeps, want expired ones dropped", n)
	}
}
