package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/hostileyaml"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// Loading a configuration from disk refuses every hostile document, whichever file it is in
// (pushbackd.yaml, a saga or a partner file), with an error positioned in that file.
func TestLoadRefusesAThousandHostileFiles(t *testing.T) {
	cfgPath := writeConfig(t, map[string]string{})
	dir := filepath.Dir(cfgPath)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	roles := []string{"pushbackd.yaml", "sagas/hostile.yaml", "partners/hostile.yaml"}
	began := time.Now()
	for i, doc := range hostileyaml.Corpus() {
		role := roles[i%len(roles)]
		path := filepath.Join(dir, role)
		if err := os.WriteFile(path, doc.Src(), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(cfgPath)
		var errs yamlconf.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("%s in %s: loaded, or failed without positions: %v", doc.Name, role, err)
		}
		found := false
		for _, e := range errs {
			found = found || (e.File == path && e.Line >= 1 && e.Column >= 1 && strings.Contains(e.Message, doc.Want))
		}
		if !found {
			t.Errorf("%s in %s: no positioned error naming %q in %v", doc.Name, role, doc.Want, errs)
		}
		if role == "pushbackd.yaml" {
			err = os.WriteFile(path, good, 0o600)
		} else {
			err = os.Remove(path)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(cfgPath); err != nil {
		t.Fatalf("the config is not valid again after the hostile files went: %v", err)
	}
	if elapsed := time.Since(began); elapsed > time.Minute {
		t.Errorf("took %v", elapsed)
	} else {
		t.Logf("1000 files refused in %v", elapsed.Round(time.Millisecond))
	}
}

// A partner "file" that never ends is read no further than one byte past the size limit.
func TestAPartnerFileThatNeverEndsIsRefusedAfterOneMebibyte(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip(err)
	}
	cfgPath := writeConfig(t, map[string]string{})
	partner := filepath.Join(filepath.Dir(cfgPath), "partners", "endless.yaml")
	if err := os.Symlink("/dev/zero", partner); err != nil {
		t.Skip(err)
	}
	_, err := Load(cfgPath)
	errs := yamlconf.AsErrors(err)
	if len(errs) != 1 || errs[0].File != partner || !strings.Contains(errs[0].Message, "over the limit of 1048576 bytes") {
		t.Fatalf("errors %v", errs)
	}
}
