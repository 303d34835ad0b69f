package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/sagatest"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// testsDir is where the tests of the configuration's sagas live: NAME.yaml tests saga NAME.
func testsDir(cfg *config.Config) string { return filepath.Join(cfg.SagasDir(), "tests") }

// loadDraft reads a saga file that is not applied; its problems are positioned.
func loadDraft(path string) (*saga.Saga, error) {
	src, err := yamlconf.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, errs := saga.Parse(path, src)
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// reportTestFileError says why a test file could not be used. A file that is not there is
// the common case — a mistyped saga, or a saga nobody wrote tests for — so it says which,
// and where it looked, instead of the bare error of open.
func reportTestFileError(w io.Writer, err error, path, name string, defaultPath bool, sagas map[string]*saga.Saga, sagasDir string) {
	var pe *os.PathError
	switch {
	case defaultPath && errors.Is(err, os.ErrNotExist) && sagas[name] == nil:
		known := "there are none"
		if len(sagas) > 0 {
			known = "known: " + strings.Join(slices.Sorted(maps.Keys(sagas)), ", ")
		}
		fmt.Fprintf(w, "pushbackd test: no saga %q in %s (%s), and no test file %s\n", name, sagasDir, known, path)
	case defaultPath && errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(w, "pushbackd test: saga %q has no test file: looked for %s\n", name, path)
	case errors.As(err, &pe):
		fmt.Fprintf(w, "pushbackd test: cannot read test file %s: %v\n", path, pe.Err)
	default:
		printConfigErrors(w, err)
	}
}

func cmdTest(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("test", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml (partners, settings, sagas_dir)")
	asJSON := fs.Bool("json", false, "print machine-readable results")
	draftPath := fs.String("saga", "", "a saga file to test instead of the configured saga of its name (a draft, not applied)")
	file := fs.String("file", "", "the test file (default: <sagas_dir>/tests/SAGA.yaml)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pushbackd test [SAGA...] [-json] [-saga draft.yaml] [-file tests.yaml] [-config ...]")
		fs.PrintDefaults()
	}
	names, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	sagas := cfg.Sagas
	if *draftPath != "" {
		draft, err := loadDraft(*draftPath)
		if err != nil {
			printConfigErrors(stderr, err)
			return 1
		}
		sagas = maps.Clone(cfg.Sagas)
		sagas[draft.Name] = draft
		if len(names) == 0 {
			names = []string{draft.Name}
		}
	}
	if *file != "" && len(names) > 1 {
		fmt.Fprintln(stderr, "pushbackd test: -file names one test file: give at most one SAGA")
		return 2
	}
	if len(names) == 0 && *file == "" {
		names, err = testedSagas(testsDir(cfg))
		if err != nil {
			fmt.Fprintf(stderr, "pushbackd test: %v\n", err)
			return 1
		}
		for _, n := range slices.Sorted(maps.Keys(cfg.Sagas)) {
			if !slices.Contains(names, n) {
				fmt.Fprintf(stderr, "pushbackd test: saga %s has no tests (%s)\n", n, filepath.Join(testsDir(cfg), n+".yaml"))
			}
		}
	}
	if len(names) == 0 && *file != "" {
		names = []string{""}
	}
	var results []sagatest.Result
	broken := false
	for _, name := range names {
		path := *file
		if path == "" {
			path = filepath.Join(testsDir(cfg), name+".yaml")
		}
		f, err := sagatest.LoadFile(path)
		if err != nil {
			reportTestFileError(stderr, err, path, name, *file == "", sagas, cfg.SagasDir())
			broken = true
			continue
		}
		sagaName := f.Saga
		if sagaName == "" {
			sagaName = name
		}
		if sagaName == "" {
			sagaName = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
		s, ok := sagas[sagaName]
		if !ok {
			fmt.Fprintf(stderr, "%s: no saga %q in %s\n", path, sagaName, cfg.SagasDir())
			broken = true
			continue
		}
		results = append(results, sagatest.Run(ctx, cfg, s, f)...)
	}
	passed := 0
	for _, r := range results {
		if r.Passed {
			passed++
		}
	}
	failed := len(results) - passed
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if results == nil {
			results = []sagatest.Result{}
		}
		_ = enc.Encode(struct {
			Passed  int               `json:"passed"`
			Failed  int               `json:"failed"`
			Results []sagatest.Result `json:"results"`
		}{passed, failed, results})
	} else {
		for _, r := range results {
			if r.Passed {
				fmt.Fprintf(stdout, "PASS  %s: %s\n", r.Saga, r.Case)
				continue
			}
			fmt.Fprintf(stdout, "FAIL  %s: %s (%s)\n", r.Saga, r.Case, r.At)
			for _, f := range r.Failures {
				fmt.Fprintf(stdout, "        %s\n", f)
			}
		}
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	}
	if failed > 0 || broken {
		return 1
	}
	return 0
}

// testedSagas lists the sagas dir's tests folder: one name per NAME.yaml.
func testedSagas(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("no saga tests: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			names = append(names, strings.TrimSuffix(strings.TrimSuffix(n, ".yaml"), ".yml"))
		}
	}
	return names, nil
}
