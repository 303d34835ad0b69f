package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// `pushbackd validate` on a config holding a hostile file exits 1 with the positioned
// refusal, instead of running out of memory or stack as it did.
func TestValidateRefusesHostileYAMLWithItsPosition(t *testing.T) {
	laughs := `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n"
	for i := 1; i <= 8; i++ {
		name, prev := string(rune('a'+i)), string(rune('a'+i-1))
		laughs += fmt.Sprintf("%s: &%s [%s]\n", name, name, strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ","))
	}
	tests := []struct {
		name, file, src, want string
	}{
		{"an alias cycle in a partner file", "partners/a.yaml", "id: a\nsettings: &s [1, *s]\n",
			"partners/a.yaml:2:18: alias *s is inside the value of its own anchor &s (line 2): an alias cycle would never end"},
		{"billion laughs in a saga file", "sagas/laughs.yaml", laughs,
			"sagas/laughs.yaml:6:14: aliases expand the document to more than 250000 nodes, the limit"},
		{"flow nesting 100,000 deep in pushbackd.yaml", "pushbackd.yaml", "listen: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n",
			"pushbackd.yaml:1:72: nesting is deeper than the limit of 64 levels of mappings and lists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: 127.0.0.1:0\n")
			mustWrite(t, filepath.Join(dir, "partners", "README"), "no partners yet\n")
			mustWrite(t, filepath.Join(dir, tt.file), tt.src)
			code, out, errOut := runCLI(t, "", "validate", "-config", filepath.Join(dir, "pushbackd.yaml"))
			if code != 1 || out != "" {
				t.Fatalf("exit %d, stdout %q", code, out)
			}
			if !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, "1 problem(s) found") {
				t.Errorf("stderr lacks %q and the count:\n%.2000s", tt.want, errOut)
			}
		})
	}
}
