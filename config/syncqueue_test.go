package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// A sync sender waits for its own run's answer, so a saga that debounces or serializes
// cannot serve it: the config says so, at the endpoint, naming where the saga says it.
func TestASyncEndpointRefusesASagaThatDebouncesOrSerializes(t *testing.T) {
	const debounces = "name: later\ndebounce: {key: \"${ body.id }\", wait: 10s}\nsteps:\n  - {name: a, respond: {status: 200}}\n"
	const serializes = "name: later\nserialize_by: \"${ body.id }\"\nsteps:\n  - {name: a, respond: {status: 200}}\n"
	endpoint := func(mode string) string {
		return "id: acme\nendpoints:\n  - {name: e, saga: later, mode: " + mode + ", security: {method: bearer, tokens: [{value: t}]}}\n"
	}
	cases := []struct {
		name, saga, mode string
		want             string // "" means valid
		sagaAt           string
	}{
		{"a sync endpoint on a debouncing saga is an error", debounces, "sync", `endpoint "e": mode sync cannot use saga "later", which debounces`, ":2:11)"},
		{"a sync endpoint on a serializing saga is an error", serializes, "sync", `endpoint "e": mode sync cannot use saga "later", which has serialize_by`, ":2:15)"},
		{"an async endpoint may use a debouncing saga", debounces, "async", "", ""},
		{"an async endpoint may use a serializing saga", serializes, "async", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, map[string]string{"sagas/later.yaml": c.saga, "partners/acme.yaml": endpoint(c.mode)})
			_, err := Load(path)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			errs := yamlconf.AsErrors(err)
			if len(errs) != 1 {
				t.Fatalf("errors: %v", err)
			}
			e := errs[0]
			dir := filepath.Dir(path)
			sagaFile := filepath.Join(dir, "sagas/later.yaml")
			if e.File != filepath.Join(dir, "partners/acme.yaml") || e.Line != 3 || e.Column != 5 ||
				!strings.Contains(e.Message, c.want) || !strings.Contains(e.Message, sagaFile+c.sagaAt) || !strings.Contains(e.Message, "mode: async") {
				t.Errorf("error %s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
			}
		})
	}
}
