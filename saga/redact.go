package saga

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/pushbackd/pushbackd/security"
)

const redacted = "<secret>"

// runState is what secret() needs during one run: the partner's secrets and the plain texts
// revealed so far, so that every recorded input, output and error can be scrubbed of them.
// Scrubbing by substring catches a secret wherever a template put it: inside a header value
// ("Bearer <token>"), a URL, a JSON body, an echoing server's answer.
type runState struct {
	secrets map[string]security.Secret

	mu       sync.Mutex // secret() runs on the run's goroutine; the mutex guards Plan and tests
	revealed []string
	replacer *redactor
}

func newRunState(secrets map[string]security.Secret) *runState {
	return &runState{secrets: secrets}
}

func (rs *runState) reveal(name string) (string, error) {
	s, ok := rs.secrets[name]
	if !ok {
		return "", fmt.Errorf("secret(%q): no such secret for this partner", name)
	}
	plain := string(s.Reveal())
	if plain == "" {
		return "", nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !slices.Contains(rs.revealed, plain) {
		rs.revealed = append(rs.revealed, plain)
		// Longest first, so a secret that contains another is replaced whole.
		slices.SortFunc(rs.revealed, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
		rs.replacer = &redactor{secrets: slices.Clone(rs.revealed)}
	}
	return plain, nil
}

// redactor replaces a run's few revealed secrets. A run reveals one or two, so scanning for
// each beats building a strings.Replacer, whose tables cost more than the scans they save.
type redactor struct{ secrets []string }

func (r *redactor) Replace(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

func (r *redactor) found(s string) bool {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			return true
		}
	}
	return false
}

// mentions reports whether any string in v holds a secret, so that clean values (nearly
// all) are recorded without a copy.
func (r *redactor) mentions(v any) bool {
	switch x := v.(type) {
	case string:
		return r.found(x)
	case map[string]any:
		for k, e := range x {
			if r.found(k) || r.mentions(e) {
				return true
			}
		}
	case map[string]string:
		for k, e := range x {
			if r.found(k) || r.found(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if r.mentions(e) {
				return true
			}
		}
	case []string:
		for _, e := range x {
			if r.found(e) {
				return true
			}
		}
	case StepState:
		return r.found(x.Error) || r.mentions(x.Output)
	case *Answer:
		return x != nil && (r.mentions(x.Headers) || r.mentions(x.Body))
	}
	return false
}

func (rs *runState) currentReplacer() *redactor {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.replacer
}

// redactString replaces every revealed secret in s.
func (rs *runState) redactString(s string) string {
	r := rs.currentReplacer()
	if r == nil {
		return s
	}
	return r.Replace(s)
}

// redact returns v with every revealed secret replaced in every string, map key included.
// Without revealed secrets it returns v itself; otherwise a copy, so the run's live values
// (which later steps may still need in the clear) are untouched.
func (rs *runState) redact(v any) any {
	r := rs.currentReplacer()
	if r == nil || !r.mentions(v) {
		return v
	}
	return redactWith(r, v)
}

func redactWith(r *redactor, v any) any {
	switch x := v.(type) {
	case string:
		return r.Replace(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.Replace(k)] = redactWith(r, e)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(x))
		for k, e := range x {
			out[r.Replace(k)] = r.Replace(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactWith(r, e)
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = r.Replace(e)
		}
		return out
	case StepState:
		x.Output = redactWith(r, x.Output)
		x.Error = r.Replace(x.Error)
		return x
	case *Answer:
		if x == nil {
			return x
		}
		a := *x
		a.Headers, _ = redactWith(r, x.Headers).(map[string]string)
		a.Body = redactWith(r, x.Body)
		return &a
	}
	return v
}
