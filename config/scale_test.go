package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/scalefixture"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// writeScale lays out a config directory with n scale partners and returns pushbackd.yaml.
func writeScale(tb testing.TB, n int) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, d := range []string{"partners", "sagas"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	files := map[string]string{
		"pushbackd.yaml":        "listen: 127.0.0.1:0\nlog: {level: error}\n",
		"sagas/bench-sync.yaml": scalefixture.SyncSaga,
	}
	for i := range n {
		files[filepath.Join("partners", scalefixture.FileName(i))] = scalefixture.Partner(i)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return filepath.Join(dir, "pushbackd.yaml")
}

func TestLoadScaleShape(t *testing.T) {
	cfg, err := Load(writeScale(t, 20))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Partners) != 20 {
		t.Fatalf("partners = %d, want 20", len(cfg.Partners))
	}
	r, ok := cfg.Lookup("p00007", "s3", "e4")
	if !ok || r.Endpoint.Verifier() == nil || r.Endpoint.SagaRef() == nil || r.Endpoint.Mode != ModeSync {
		t.Fatalf("lookup p00007/s3/e4 = %+v, %v", r, ok)
	}
	if got := r.Settings()["region"]; got != "r0" {
		t.Fatalf("settings region = %v, want r0", got)
	}
	sec := r.Endpoint.Security.Resolved()
	if sec.Method != "signature" || sec.Header != "Elli-Signature" || len(sec.Secrets) != 1 || string(sec.Secrets[0].Reveal()) != "k-p00007-s3-e4" {
		t.Fatalf("resolved security = %+v", sec)
	}
}

// BenchmarkLoadScale loads bench scenario 5's shape; -benchtime=1x with PUSHBACKD_SCALE=10000
// reproduces the full 250,000-endpoint config.
func BenchmarkLoadScale(b *testing.B) {
	n := 1000
	if s := os.Getenv("PUSHBACKD_SCALE"); s != "" {
		if _, err := fmt.Sscan(s, &n); err != nil {
			b.Fatal(err)
		}
	}
	path := writeScale(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*25), "ns/endpoint")
}

// validID replaces IDPattern on the load path, so the two must never disagree.
func TestValidIDMatchesIDPattern(t *testing.T) {
	cases := []string{"", "a", "-", "-a", "a-", "a--b", "A", "aB", "a.b", "a_b", "a b", "é", "0", "p00001",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a\n", "\na", "a/b"}
	for c := range 128 {
		cases = append(cases, string(rune(c)), "a"+string(rune(c)), string(rune(c))+"a")
	}
	for _, s := range cases {
		if got, want := validID(s), IDPattern.MatchString(s); got != want {
			t.Errorf("validID(%q) = %v, IDPattern says %v", s, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range []string{"a", "-a", "a-b", "A", strings.Repeat("a", 64), "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validID(s), IDPattern.MatchString(s); got != want {
			t.Fatalf("validID(%q) = %v, IDPattern says %v", s, got, want)
		}
	})
}

// Partner files load on several workers; every file's errors must still all be reported,
// positioned, in file order, however the work was scheduled.
func TestParallelLoadReportsEveryFilesErrorsInOrder(t *testing.T) {
	files := map[string]string{}
	const n = 40
	for i := range n {
		files[fmt.Sprintf("partners/p%02d.yaml", i)] = fmt.Sprintf(`id: p%02d
endpoints:
  - name: e
    saga: nope
    colour: red
    security: {method: bearer, tokens: [{value: t}]}
`, i)
	}
	_, err := Load(writeConfig(t, files))
	errs := yamlconf.AsErrors(err)
	if len(errs) != 2*n {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), 2*n, err)
	}
	for i := range n {
		file := fmt.Sprintf("p%02d.yaml", i)
		want := []string{
			file + `:3:5: endpoint "e": saga "nope" not found`,
			file + `:5:5: unknown key "colour"`,
		}
		for j, w := range want {
			e := errs[2*i+j]
			if got := fmt.Sprintf("%s:%d:%d: %s", filepath.Base(e.File), e.Line, e.Column, e.Message); !strings.HasPrefix(got, w) {
				t.Errorf("error %d = %q, want prefix %q", 2*i+j, got, w)
			}
		}
	}
}

// TestScaleHeap measures what a loaded scale config costs the garbage collector: live heap
// bytes and heap objects per endpoint, and the wall time of a forced GC with the config
// live (every cycle marks all of it) against one without. Heavy, so it runs only with
// PUSHBACKD_SCALE=<partners>, e.g.
//
//	PUSHBACKD_SCALE=10000 go test ./config/ -run TestScaleHeap -v
func TestScaleHeap(t *testing.T) {
	s := os.Getenv("PUSHBACKD_SCALE")
	if s == "" {
		t.Skip("set PUSHBACKD_SCALE=<partners> to measure")
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	path := writeScale(t, n)
	endpoints := float64(n * 25)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	live := gcTimes(5)
	runtime.KeepAlive(cfg)
	cfg = nil
	runtime.GC()
	idle := gcTimes(5)

	t.Logf("%d partners, %d endpoints: %.0f heap bytes/endpoint, %.2f heap objects/endpoint, live heap %.1f MB",
		n, n*25, float64(after.HeapAlloc-before.HeapAlloc)/endpoints,
		float64(after.HeapObjects-before.HeapObjects)/endpoints, float64(after.HeapAlloc)/(1<<20))
	t.Logf("forced runtime.GC(): %v..%v with the config live, %v..%v without", live[0], live[len(live)-1], idle[0], idle[len(idle)-1])
}

// gcTimes times k forced collections, sorted.
func gcTimes(k int) []time.Duration {
	out := make([]time.Duration, k)
	for i := range out {
		start := time.Now()
		runtime.GC()
		out[i] = time.Since(start)
	}
	slices.Sort(out)
	return out
}
