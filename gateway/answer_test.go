package gateway

import (
	"encoding/json"
	"testing"

	"github.com/pushbackd/pushbackd/payload"
)

// The hand-written encoder must give what encoding/json gives, since recorded answers are
// replayed to duplicates and clients parse every answer.
func TestAnswersEncodeAsEncodingJSONWould(t *testing.T) {
	cases := []struct {
		name string
		a    Answer
	}{
		{"a bare status and code encode with nothing else", Answer{Status: "Unauthorized", Code: 401}},
		{"the 401 to a guess encodes with its message", Answer{Status: "Unauthorized", Code: 401, Message: unauthorizedMessage}},
		{"an accept encodes with its run id", Answer{Status: "Accepted", Code: 202, Message: "accepted", RunID: "01a21cbd-e334-702d-b4eb-692d35560e13"}},
		{"a duplicate encodes its flag", Answer{Status: "OK", Code: 200, Message: "duplicate of an accepted request; nothing ran", RunID: "x", Duplicate: true}},
		{"HTML, quotes, control bytes and bad UTF-8 are escaped as encoding/json does", Answer{Status: "<b>&\"\\\n\t\x01\u2028\xff", Code: -1, Message: "é ☃ </script>"}},
		{"schema problems encode through encoding/json", Answer{Status: "Bad Request", Code: 400, Message: "m", Errors: []payload.Problem{{}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.a.appendJSON([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix"+string(want) {
				t.Errorf("got  %s\nwant prefix%s", got, want)
			}
		})
	}
}

func FuzzAnswerEncoding(f *testing.F) {
	f.Add("Accepted", 202, "accepted", "run", false)
	f.Add("<&>", -1, "\u2028\xff", "\x00", true)
	f.Fuzz(func(t *testing.T, status string, code int, msg, runID string, dup bool) {
		a := Answer{Status: status, Code: code, Message: msg, RunID: runID, Duplicate: dup}
		want, err := json.Marshal(a)
		if err != nil {
			t.Skip()
		}
		got, err := a.appendJSON(nil)
		if err != nil || string(got) != string(want) {
			t.Fatalf("got %s (%v), want %s", got, err, want)
		}
	})
}
