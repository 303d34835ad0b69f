package saga

import (
	"strconv"
	"time"

	"github.com/pushbackd/pushbackd/internal/jsonenc"
)

// AppendJSON appends the Result's JSON — byte for byte what json.Marshal gives for it
// (TestResultAppendJSONMatchesMarshal) — without reflection: history stores it for every
// run, and through encoding/json it cost about as much as running a short saga.
func (r *Result) AppendJSON(dst []byte) ([]byte, error) {
	if !jsonTime(r.Started) {
		return jsonenc.AppendValue(dst, r) // times outside what appendTime matches: encoding/json decides
	}
	start := len(dst)
	var err error
	dst = append(dst, '{')
	if r.Answer != nil {
		dst = append(dst, `"answer":`...)
		if dst, err = r.Answer.appendJSON(dst); err != nil {
			return dst[:start], err
		}
		dst = append(dst, ',')
	}
	if r.Error != "" {
		dst = append(dst, `"error":`...)
		dst = append(jsonenc.AppendString(dst, r.Error), ',')
	}
	if r.FailedStep != "" {
		dst = append(dst, `"failed_step":`...)
		dst = append(jsonenc.AppendString(dst, r.FailedStep), ',')
	}
	dst = append(dst, `"started":`...)
	dst = appendTime(dst, r.Started)
	dst = append(dst, `,"duration":`...)
	dst = strconv.AppendInt(dst, int64(r.Duration), 10)
	for _, list := range []struct {
		key   string
		steps []StepRecord
	}{{`,"steps":`, r.Steps}, {`,"compensations":`, r.Compensations}} {
		if len(list.steps) == 0 {
			continue
		}
		dst = append(dst, list.key...)
		dst = append(dst, '[')
		for i := range list.steps {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = list.steps[i].appendJSON(dst); err != nil {
				return dst[:start], err
			}
		}
		dst = append(dst, ']')
	}
	if r.OnFailure != nil {
		dst = append(dst, `,"on_failure":`...)
		if dst, err = r.OnFailure.appendJSON(dst); err != nil {
			return dst[:start], err
		}
	}
	if len(r.Vars) > 0 {
		dst = append(dst, `,"vars":`...)
		if dst, err = jsonenc.AppendValue(dst, r.Vars); err != nil {
			return dst[:start], err
		}
	}
	return append(dst, '}'), nil
}

func (s *StepRecord) appendJSON(dst []byte) ([]byte, error) {
	if !jsonTime(s.Started) {
		return jsonenc.AppendValue(dst, s) // times outside what appendTime matches: encoding/json decides
	}
	start := len(dst)
	var err error
	dst = append(dst, `{"name":`...)
	dst = jsonenc.AppendString(dst, s.Name)
	dst = append(dst, `,"action":`...)
	dst = jsonenc.AppendString(dst, s.Action)
	dst = append(dst, `,"status":`...)
	dst = jsonenc.AppendString(dst, s.Status)
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(s.Attempts), 10)
	dst = append(dst, `,"started":`...)
	dst = appendTime(dst, s.Started)
	dst = append(dst, `,"duration":`...)
	dst = strconv.AppendInt(dst, int64(s.Duration), 10)
	if s.Input != nil {
		dst = append(dst, `,"input":`...)
		if dst, err = jsonenc.AppendValue(dst, s.Input); err != nil {
			return dst[:start], err
		}
	}
	if s.Output != nil {
		dst = append(dst, `,"output":`...)
		if dst, err = jsonenc.AppendValue(dst, s.Output); err != nil {
			return dst[:start], err
		}
	}
	if s.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = jsonenc.AppendString(dst, s.Error)
	}
	if len(s.Tries) > 0 {
		dst = append(dst, `,"tries":[`...)
		for i := range s.Tries {
			t := &s.Tries[i]
			if !jsonTime(t.Started) {
				return jsonenc.AppendValue(dst[:start], s)
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"status":`...)
			dst = jsonenc.AppendString(dst, t.Status)
			dst = append(dst, `,"started":`...)
			dst = appendTime(dst, t.Started)
			dst = append(dst, `,"duration":`...)
			dst = strconv.AppendInt(dst, int64(t.Duration), 10)
			if t.Error != "" {
				dst = append(dst, `,"error":`...)
				dst = jsonenc.AppendString(dst, t.Error)
			}
			if t.HTTPStatus != 0 {
				dst = append(dst, `,"http_status":`...)
				dst = strconv.AppendInt(dst, int64(t.HTTPStatus), 10)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if s.TriesDropped != 0 {
		dst = append(dst, `,"tries_dropped":`...)
		dst = strconv.AppendInt(dst, int64(s.TriesDropped), 10)
	}
	return append(dst, '}'), nil
}

func (a *Answer) appendJSON(dst []byte) ([]byte, error) {
	start := len(dst)
	var err error
	dst = append(dst, `{"status":`...)
	dst = strconv.AppendInt(dst, int64(a.Status), 10)
	if len(a.Headers) > 0 {
		dst = append(dst, `,"headers":`...)
		if dst, err = jsonenc.AppendValue(dst, a.Headers); err != nil {
			return dst[:start], err
		}
	}
	switch {
	case a.BodyJSON != nil:
		dst = append(append(dst, `,"body":`...), a.BodyJSON...)
	case a.Body != nil:
		dst = append(dst, `,"body":`...)
		if dst, err = jsonenc.AppendValue(dst, a.Body); err != nil {
			return dst[:start], err
		}
	}
	return append(dst, '}'), nil
}

// jsonTime says whether t is within what time.Time's MarshalJSON accepts (years 0-9999),
// so appendTime writes what it would; outside it, encoding/json decides (and refuses).
func jsonTime(t time.Time) bool {
	y := t.Year()
	_, offset := t.Zone()
	return y >= 0 && y <= 9999 && offset%60 == 0
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}
