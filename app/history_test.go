package app

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/store"
)

// history.max_output_bytes sets where a step's recorded output is cut: the run works on
// the whole value, the history keeps the cut one.
func TestHistoryMaxOutputBytesCutsRecordedOutputs(t *testing.T) {
	files := func(conf string) map[string]string {
		return map[string]string{
			"pushbackd.yaml":     conf,
			"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: keep, security: {method: bearer, tokens: [{value: t}]}}]\n",
			"sagas/keep.yaml":    "name: keep\nsteps:\n  - {name: keep, set: {big: \"${ body.big }\"}}\n  - {name: check, when: 'len(vars.big) != 3000', fail: the run saw a cut value}\n",
		}
	}
	body := `{"big":"` + strings.Repeat("x", 3000) + `"}`
	for _, tc := range []struct {
		name, conf string
		cut        bool
	}{
		{"1,024 bytes cuts a 3,000-byte value", "history: {max_output_bytes: 1024}\n", true},
		{"the default (64 KiB) keeps it whole", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startWith(t, files(tc.conf))
			code, id := postRun(t, a, "e", body)
			if code != 200 && code != 202 {
				t.Fatalf("post: %d", code)
			}
			run := waitRun(t, a, id, store.StatusSucceeded)
			var res struct {
				Steps []struct {
					Name  string
					Input any
				}
			}
			if err := json.Unmarshal(run.Result, &res); err != nil || len(res.Steps) == 0 || res.Steps[0].Name != "keep" {
				t.Fatalf("result %s: %v", run.Result, err)
			}
			recorded, _ := json.Marshal(res.Steps[0].Input)
			cut := strings.Contains(string(recorded), "…(truncated, 3010 bytes)")
			if cut != tc.cut {
				t.Fatalf("recorded input %.80s… cut: %v, want %v", recorded, cut, tc.cut)
			}
			if tc.cut && len(recorded) > 1100 {
				t.Errorf("the cut input is %d bytes of JSON, want about 1,024", len(recorded))
			}
		})
	}
}
