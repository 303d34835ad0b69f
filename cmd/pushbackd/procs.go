package main

import (
	"runtime"
	"strconv"
)

// procsPerCPU is how many Go processors (GOMAXPROCS) serve runs per CPU Go would use.
//
// Go's default is one per CPU, which fits code that computes. A run spends much of its
// time in system calls instead: the store's commit waits in fdatasync (two per commit),
// and every answer and downstream call is a socket write that, on loopback, the kernel
// works through for the receiver too before it returns. A processor stays with its
// goroutine in such a call until the runtime takes it back, so with one per CPU the
// goroutines with work to do wait for a processor while a CPU could run them. With two
// per CPU bench scenario 4 (async accepts whose saga makes one http call; 64
// connections; two CPUs shared with the load generator and the downstream) completed
// 7–14% more runs per second than with one, in five alternating pairs of 20 s runs. More
// accepts and outcomes were ready while the store synced, so a commit carried more of
// them (perf stat over 10 s of one pair: 0.070 fdatasyncs per completed run against
// 0.148), and the downstream and the load generator spent less CPU per run (~20 against
// ~23 µs, ~11 against ~12.5 µs): the calls came in larger bursts. The sync, async-accept
// and 401 scenarios did not change beyond the host's noise, and four per CPU did no
// better than two. BENCHMARKS.md has the runs.
const procsPerCPU = 2

// tuneProcs sets GOMAXPROCS to procsPerCPU times Go's default and returns the value in
// force. It leaves Go's default alone when the operator set GOMAXPROCS, and when the
// default is below numCPU (the CPUs the process may run on): then Go lowered it to a
// container's CPU quota, and running more threads than the quota buys would have the
// kernel pause the whole process for the rest of each quota period once it is spent,
// which is the tail latency Go's quota-aware default is there to avoid. Setting it also
// stops Go (1.25 on) from following later changes of the container's CPU limit; a restart
// picks them up.
func tuneProcs(getenv func(string) string, numCPU int) int {
	if v := getenv("GOMAXPROCS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return runtime.GOMAXPROCS(0)
		}
	}
	def := runtime.GOMAXPROCS(0)
	if def < numCPU {
		return def
	}
	n := procsPerCPU * def
	runtime.GOMAXPROCS(n)
	return n
}
