package saga

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pushbackd/pushbackd/security"
)

const redacted = "<secret>"

// runState is what secret() needs during one run: the partner's secrets and the texts
// revealed so far, so that every recorded input, output and error can be scrubbed of them.
// Scrubbing by substring catches a secret wherever a template put it: inside a header value
// ("Bearer <token>"), a URL, a JSON body, an echoing server's answer. Each revealed text is
// scrubbed in the encodings a template or a downstream is likely to wrap it in (base64,
// hex, URL escaping: secretForms); a value built from several secrets ("Basic " +
// base64(user:pw)) matches none of them, which is why credential headers are also
// redacted by name (httpInput.record) and their rendered values concealed (conceal).
type runState struct {
	secrets map[string]security.Secret

	mu       sync.Mutex // secret() runs on the run's goroutine; the mutex guards Plan and tests
	revealed []string   // plain texts, as secret() returned them or conceal was given them
	replacer *redactor
	// cache, when not nil, shares redactors between runs that revealed the same secrets;
	// concealed says a rendered header value was added, which keeps this run's redactor
	// out of it (see redactors).
	cache     *redactors
	concealed bool
}

// redactors remembers the redactor of each set of revealed secrets an Engine's runs
// built: most runs of a partner reveal the same one or two, and building a redactor
// (ten encodings of each, sorted, deduplicated) was a fifth of a pure saga's allocations.
// Only sets made of secret() values enter it, not concealed header values, which a
// template may build from request data: what it holds is bounded by the configured
// secrets, and it is cleared when it reaches maxCachedRedactors, so a redactor lives at
// most as long as it is in use. A redactor is immutable once built.
type redactors struct {
	mu sync.Mutex
	m  map[string]*redactor // by revealedKey
}

const maxCachedRedactors = 256

func (c *redactors) get(key string) *redactor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *redactors) put(key string, r *redactor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedRedactors {
		c.m = make(map[string]*redactor)
	}
	c.m[key] = r
}

// revealedKey is the cache key of a revealed list: the text itself for one (no
// allocation), length-prefixed texts for more, so no two lists share a key.
func revealedKey(revealed []string) string {
	if len(revealed) == 1 {
		return revealed[0]
	}
	var b strings.Builder
	for _, p := range revealed {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
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
	rs.add(plain)
	return plain, nil
}

// minConcealed is the shortest credential header value (or credential part of one) that
// conceal scrubs: shorter ones are mostly a scheme word ("Bearer" with an empty token), and
// scrubbing those would blank ordinary text all over the record.
const minConcealed = 8

// conceal scrubs a credential header's rendered value from the record, as if secret() had
// returned it: a careless downstream that echoes its request headers would otherwise put
// "Basic <base64 of user:pw>", which no single secret matches, in the step's output. The
// credentials after an auth scheme ("Basic x" → "x") are scrubbed too, since an echo may
// quote them alone.
func (rs *runState) conceal(v string) {
	v = strings.TrimSpace(v)
	if len(v) >= minConcealed {
		rs.addConcealed(v)
	}
	if _, cred, ok := strings.Cut(v, " "); ok {
		if cred = strings.TrimSpace(cred); len(cred) >= minConcealed {
			rs.addConcealed(cred)
		}
	}
}

func (rs *runState) addConcealed(plain string) {
	rs.mu.Lock()
	rs.concealed = true
	rs.mu.Unlock()
	rs.add(plain)
}

func (rs *runState) add(plain string) {
	if plain == "" {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if slices.Contains(rs.revealed, plain) {
		return
	}
	rs.revealed = append(rs.revealed, plain)
	var key string
	if rs.cache != nil && !rs.concealed {
		key = revealedKey(rs.revealed)
		if r := rs.cache.get(key); r != nil {
			rs.replacer = r
			return
		}
	}
	rs.replacer = newRedactor(rs.revealed)
	if rs.cache != nil && !rs.concealed {
		rs.cache.put(key, rs.replacer)
	}
}

// newRedactor is the redactor of the revealed texts.
func newRedactor(revealed []string) *redactor {
	var all []string
	for _, p := range revealed {
		for _, f := range secretForms(p) {
			if f != "" && !slices.Contains(all, f) {
				all = append(all, f)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(all, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	// Finding needs only the texts that contain no other: a padded base64 form holds its
	// unpadded one, so a string with the first has the second. Most recorded values hold
	// no secret, and every needle is one more scan of each of them.
	var needles []string
	for i, f := range all {
		if !slices.ContainsFunc(all[i+1:], func(g string) bool { return strings.Contains(f, g) }) {
			needles = append(needles, f)
		}
	}
	return &redactor{secrets: all, needles: needles}
}

// secretForms are the texts a plain secret may appear as: itself, base64 in both alphabets
// with and without padding, hex in both cases, and URL-escaped as a query value, a path
// (url.PathEscape) and a url template's path segment (escapeSegment).
func secretForms(plain string) []string {
	b := []byte(plain)
	h := hex.EncodeToString(b)
	return []string{
		plain,
		base64.StdEncoding.EncodeToString(b), base64.URLEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		h, strings.ToUpper(h),
		url.QueryEscape(plain), url.PathEscape(plain), escapeSegment(plain),
	}
}

// runStateOf finds the run's state behind an evaluator (nil for one built without it).
func runStateOf(ev *evaluator) *runState {
	if ev == nil || ev.env == nil {
		return nil
	}
	c, _ := ev.env.Ctx.(*evalCtx)
	if c == nil {
		return nil
	}
	return c.rs
}

// redactor replaces a run's few revealed secrets. A run reveals one or two, so scanning for
// each beats building a strings.Replacer, whose tables cost more than the scans they save.
type redactor struct {
	secrets []string // every form of every revealed text, longest first
	needles []string // the secrets that contain no other: enough to tell whether any is there
}

func (r *redactor) Replace(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

func (r *redactor) found(s string) bool {
	for _, sec := range r.needles {
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
