package app

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

// serve measures the configuration's heap when one is applied (cmd/pushbackd/gc.go), so the
// garbage collector's limit follows a reload that grows or shrinks it.
func TestConfigAppliedIsCalledAtStartAndAfterEachAppliedReload(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     "data_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": partnerYAML,
	})
	for name, src := range sagaYAML {
		writeFiles(t, dir, map[string]string{"sagas/" + name + ".yaml": src})
	}
	var calls atomic.Int32
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Logger: zap.NewNop(), ConfigApplied: func() { calls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d calls after New, want 1", n)
	}
	if err := a.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls after a reload, want 2", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners/acme.yaml"), []byte("id: acme\nendpoints: [{name: x, saga: nope}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background(), "test"); err == nil {
		t.Fatal("a reload of an invalid configuration succeeded")
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls after a refused reload, want still 2", n)
	}
}
