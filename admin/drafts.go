package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/sagatest"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// maxDraftBytes bounds a draft request: a saga and a test file, each held to the YAML
// parser's own limit when parsed, plus the JSON quoting around them.
const maxDraftBytes = 3 * yamlconf.MaxBytes

// draftTimeout bounds one draft test request: every case is a whole saga run.
const draftTimeout = time.Minute

// isDraft says whether a plan body carries a saga draft ({"saga": "<yaml>", ...}).
func isDraft(body []byte) bool {
	var probe struct {
		Saga json.RawMessage `json:"saga"`
	}
	return json.Unmarshal(body, &probe) == nil && len(probe.Saga) > 0
}

// parseDraft compiles a draft of saga name; its errors are a 422 naming the saga's file as
// validate and PUT do (relative to the config directory), so the editor marks them.
func (a *API) parseDraft(name, src string) (*saga.Saga, error) {
	s, errs := saga.Parse(a.sagaFile(name), []byte(src))
	if len(errs) > 0 {
		return nil, &apiError{code: http.StatusUnprocessableEntity, message: "the draft saga is invalid", errors: errs}
	}
	if s.Name != name {
		return nil, &apiError{code: http.StatusUnprocessableEntity, message: "the draft is saga " + s.Name + ", not " + name + ": post it to /admin/v1/sagas/" + s.Name}
	}
	return s, nil
}

// planDraft answers POST /sagas/{name}/plan with {"saga": "<yaml>", <sample keys>}: the
// plan of the draft for the sample (outputs included), nothing applied.
func (a *API) planDraft(c echo.Context, name string, body []byte) error {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		return &apiError{code: http.StatusBadRequest, message: "a draft plan is a JSON object: {\"saga\": \"<yaml>\", \"body\": ..., \"outputs\": {...}}"}
	}
	var src string
	if err := json.Unmarshal(in["saga"], &src); err != nil {
		return &apiError{code: http.StatusBadRequest, message: "saga: the draft's YAML as a JSON string"}
	}
	delete(in, "saga")
	s, err := a.parseDraft(name, src)
	if err != nil {
		return err
	}
	sample, _ := json.Marshal(in)
	p, err := gateway.PlanSagaSample(a.o.Control.Current(), s, sample)
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	return c.JSON(http.StatusOK, p)
}

// testSaga answers POST /sagas/{name}/test: the saga's tests run offline, as `pushbackd
// test` does. The body may give a draft ("saga") and test cases ("tests", a test file's
// YAML); without them the configured saga and its test file are used. Nothing is applied.
func (a *API) testSaga(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxDraftBytes))
	if err != nil {
		return &apiError{code: http.StatusRequestEntityTooLarge, message: "a draft test request is limited to 3 MiB"}
	}
	var in struct {
		Saga  *string `json:"saga"`
		Tests *string `json:"tests"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return &apiError{code: http.StatusBadRequest, message: "a test request is {\"saga\": \"<yaml>\", \"tests\": \"<yaml>\"}, both optional: " + err.Error()}
		}
	}
	cfg := a.o.Control.Current()
	s, ok := cfg.Sagas[name]
	if in.Saga != nil {
		if s, err = a.parseDraft(name, *in.Saga); err != nil {
			return err
		}
	} else if !ok {
		return &apiError{code: http.StatusNotFound, message: "no saga " + name + "; post a draft as \"saga\" to test one not applied"}
	}
	var f *sagatest.File
	if in.Tests != nil {
		f, err = sagatest.Parse("tests/"+name+".yaml", []byte(*in.Tests))
	} else {
		f, err = sagatest.LoadFile(filepath.Join(cfg.SagasDir(), "tests", name+".yaml"))
		if err != nil && !errors.As(err, new(yamlconf.Errors)) {
			return &apiError{code: http.StatusNotFound, message: "saga " + name + " has no test file; post the cases as \"tests\""}
		}
	}
	if err != nil {
		return &apiError{code: http.StatusUnprocessableEntity, message: "the tests are invalid", errors: relative(yamlconf.AsErrors(err), cfg)}
	}
	if f.Saga != "" && f.Saga != name {
		return &apiError{code: http.StatusUnprocessableEntity, message: "the tests are for saga " + f.Saga + ", not " + name}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), draftTimeout)
	defer cancel()
	results := sagatest.Run(ctx, cfg, s, f)
	passed := 0
	for _, r := range results {
		if r.Passed {
			passed++
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"passed": passed, "failed": len(results) - passed, "results": results})
}
