package sagatest

import (
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// FuzzParse: a test file either parses or is refused with positioned errors; it never
// panics, and a parsed file keeps the bounds Parse promises.
func FuzzParse(f *testing.F) {
	f.Add([]byte("cases:\n  - name: x\n    mocks: {a: [{status: 200, body: {k: v}}]}\n    expect: {status: succeeded, steps: {a: {attempts: 1}}}\n"))
	f.Add([]byte("cases: []\n"))
	f.Add([]byte("cases:\n  - {name: x, request: {raw: t, body: 1}, expect: {}}\n"))
	f.Add([]byte("saga: a\ncases: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse("t.yaml", src)
		if err != nil {
			for _, e := range asErrors(err) {
				if e.Line < 1 || e.Column < 1 || strings.TrimSpace(e.Message) == "" || e.File != "t.yaml" {
					t.Errorf("unusable error %#v", e)
				}
			}
			return
		}
		if len(file.Cases) == 0 || len(file.Cases) > MaxCases {
			t.Errorf("parsed a file of %d cases", len(file.Cases))
		}
		for _, c := range file.Cases {
			for _, ms := range c.Mocks {
				if len(ms) > MaxMocksPerStep {
					t.Errorf("parsed %d mocks for one step", len(ms))
				}
			}
		}
	})
}

func asErrors(err error) []yamlconf.Error { return yamlconf.AsErrors(err) }
