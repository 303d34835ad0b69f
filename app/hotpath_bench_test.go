package app

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/internal/scalefixture"
	"github.com/pushbackd/pushbackd/security"
)

// The hot-path benchmarks drive the whole server — gateway, dispatcher, saga engine and a
// real bbolt file with its fsyncs — with the bench's request (go run ./bench, scenarios 2
// and 3), in-process and in parallel so group commit batches as it does under load. They
// report allocs/op and cpu-ns/op (the process's user+system CPU per request, workers and
// the store's writer included): figures that hold on a noisy machine where req/s does not.
const hotSecret = "bench-encompass-signing-key"

const hotPartner = `id: bench
name: Bench
endpoints:
  - {name: sync, saga: bench-sync, mode: sync, security: {method: signature, header: Elli-Signature, secrets: [{value: ` + hotSecret + `}]}}
  - {name: async, saga: bench-accept, security: {method: signature, header: Elli-Signature, secrets: [{value: ` + hotSecret + `}]}}
`

const hotAcceptSaga = `name: bench-accept
steps:
  - name: event
    set: {event: "${ body.eventType }"}
`

func benchHotPath(b *testing.B, endpoint string, want int) {
	dir := b.TempDir()
	files := map[string]string{
		"pushbackd.yaml":          "data_dir: " + filepath.Join(dir, "data") + "\nlimits: {queue: 1000000}\nlog: {level: error}\n",
		"partners/bench.yaml":     hotPartner,
		"sagas/bench-sync.yaml":   scalefixture.SyncSaga,
		"sagas/bench-accept.yaml": hotAcceptSaga,
	}
	writeFiles(b, dir, files)
	body, err := os.ReadFile("../testdata/payloads/encompass-loan-milestone.json")
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = a.Stop(b.Context()) }()
	header := http.Header{"Elli-Signature": {security.SignatureValue([]byte(hotSecret), body, "base64", "")},
		"Content-Type": {"application/json"}}
	path := "/pushback/bench/" + endpoint
	b.SetParallelism(32) // 64 goroutines on 2 cores: the bench's 64 connections
	b.ReportAllocs()
	before := cpuTime()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header = header.Clone()
			rec := httptest.NewRecorder()
			a.gateway.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Errorf("got %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotPathSyncPureSaga is bench scenario 2: a signed request, a 3-step pure saga
// answered in the request, one durable write.
func BenchmarkHotPathSyncPureSaga(b *testing.B) { benchHotPath(b, "sync", http.StatusOK) }

// BenchmarkHotPathAsyncAccept is bench scenario 3: a signed request accepted durably and run
// by a worker.
func BenchmarkHotPathAsyncAccept(b *testing.B) { benchHotPath(b, "async", http.StatusOK) }
