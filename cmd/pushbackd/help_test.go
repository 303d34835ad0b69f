package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// commandForms are the "pushbackd CMD ..." synopses in text: each line that starts with
// "pushbackd " (after indentation), up to the description that follows two or more spaces,
// with runs of spaces made one.
func commandForms(text string) []string {
	gap := regexp.MustCompile(`\s{2,}`)
	var forms []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "pushbackd ") {
			continue
		}
		cmd, rest, _ := strings.Cut(line, " ")
		word, rest, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
		synopsis, _, _ := strings.Cut(gap.Split(strings.TrimLeft(rest, " "), 2)[0], "\n")
		forms = append(forms, strings.Join(strings.Fields(cmd+" "+word+" "+synopsis), " "))
	}
	slices.Sort(forms)
	return forms
}

// --help and the README's "Command line" block list the same command forms, so neither
// shows a command the other lacks (the help once offered "runs list|show ID|replay ID" only).
func TestHelpListsEveryCommandFormTheReadmeDoes(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Command line\n")
	if !ok {
		t.Fatal(`README.md has no "## Command line" section`)
	}
	_, block, _ := strings.Cut(section, "```\n")
	block, _, _ = strings.Cut(block, "```")
	want := commandForms(block)
	code, help, errOut := runCLI(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d: %s", code, errOut)
	}
	got := commandForms(help)
	for _, f := range want {
		if !slices.Contains(got, f) {
			t.Errorf("the README shows %q; --help does not", f)
		}
	}
	for _, f := range got {
		if !slices.Contains(want, f) {
			t.Errorf("--help shows %q; the README's Command line block does not", f)
		}
	}
	// Every command the binary dispatches has a form in both.
	for _, cmd := range []string{"serve", "validate", "sign", "curl", "plan", "runs", "test"} {
		if !slices.ContainsFunc(got, func(f string) bool { return strings.HasPrefix(f, "pushbackd "+cmd+" ") }) {
			t.Errorf("--help has no form of %s", cmd)
		}
	}
	t.Run("the runs forms name every runs sub-command", func(t *testing.T) {
		for _, sub := range []string{"list", "show ID", "replay ID", "replay [filters]", "retry ID", "cancel ID"} {
			if !strings.Contains(help, sub) {
				t.Errorf("--help lacks runs %s", sub)
			}
		}
		if !strings.Contains(help, "-exit-with-parent") {
			t.Error("--help lacks serve -exit-with-parent")
		}
	})
}
