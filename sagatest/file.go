// Package sagatest runs saga test files: each case sends one request through the real
// saga engine, offline (http steps get mocked answers in-process, by step name) and on a
// fake clock (retry waits and backoff take no time), then checks what the run did against
// the case's expectations and reports each difference by its path.
//
// A test file is YAML, read with yamlconf (bounded, positioned errors, unknown keys
// refused); `pushbackd test` finds the tests of saga NAME in <sagas_dir>/tests/NAME.yaml.
// The tests folder sits inside sagas_dir because the saga loader reads only the folder's
// own files, not its sub-folders.
package sagatest

import (
	"fmt"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// Bounds on one test file beyond yamlconf's own: a file is run case by case, every case a
// whole saga run, so the counts are what bound the work one file asks for.
const (
	MaxCases        = 200 // cases in one file
	MaxMocksPerStep = 100 // mocked answers for one step in one case
)

// File is one saga test file.
type File struct {
	// Saga is the saga the cases run; "" takes the file's name.
	Saga  string `yaml:"saga"`
	Cases []Case `yaml:"cases,required"`
	Pos   yamlconf.Pos
	Path  string `yaml:"-"`
}

// Case is one request and what its run must do.
type Case struct {
	Name    string  `yaml:"name,required"`
	Request Request `yaml:"request"`
	// Settings and Secrets are laid over the partner's (and site's) for this case, so a
	// test needs no real secret and points urls where it likes (nothing is dialled).
	Settings map[string]any    `yaml:"settings"`
	Secrets  map[string]string `yaml:"secrets"`
	// KV is the partner's kv contents before the run: key → value (any JSON value).
	KV map[string]any `yaml:"kv"`
	// Mocks are the answers http steps get, by step name ("<step>.compensate" for a
	// compensation, "on_failure"): one per call, in order, so a list scripts retries.
	Mocks  map[string][]Mock `yaml:"mocks"`
	Expect Expect            `yaml:"expect,required"`
	Pos    yamlconf.Pos
}

// Request is the request the case sends; every key is optional (gateway.Sample).
type Request struct {
	Partner  string            `yaml:"partner"`
	Site     string            `yaml:"site"`
	Endpoint string            `yaml:"endpoint"`
	Method   string            `yaml:"method"`
	Headers  map[string]string `yaml:"headers"`
	Query    map[string]string `yaml:"query"`
	// Body is a JSON value sent as application/json; Raw is the body as text, parsed per
	// the Content-Type header as the gateway would. At most one of them.
	Body any     `yaml:"body"`
	Raw  *string `yaml:"raw"`
}

// Mock is one answer to one http call.
type Mock struct {
	Status  int               `yaml:"status"` // default 200
	Headers map[string]string `yaml:"headers"`
	// Body: a string is sent as it is; any other value as JSON (Content-Type
	// application/json unless Headers set one).
	Body any `yaml:"body"`
	// Error fails the call as a connection error with this message; Timeout as a request
	// that timed out. Either makes Status, Headers and Body meaningless.
	Error   string `yaml:"error"`
	Timeout bool   `yaml:"timeout"`
	Pos     yamlconf.Pos
}

// Expect is what the run must have done. Only what is written is checked.
type Expect struct {
	// Status is the run's final status: succeeded, failed, compensated,
	// compensation_failed.
	Status string `yaml:"status"`
	// Error is text the run's error must contain.
	Error string `yaml:"error"`
	// Steps: by step name, its status (succeeded, failed, skipped, compensated, or
	// not_reached) and how many tries it made.
	Steps map[string]StepExpect `yaml:"steps"`
	// Answer is the answer to the sender: status, headers (a subset), body (a subset:
	// maps need only the keys written, lists every item).
	Answer *AnswerExpect `yaml:"answer"`
	// KV: key → the value it must hold after the run; null for a key that must be absent.
	KV map[string]any `yaml:"kv"`
	// Requests: by step name as in Mocks, the requests it sent, in order (all of them).
	Requests map[string][]RequestExpect `yaml:"requests"`
}

// StepExpect is one step's expected outcome.
type StepExpect struct {
	Status   string `yaml:"status"`
	Attempts int    `yaml:"attempts"`
	Pos      yamlconf.Pos
}

// AnswerExpect is the expected answer; zero Status is not checked.
type AnswerExpect struct {
	Status  int               `yaml:"status"`
	Headers map[string]string `yaml:"headers"`
	Body    any               `yaml:"body"`
}

// RequestExpect is one expected outgoing request: method and url exactly, headers and body
// as subsets. Secrets in what was sent read "<secret>".
type RequestExpect struct {
	Method  string            `yaml:"method"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	Body    any               `yaml:"body"`
	Pos     yamlconf.Pos
}

// Parse reads a test file; every problem is positioned (file:line:col).
func Parse(path string, src []byte) (*File, error) {
	var f File
	if errs := yamlconf.DecodeFile(path, src, &f); len(errs) > 0 {
		return nil, errs
	}
	f.Path = path
	var errs yamlconf.Errors
	bad := func(p yamlconf.Pos, format string, args ...any) {
		errs = append(errs, yamlconf.Error{File: path, Line: p.Line, Column: p.Column, Message: fmt.Sprintf(format, args...)})
	}
	if len(f.Cases) == 0 {
		bad(f.Pos, "cases: a test file needs at least one case")
	}
	if len(f.Cases) > MaxCases {
		bad(f.Pos, "cases: %d cases, more than the %d one file may hold; split the file", len(f.Cases), MaxCases)
	}
	for i := range f.Cases {
		c := &f.Cases[i]
		if c.Request.Raw != nil && c.Request.Body != nil {
			bad(c.Pos, "case %q: request has both body and raw; give one", c.Name)
		}
		for step, ms := range c.Mocks {
			if len(ms) > MaxMocksPerStep {
				bad(c.Pos, "case %q: mocks.%s has %d answers, more than %d", c.Name, step, len(ms), MaxMocksPerStep)
			}
			for _, m := range ms {
				if m.Error != "" && m.Timeout {
					bad(m.Pos, "case %q: mocks.%s: give error or timeout, not both", c.Name, step)
				}
				if m.Status != 0 && (m.Status < 100 || m.Status > 999) {
					bad(m.Pos, "case %q: mocks.%s: status %d is not an HTTP status", c.Name, step, m.Status)
				}
			}
		}
		for step, st := range c.Expect.Steps {
			switch st.Status {
			case "", "succeeded", "failed", "skipped", "compensated", NotReached:
			default:
				bad(st.Pos, "case %q: expect.steps.%s.status %q: want succeeded, failed, skipped, compensated or %s", c.Name, step, st.Status, NotReached)
			}
		}
		switch c.Expect.Status {
		case "", "succeeded", "failed", "compensated", "compensation_failed":
		default:
			bad(c.Pos, "case %q: expect.status %q: want succeeded, failed, compensated or compensation_failed", c.Name, c.Expect.Status)
		}
	}
	return &f, errs.Err()
}

// NotReached is the status a step the run never got to is expected with.
const NotReached = "not_reached"
