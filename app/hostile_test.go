package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/hostileyaml"
)

// PUT /admin/v1/sagas/{name} on a real admin listener refuses every hostile document: 422
// with the positioned error naming its limit (413 for a body over the API's 1 MiB), nothing
// written, the running configuration kept and serving, in bounded time and heap.
func TestTheAdminAPIRefusesAThousandHostileSagas(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	before := a.Current()
	runtime.GC()
	runtime.GC()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	began := time.Now()
	for _, doc := range hostileyaml.Corpus() {
		src := doc.Src()
		code, raw, _ := c.do("PUT", "/admin/v1/sagas/hostile", c.token, string(src))
		if len(src) > hostileyaml.MaxBytes && code == 413 {
			continue
		}
		var out struct {
			Errors []struct {
				File         string
				Line, Column int
				Message      string
			}
		}
		_ = json.Unmarshal([]byte(raw), &out)
		if code != 422 || len(out.Errors) != 1 {
			t.Errorf("%s: %d %.300s, want 422 and one error", doc.Name, code, raw)
			continue
		}
		if e := out.Errors[0]; e.File != "sagas/hostile.yaml" || e.Line < 1 || e.Column < 1 || !strings.Contains(e.Message, doc.Want) {
			t.Errorf("%s: error %+v, want one positioned in sagas/hostile.yaml naming %q", doc.Name, e, doc.Want)
		}
	}
	elapsed := time.Since(began)
	runtime.GC()
	runtime.GC()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	growth := int64(end.HeapAlloc) - int64(start.HeapAlloc)
	t.Logf("1000 PUTs refused in %v; heap %+d KB after them", elapsed.Round(time.Millisecond), growth>>10)
	if elapsed > 2*time.Minute {
		t.Errorf("took %v", elapsed)
	}
	if growth > 32<<20 {
		t.Errorf("the heap grew by %d bytes", growth)
	}
	if a.Current() != before {
		t.Error("a refused PUT replaced the configuration")
	}
	if _, err := os.Stat(before.SagaFile("hostile")); !os.IsNotExist(err) {
		t.Errorf("a refused saga reached the disk: %v", err)
	}
	if code, body := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
		t.Errorf("after the PUTs the running saga answers %d %v", code, body)
	}
}

// A hostile file dropped into the config directory, picked up by the file watcher or by
// POST /admin/v1/reload, is refused with its position; the old configuration keeps serving.
func TestAReloadWithAHostileFileKeepsTheOldConfig(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	before := a.Current()
	dir := before.Dir
	// Each file is overwritten, never removed, until the end: every reload in between, the
	// watcher's included, sees a hostile file and must fail.
	defer func() {
		for _, role := range []string{"partners/hostile.yaml", "sagas/hostile.yaml"} {
			_ = os.Remove(filepath.Join(dir, role))
		}
	}()
	// One document of each kind the corpus holds.
	seen := map[string]bool{}
	for _, doc := range hostileyaml.Corpus() {
		if seen[doc.Want] || len(doc.Src()) > hostileyaml.MaxBytes/4 {
			continue
		}
		seen[doc.Want] = true
		for _, role := range []string{"partners/hostile.yaml", "sagas/hostile.yaml"} {
			t.Run(fmt.Sprintf("%s in %s", doc.Name, role), func(t *testing.T) {
				if err := os.WriteFile(filepath.Join(dir, role), doc.Src(), 0o600); err != nil {
					t.Fatal(err)
				}
				out := c.json("POST", "/admin/v1/reload", "", 422)
				found := false
				for _, e := range out["errors"].([]any) {
					e := e.(map[string]any)
					found = found || (e["file"] == role && e["line"].(float64) >= 1 && e["column"].(float64) >= 1 && strings.Contains(fmt.Sprint(e["message"]), doc.Want))
				}
				if !found {
					t.Errorf("reload errors %v, want one positioned in %s naming %q", out["errors"], role, doc.Want)
				}
				if a.Current() != before {
					t.Fatal("a failed reload replaced the configuration")
				}
				if code, body := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
					t.Errorf("the old config answers %d %v", code, body)
				}
				ready := c.json("GET", "/readyz", "", 200)
				if lr := ready["last_reload"].(map[string]any); lr["ok"] != false || !strings.Contains(fmt.Sprint(lr["errors"]), doc.Want) {
					t.Errorf("/readyz does not show the failed reload: %v", lr)
				}
			})
		}
	}
	if len(seen) < 8 {
		t.Errorf("only %d kinds of hostile document tried", len(seen))
	}
}
