package store_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/pushbackd/pushbackd"

// Where a backend may be named: the programs that choose one. Every other package takes
// a store through an interface it declares, so a Postgres backend needs no change there.
var chooseBackend = []string{module + "/app", module + "/bench", module + "/cmd/pushbackd"}

// TestStoreLayout holds the package layout that lets another backend join from outside
// package store: the shared rules stay here, each backend is its own package, and only
// the embedded backend knows bbolt.
func TestStoreLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// One line per package: its path, then what it and its tests import.
	cmd := exec.Command(goTool, "list", "-f",
		`{{.ImportPath}} {{join .Imports " "}} | {{join .TestImports " "}} {{join .XTestImports " "}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	imports := map[string][]string{}     // package -> non-test imports
	testImports := map[string][]string{} // package -> test imports
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		code, tests, _ := strings.Cut(sc.Text(), "|")
		f := strings.Fields(code)
		imports[f[0]], testImports[f[0]] = f[1:], strings.Fields(tests)
	}
	backends := []string{module + "/store/bolt", module + "/store/memory", module + "/store/postgres"}
	for _, b := range backends {
		if _, ok := imports[b]; !ok {
			t.Fatalf("no backend package %s", b)
		}
	}
	isBackend := func(p string) bool {
		return strings.HasPrefix(p, module+"/store/") && p != module+"/store/storetest"
	}

	t.Run("only store/bolt imports bbolt", func(t *testing.T) {
		for p := range imports {
			if p == module+"/store/bolt" {
				continue
			}
			if slices.Contains(imports[p], "go.etcd.io/bbolt") || slices.Contains(testImports[p], "go.etcd.io/bbolt") {
				t.Errorf("%s imports go.etcd.io/bbolt; only store/bolt may", p)
			}
		}
	})
	t.Run("only store/postgres and its test helper import pgx", func(t *testing.T) {
		for p := range imports {
			if p == module+"/store/postgres" || p == module+"/internal/pgtest" {
				continue
			}
			for _, i := range append(slices.Clone(imports[p]), testImports[p]...) {
				if strings.HasPrefix(i, "github.com/jackc/pgx/") {
					t.Errorf("%s imports %s; only store/postgres (and internal/pgtest) may", p, i)
				}
			}
		}
	})
	t.Run("store and storetest depend on no backend", func(t *testing.T) {
		for _, p := range []string{module + "/store", module + "/store/storetest"} {
			for _, i := range imports[p] {
				if isBackend(i) {
					t.Errorf("%s imports backend %s", p, i)
				}
			}
		}
	})
	t.Run("backends share rules through store, not through each other", func(t *testing.T) {
		for _, b := range backends {
			if !slices.Contains(imports[b], module+"/store") {
				t.Errorf("%s does not import store", b)
			}
			for _, i := range imports[b] {
				if isBackend(i) {
					t.Errorf("%s imports backend %s", b, i)
				}
			}
		}
	})
	t.Run("every backend runs the contract suite", func(t *testing.T) {
		for _, b := range backends {
			if !slices.Contains(testImports[b], module+"/store/storetest") {
				t.Errorf("%s's tests do not import storetest", b)
			}
		}
	})
	t.Run("only the programs that choose a backend name one", func(t *testing.T) {
		for p, is := range imports {
			if isBackend(p) || slices.Contains(chooseBackend, p) {
				continue
			}
			for _, i := range is {
				if isBackend(i) {
					t.Errorf("%s imports backend %s: declare the interface it uses and take the store through it", p, i)
				}
			}
		}
	})
}
