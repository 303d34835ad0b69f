package saga

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
)

// A retry is a new run that starts where a failed run stopped: the steps that finished keep
// their outputs and are not called again, and the failed step runs first. It is built from
// the failed run's result (its checkpoint is gone once the run is final), which holds every
// finished step's record and the final vars, redacted exactly as checkpoints are.

// RetryState is the checkpoint a retry of a failed run of old starts from, as run runID
// under cur (whose steps up to the failed one must be old's: StepsUnchanged). result is the
// failed run's stored result (Result's JSON).
func RetryState(old, cur *Saga, runID string, result []byte) (*State, error) {
	var res Result
	if err := json.Unmarshal(result, &res); err != nil {
		return nil, fmt.Errorf("the run's result is unreadable: %w", err)
	}
	n := len(res.Steps)
	if res.FailedStep == "" || n == 0 || res.Steps[n-1].Name != res.FailedStep {
		return nil, fmt.Errorf("the run's result names no failed step to retry from")
	}
	if err := StepsUnchanged(old, cur, res.FailedStep); err != nil {
		return nil, err
	}
	st := &State{
		RunID: runID, SagaVersion: cur.Version, Phase: PhaseForward, // Started: the retry times itself
		Next: n - 1, Vars: res.Vars, Steps: make(map[string]StepState, n-1),
		Records: res.Steps[:n-1],
	}
	if st.Vars == nil {
		st.Vars = map[string]any{}
	}
	for i, rec := range st.Records {
		if rec.Name != cur.Steps[i].Name {
			return nil, fmt.Errorf("the run's records do not follow the saga's steps (%s at %d)", rec.Name, i)
		}
		// History cuts outputs to MaxOutputBytes; a later step reading a cut one would get
		// a string where it expects the document.
		if s, ok := rec.Output.(string); ok && strings.Contains(s, "…(truncated, ") {
			return nil, fmt.Errorf("step %s's output was too large to keep in the run's history: replay the run instead", rec.Name)
		}
		st.Steps[rec.Name] = StepState{Status: rec.Status, Output: rec.Output, Attempts: rec.Attempts, Error: rec.Error}
	}
	return st, nil
}

// StepsUnchanged reports, as an error that names the first difference, whether cur's steps
// up to and including step through are old's: the same steps in the same order, each
// defined alike (its action, condition, retry, timeout and compensation). Definitions are
// compared as the YAML values they decode to, so comments, layout and edits elsewhere in
// the file do not count as changes.
func StepsUnchanged(old, cur *Saga, through string) error {
	k := -1
	for i, s := range old.Steps {
		if s.Name == through {
			k = i
			break
		}
	}
	if k < 0 {
		return fmt.Errorf("saga %s has no step %s", old.Name, through)
	}
	if old.Version == cur.Version {
		return nil
	}
	a, err := sourceSteps(old)
	if err != nil {
		return err
	}
	b, err := sourceSteps(cur)
	if err != nil {
		return err
	}
	for i := 0; i <= k; i++ {
		if i >= len(b) || i >= len(a) || !reflect.DeepEqual(a[i], b[i]) {
			return fmt.Errorf("step %s of saga %s changed since the run: replay it instead", old.Steps[i].Name, old.Name)
		}
	}
	return nil
}

// sourceSteps decodes the steps list of s's source. Sources were checked (and bounded) by
// Load before they were applied, so this decode cannot blow up.
func sourceSteps(s *Saga) ([]any, error) {
	var doc struct {
		Steps []any `yaml:"steps"`
	}
	if err := yaml.Unmarshal(s.Source, &doc); err != nil {
		return nil, fmt.Errorf("saga %s version %s: %w", s.Name, s.Version, err)
	}
	return doc.Steps, nil
}
