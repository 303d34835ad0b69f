package warm

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// deep needs a stack of about n KB.
func deep(n int) byte {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%1024]
}

func TestEveryFunctionRunsOnceAndConcurrently(t *testing.T) {
	p := New(time.Minute)
	var mu sync.Mutex
	ran := map[int]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-start // all 50 hold their goroutine at once: Go must not wait for a free one
			mu.Lock()
			ran[i]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	for i := range 50 {
		if ran[i] != 1 {
			t.Fatalf("function %d ran %d times", i, ran[i])
		}
	}
}

func TestAnIdleGoroutineTakesTheNextFunction(t *testing.T) {
	p := New(time.Minute)
	done := make(chan struct{})
	p.Go(func() { deep(32); done <- struct{}{} })
	<-done
	before := runtime.NumGoroutine()
	// Wait until the first goroutine is idle, then hand it more work: no new goroutine.
	deadline := time.Now().Add(5 * time.Second)
	for {
		handed := false
		select {
		case p.idle <- func() { deep(32); done <- struct{}{} }:
			handed = true
		default:
		}
		if handed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool's goroutine never became idle")
		}
		time.Sleep(time.Millisecond)
	}
	<-done
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines after reuse, %d before", after, before)
	}
}

func TestIdleGoroutinesExit(t *testing.T) {
	base := runtime.NumGoroutine()
	p := New(20 * time.Millisecond)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		p.Go(wg.Done)
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running, %d at the start", runtime.NumGoroutine(), base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkDeepFunction compares a fresh goroutine per call with the pool for a function
// that needs a 32 KB stack, as a saga run does.
func BenchmarkDeepFunction(b *testing.B) {
	for _, tc := range []struct {
		name string
		run  func(f func())
	}{
		{"fresh goroutine", func(f func()) { go f() }},
		{"pool", New(time.Minute).Go},
	} {
		b.Run(tc.name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				tc.run(func() { deep(32); done <- struct{}{} })
				<-done
			}
		})
	}
}
