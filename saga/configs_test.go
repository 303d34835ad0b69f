package saga

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEveryShippedSagaParses(t *testing.T) {
	files, err := filepath.Glob("../configs/sagas/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d saga files, want at least the 4 shipped ones", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, errs := Parse("sagas/"+filepath.Base(f), src)
			if len(errs) > 0 {
				t.Fatalf("errors:\n%v", errs)
			}
			if len(s.Version) != 12 {
				t.Errorf("Version = %q, want 12 hex digits", s.Version)
			}
		})
	}
}

func TestEveryShippedSagaPlansForEverySamplePayload(t *testing.T) {
	files, _ := filepath.Glob("../configs/sagas/*.yaml")
	payloads, _ := filepath.Glob("testdata/payloads/*.json")
	for _, f := range files {
		src, _ := os.ReadFile(f)
		s, errs := Parse("sagas/"+filepath.Base(f), src)
		if len(errs) > 0 {
			continue // reported by TestEveryShippedSagaParses
		}
		for _, p := range payloads {
			pr, err := Plan(s, invocation(s, payload(t, filepath.Base(p))))
			if err != nil || len(pr.Steps) != len(s.Steps) {
				t.Errorf("plan %s with %s: %v, %d steps", filepath.Base(f), filepath.Base(p), err, len(pr.Steps))
			}
		}
	}
}
