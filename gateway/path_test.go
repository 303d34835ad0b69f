package gateway

import (
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/config"
)

// splitPathByPattern is splitPath as it was written first, with config.IDPattern: the
// reference the allocation-free one must agree with.
func splitPathByPattern(escaped string) (partner, site, endpoint string, ok bool) {
	rest, found := strings.CutPrefix(escaped, "/pushback/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		if !config.IDPattern.MatchString(p) {
			return "", "", "", false
		}
	}
	switch len(parts) {
	case 2:
		return parts[0], "", parts[1], true
	case 3:
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

var pathSeeds = []string{
	"/pushback/acme/encompass", "/pushback/acme/site-1/encompass", "/pushback/acme",
	"/pushback/acme/a/b/c", "/pushback/Acme/x", "/pushback/-acme/x", "/pushback/acme-/x",
	"/pushback/acme//x", "/pushback/acme/x/", "/pushback//x", "/pushback/../x", "/pushback/a%2Fb/x",
	"/pushback/" + strings.Repeat("a", 63) + "/x", "/pushback/" + strings.Repeat("a", 64) + "/x",
	"/pushback/", "/pushbackacme/x", "/other/acme/x", "/pushback/acme/x\n", "/pushback/acme/\u00e9",
}

func TestSplitPathAgreesWithTheIDPattern(t *testing.T) {
	for _, p := range pathSeeds {
		t.Run(p, func(t *testing.T) {
			checkSplitPath(t, p)
		})
	}
}

func FuzzSplitPath(f *testing.F) {
	for _, p := range pathSeeds {
		f.Add(p)
	}
	f.Fuzz(checkSplitPath)
}

func checkSplitPath(t *testing.T, p string) {
	a, b, c, ok := splitPath(p)
	wa, wb, wc, wok := splitPathByPattern(p)
	if a != wa || b != wb || c != wc || ok != wok {
		t.Fatalf("splitPath(%q) = %q %q %q %v; the pattern says %q %q %q %v", p, a, b, c, ok, wa, wb, wc, wok)
	}
}

func TestSplitPathAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { splitPath("/pushback/acme/site-1/encompass") }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
