package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/yamlconf"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// --- set ----------------------------------------------------------------------------------

// setAction assigns vars: `set: {loan_id: "${ body.meta.resourceId }"}`.
type setAction struct {
	names []string
	vals  []*value
}

func (c *compiler) setAction(ra *rawAction, sc exprScope, label string) *setAction {
	mm := c.d.Mapping(ra.node, "a mapping of variable names to values")
	if mm == nil {
		return nil
	}
	ok := true
	a := &setAction{}
	seen := map[string]bool{}
	for _, mv := range mm.Values {
		k := c.d.KeyName(mv)
		if !varNameRE.MatchString(k) {
			c.d.Errorf(mv.Key, "%s: bad variable name %q: use letters, digits and _, so that vars.%s works", label, k, k)
			ok = false
		}
		if seen[k] {
			c.d.Errorf(mv.Key, "%s: key %q appears twice", label, k)
		}
		seen[k] = true
		a.names = append(a.names, k)
		a.vals = append(a.vals, c.value(mv.Value, sc, label+"."+k))
	}
	if !ok {
		return nil
	}
	return a
}

func (a *setAction) render(ev *evaluator) (map[string]any, error) {
	out := make(map[string]any, len(a.names))
	for i, k := range a.names {
		v, err := a.vals[i].render(ev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// --- kv -----------------------------------------------------------------------------------

// kvAction reads or writes durable per-partner state.
type kvAction struct {
	op  string
	key *value
	val *value
	ttl time.Duration
}

type rawKV struct {
	Op    posString     `yaml:"op,required"`
	Key   rawNode       `yaml:"key,required"`
	Value rawNode       `yaml:"value"`
	TTL   time.Duration `yaml:"ttl"`
	Pos   yamlconf.Pos
}

const (
	kvGet    = "get"
	kvPut    = "put"
	kvDelete = "delete"
)

func (c *compiler) kvAction(ra *rawAction, sc exprScope, label string) *kvAction {
	var raw rawKV
	c.d.Decode(ra.node, &raw)
	a := &kvAction{op: raw.Op.s, ttl: raw.TTL}
	if raw.Op.set {
		switch raw.Op.s {
		case kvGet, kvDelete:
			if raw.Value.n != nil {
				c.d.Errorf(raw.Value.n, "%s: value is only for op put", label)
			}
			if raw.TTL != 0 {
				c.errorf(raw.Pos, "%s: ttl is only for op put", label)
			}
		case kvPut:
			if raw.Value.n == nil {
				c.errorf(raw.Pos, "%s: op put needs a value", label)
			}
		default:
			c.errorf(raw.Op.pos, "%s: unknown op %q: use get, put or delete", label, raw.Op.s)
		}
	}
	if raw.Key.n != nil {
		a.key = c.value(raw.Key.n, sc, label+".key")
	}
	if raw.Value.n != nil {
		a.val = c.value(raw.Value.n, sc, label+".value")
	}
	return a
}

type kvInput struct {
	op, key string
	value   any
	ttl     time.Duration
}

func (in *kvInput) record() any {
	m := map[string]any{"op": in.op, "key": in.key}
	if in.op == kvPut {
		m["value"] = in.value
		if in.ttl > 0 {
			m["ttl"] = in.ttl.String()
		}
	}
	return m
}

func (a *kvAction) render(ev *evaluator) (*kvInput, error) {
	k, err := a.key.render(ev)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	in := &kvInput{op: a.op, key: stringify(k), ttl: a.ttl}
	if in.key == "" {
		return nil, errors.New("key: renders to empty text")
	}
	if a.val != nil {
		if in.value, err = a.val.render(ev); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
	}
	return in, nil
}

// KVLimits bound what kv steps keep for a partner, so a sender cannot grow the data file
// without bound through templated keys and values. Zero fields take the defaults.
type KVLimits struct {
	MaxKeyBytes   int // a key's length; default DefaultKVMaxKeyBytes
	MaxValueBytes int // a value's length as JSON; default DefaultKVMaxValueBytes
	MaxEntries    int // entries per partner; default DefaultKVMaxEntries
}

// Defaults of KVLimits, and of pushbackd.yaml's limits.kv_*.
const (
	DefaultKVMaxKeyBytes   = 512
	DefaultKVMaxValueBytes = 64 << 10
	DefaultKVMaxEntries    = 100_000
)

func (l KVLimits) withDefaults() KVLimits {
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = DefaultKVMaxKeyBytes
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultKVMaxValueBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultKVMaxEntries
	}
	return l
}

// execKV runs a kv step. Going over a limit fails the step for good: the same input would
// go over it again on every retry. The errors name the setting that sets the limit.
func (e *Engine) execKV(ctx context.Context, namespace string, in *kvInput) (any, error) {
	if e.opts.KV == nil {
		return nil, permanent(errors.New("kv: no store configured"))
	}
	lim := e.opts.KVLimits.withDefaults()
	if len(in.key) > lim.MaxKeyBytes {
		return nil, permanent(fmt.Errorf("kv %s: the key is %d bytes, over the limit of %d (limits.kv_max_key_bytes)", in.op, len(in.key), lim.MaxKeyBytes))
	}
	switch in.op {
	case kvGet:
		b, found, err := e.opts.KV.Get(ctx, namespace, in.key)
		if err != nil {
			return nil, fmt.Errorf("kv get: %w", err)
		}
		if !found {
			return nil, nil
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, permanent(fmt.Errorf("kv get: stored value is not JSON: %w", err))
		}
		return v, nil
	case kvPut:
		b, err := json.Marshal(in.value)
		if err != nil {
			return nil, permanent(fmt.Errorf("kv put: value cannot be stored as JSON: %w", err))
		}
		if len(b) > lim.MaxValueBytes {
			return nil, permanent(fmt.Errorf("kv put: the value is %d bytes as JSON, over the limit of %d (limits.kv_max_value_bytes)", len(b), lim.MaxValueBytes))
		}
		err = e.opts.KV.Put(ctx, namespace, in.key, b, store.PutOptions{TTL: in.ttl, MaxEntries: lim.MaxEntries})
		if errors.Is(err, store.ErrKVFull) {
			return nil, permanent(fmt.Errorf("kv put: partner %s already holds %d entries, the limit set by limits.kv_max_entries_per_partner: "+
				"delete keys it no longer needs, give them a ttl, or raise the limit: %w", namespace, lim.MaxEntries, store.ErrKVFull))
		}
		if err != nil {
			return nil, fmt.Errorf("kv put: %w", err)
		}
		return nil, nil
	case kvDelete:
		if err := e.opts.KV.Delete(ctx, namespace, in.key); err != nil {
			return nil, fmt.Errorf("kv delete: %w", err)
		}
		return nil, nil
	}
	return nil, permanent(fmt.Errorf("kv: unknown op %q", in.op))
}

// --- respond ------------------------------------------------------------------------------

// respondAction answers the sender and ends the run successfully.
type respondAction struct {
	status  *value // nil: 200
	headers *value
	body    *value
}

type rawRespond struct {
	Status  rawNode `yaml:"status"`
	Headers rawNode `yaml:"headers"`
	Body    rawNode `yaml:"body"`
}

func (c *compiler) respondAction(ra *rawAction, sc exprScope, label string) *respondAction {
	var raw rawRespond
	if !yamlconf.IsNull(c.d.Resolve(ra.node)) { // `respond:` alone answers 200 with no body
		c.d.Decode(ra.node, &raw)
	}
	a := &respondAction{}
	if raw.Status.n != nil {
		a.status = c.value(raw.Status.n, sc, label+".status")
		if a.status.kind == vConst {
			if _, err := statusCode(a.status.c); err != nil {
				c.d.Errorf(raw.Status.n, "%s: status: %v", label, err)
			}
		}
	}
	if raw.Headers.n != nil {
		a.headers = c.mappingValue(raw.Headers.n, sc, label+".headers")
	}
	if raw.Body.n != nil {
		a.body = c.value(raw.Body.n, sc, label+".body")
	}
	return a
}

// mappingValue compiles a value that must be a mapping, or a single `${ }` giving one.
func (c *compiler) mappingValue(n ast.Node, sc exprScope, label string) *value {
	v := c.value(n, sc, label)
	if v.shape != "mapping" && v.shape != "template" && v.shape != "null" {
		c.d.Errorf(n, "%s: expected a mapping, got a %s", label, v.shape)
	}
	return v
}

func statusCode(v any) (int, error) {
	var n int
	switch x := v.(type) {
	case int:
		n = x
	case int64:
		n = int(x)
	case float64:
		if x != math.Trunc(x) {
			return 0, fmt.Errorf("%v is not a whole number", x)
		}
		n = int(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", x)
		}
		n = int(i)
	case string:
		i, err := strconv.Atoi(x)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		n = i
	default:
		return 0, fmt.Errorf("expected a number, got %T", v)
	}
	if n < 100 || n > 599 {
		return 0, fmt.Errorf("%d is not an HTTP status (100-599)", n)
	}
	return n, nil
}

func (a *respondAction) render(ev *evaluator) (*Answer, error) {
	ans := &Answer{Status: 200}
	if a.status != nil {
		v, err := a.status.render(ev)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		if ans.Status, err = statusCode(v); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	if a.headers != nil {
		h, err := renderStringMap(a.headers, ev)
		if err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
		ans.Headers = h
	}
	if a.body != nil {
		b, err := a.body.render(ev)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		ans.Body = b
	}
	return ans, nil
}

// renderStringMap renders a mapping whose values become text (headers).
func renderStringMap(v *value, ev *evaluator) (map[string]string, error) {
	r, err := v.render(ev)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	m, ok := r.(map[string]any)
	if !ok {
		if sm, ok := r.(map[string]string); ok {
			return sm, nil
		}
		return nil, fmt.Errorf("expected a mapping, got %T", r)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		if x == nil {
			continue // an absent optional header, `${ body.trace ?? nil }`
		}
		out[k] = stringify(x)
	}
	return out, nil
}

// --- fail ---------------------------------------------------------------------------------

// failAction fails the run with a message: `fail: {message: "unknown event"}` or
// `fail: "unknown event"`.
type failAction struct {
	message *value
}

type rawFail struct {
	Message rawNode `yaml:"message,required"`
}

func (c *compiler) failAction(ra *rawAction, sc exprScope, label string) *failAction {
	n := c.d.Resolve(ra.node)
	if _, ok := c.d.Scalar(n); ok {
		return &failAction{message: c.value(n, sc, label+".message")}
	}
	var raw rawFail
	c.d.Decode(n, &raw)
	if raw.Message.n == nil {
		return nil
	}
	return &failAction{message: c.value(raw.Message.n, sc, label+".message")}
}

func (a *failAction) render(ev *evaluator) (string, error) {
	v, err := a.message.render(ev)
	if err != nil {
		return "", fmt.Errorf("message: %w", err)
	}
	return stringify(v), nil
}

// failError is the error of a fail action: its message is the run's error as written.
type failError struct{ msg string }

func (e *failError) Error() string { return e.msg }

// --- log ----------------------------------------------------------------------------------

// logAction writes one line to the engine's logger, with the run's identity attached.
type logAction struct {
	level   zapcore.Level
	message *value
	fields  *value
}

type rawLog struct {
	Level   posString `yaml:"level"`
	Message rawNode   `yaml:"message,required"`
	Fields  rawNode   `yaml:"fields"`
}

func (c *compiler) logAction(ra *rawAction, sc exprScope, label string) *logAction {
	var raw rawLog
	c.d.Decode(ra.node, &raw)
	a := &logAction{level: zapcore.InfoLevel}
	if raw.Level.set {
		switch raw.Level.s {
		case "debug":
			a.level = zapcore.DebugLevel
		case "info":
			a.level = zapcore.InfoLevel
		case "warn":
			a.level = zapcore.WarnLevel
		case "error":
			a.level = zapcore.ErrorLevel
		default:
			c.errorf(raw.Level.pos, "%s: unknown level %q: use debug, info, warn or error", label, raw.Level.s)
		}
	}
	if raw.Message.n != nil {
		a.message = c.value(raw.Message.n, sc, label+".message")
	}
	if raw.Fields.n != nil {
		a.fields = c.mappingValue(raw.Fields.n, sc, label+".fields")
	}
	return a
}

type logInput struct {
	level   zapcore.Level
	message string
	fields  map[string]any
}

func (in *logInput) record() any {
	m := map[string]any{"level": in.level.String(), "message": in.message}
	if len(in.fields) > 0 {
		m["fields"] = in.fields
	}
	return m
}

func (a *logAction) render(ev *evaluator) (*logInput, error) {
	in := &logInput{level: a.level}
	m, err := a.message.render(ev)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	in.message = stringify(m)
	if a.fields != nil {
		f, err := a.fields.render(ev)
		if err != nil {
			return nil, fmt.Errorf("fields: %w", err)
		}
		if f != nil {
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("fields: expected a mapping, got %T", f)
			}
			in.fields = fm
		}
	}
	return in, nil
}

// execLog logs the already redacted input: a log line is history too.
func execLog(log *zap.Logger, in *logInput) {
	fields := make([]zap.Field, 0, len(in.fields))
	for k, v := range in.fields {
		fields = append(fields, zap.Any(k, v))
	}
	if ce := log.Check(in.level, in.message); ce != nil {
		ce.Write(fields...)
	}
}
