package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/app"
	"github.com/pushbackd/pushbackd/config"
)

// profileAll runs each selected scenario (1-4) against pushbackd started in this process
// with app.New, under a CPU profile, and prints the profile's top entries. The load
// generator is wrk, a separate process, so the profile holds the server alone.
func (b *bench) profileAll() error {
	if err := os.MkdirAll(b.o.profile, 0o755); err != nil {
		return err
	}
	for _, n := range b.o.scenarios {
		if n == 5 {
			if err := b.profileConfigLoad(); err != nil {
				return fmt.Errorf("profile scenario 5: %w", err)
			}
			continue
		}
		if n > 5 {
			fmt.Printf("-profile: scenario %d skipped (profiles cover 1-5)\n", n)
			continue
		}
		if err := b.profileOne(n); err != nil {
			return fmt.Errorf("profile scenario %d: %w", n, err)
		}
	}
	return nil
}

func (b *bench) profileOne(n int) error {
	// The same configuration as the scenario's main row.
	c := cfg{MockURL: b.mockURL, AuthFailuresOff: n == 1}
	if n == 3 {
		c.Queue = 1_000_000
	}
	if err := c.write(filepath.Join(b.tmp, fmt.Sprintf("prof-s%d", n))); err != nil {
		return err
	}
	a, err := app.New(app.Options{ConfigPath: c.file, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, c2 := context.WithTimeout(context.Background(), 30*time.Second)
		defer c2()
		_ = a.Stop(sctx)
	}()
	ep, good, expect := map[int]string{1: "sync", 2: "sync", 3: "async", 4: "e2e"}[n], n != 1, http.StatusOK
	if n == 1 {
		expect = http.StatusUnauthorized
	}
	t := b.request(a.Addr(), ep, good, expect)
	if _, err := b.attack(t, b.o.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	path := filepath.Join(b.o.profile, fmt.Sprintf("cpu-s%d.pprof", n))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	d := b.o.duration * time.Duration(b.o.rounds)
	res, err := b.attack(t, d)
	pprof.StopCPUProfile()
	f.Close()
	if err != nil {
		return err
	}
	// Allocations since the process started (warm-up included): what the CPU profile's
	// mallocgc and GC time are spent on, by the code that allocated.
	allocPath := filepath.Join(b.o.profile, fmt.Sprintf("allocs-s%d.pprof", n))
	if af, err := os.Create(allocPath); err == nil {
		_ = pprof.Lookup("allocs").WriteTo(af, 0)
		af.Close()
	}
	fmt.Printf("\n== scenario %d in-process: %.0f req/s, p50 %s, p99 %s, unexpected %d %s; profile %s\n",
		n, res.RPS(), fmtMs(res.Quantile(0.5)), fmtMs(res.Quantile(0.99)), res.Failed(), res.codesString(expect), path)
	for _, args := range [][]string{
		{"tool", "pprof", "-top", "-nodecount=30", path},
		{"tool", "pprof", "-top", "-cum", "-nodecount=45", path},
	} {
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		_ = cmd.Run()
	}
	return nil
}

// profileConfigLoad profiles config.Load of scenario 5's generated configuration: CPU
// during the load, then the heap it keeps.
func (b *bench) profileConfigLoad() error {
	c := cfg{ScalePartners: b.o.partners, MockURL: b.mockURL}
	if err := c.write(filepath.Join(b.tmp, "prof-s5")); err != nil {
		return err
	}
	cpuPath := filepath.Join(b.o.profile, "cpu-s5-config-load.pprof")
	heapPath := filepath.Join(b.o.profile, "heap-s5-config.pprof")
	f, err := os.Create(cpuPath)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	t0 := time.Now()
	loaded, err := config.Load(c.file)
	took := time.Since(t0)
	pprof.StopCPUProfile()
	f.Close()
	if err != nil {
		return err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h, err := os.Create(heapPath)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(h); err != nil {
		return err
	}
	h.Close()
	fmt.Printf("\n== scenario 5 config.Load of %d partners: %v, %d partners loaded, live heap after GC %.0f MB; profiles %s %s\n",
		b.o.partners, took.Round(time.Millisecond), len(loaded.Partners), float64(ms.HeapAlloc)/(1<<20), cpuPath, heapPath)
	runtime.KeepAlive(loaded)
	for _, args := range [][]string{
		{"tool", "pprof", "-top", "-cum", "-nodecount=35", cpuPath},
		{"tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=25", heapPath},
	} {
		cmd := exec.Command("go", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		_ = cmd.Run()
	}
	return nil
}
