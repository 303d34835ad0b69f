package admin

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/saga"
)

// run.schema.json describes the admin API's runs with additionalProperties false, so a
// field the API adds and the schema lacks makes every answer carrying it invalid (the
// test in app/compensation_test.go only sees the fields its runs happen to have). Each
// field of the views must be in the schema's object for it.
func TestRunSchemaNamesEveryFieldTheAPIWrites(t *testing.T) {
	raw, err := os.ReadFile("../configs/schema/run.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	views := map[string]any{"run": runView{}, "request": requestView{}, "result": saga.Result{}, "record": saga.StepRecord{},
		"progress": progressView{}, "current": currentView{}, "try": saga.Try{}}
	for def, view := range views {
		props := schema.Defs[def].Properties
		if len(props) == 0 {
			t.Fatalf("the schema has no properties for %s", def)
		}
		typ := reflect.TypeOf(view)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s is written by the API but not in run.schema.json's %s", typ.Name(), name, def)
			}
		}
	}
}
