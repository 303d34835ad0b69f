package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Run records are a small hand-rolled binary format rather than JSON: a record is written
// on every checkpoint and read for every row of a page, and this is several times faster
// and about half the size (see BenchmarkEncodeRun). Layout, version 1:
//
//	byte     version (1)
//	uvarint  length of the light part
//	light:   Partner Site Endpoint Saga SagaVersion Mode Status          (strings)
//	         ReceivedAt UpdatedAt FinishedAt WakeAt                       (varint unix ns, 0 = zero time)
//	         Attempt                                                      (uvarint)
//	         ReplayOf IdempotencyKey DebounceKey SerializeKey Error       (strings)
//	         Method Path Query RemoteIP ContentType                       (strings)
//	         header count, then per header: name, value count, values     (uvarints, strings)
//	         answer present (byte); if 1: status (uvarint), body (bytes)
//	         MessageKey                                                   (string; absent in
//	                                                                      records written before it)
//	         TraceParent SupersededBy RetryOf                             (strings; likewise)
//	         CancelRequested                                              (byte; likewise)
//	heavy:   State Result Body                                            (bytes)
//
// strings and bytes are a uvarint length and the bytes. The id is the key, not part of the
// record. List decodes only the light part: one string allocation for all its strings, and
// the heavy part's pages are never touched.
const codecVersion = 1

var ErrCorrupt = errors.New("store: corrupt run record")

func EncodeRun(dst []byte, r *Run, body []byte) []byte {
	light := make([]byte, 0, 256+len(r.Answer.bodyOrNil())+32*len(r.Request.Headers))
	for _, s := range [...]string{r.Partner, r.Site, r.Endpoint, r.Saga, r.SagaVersion, r.Mode, string(r.Status)} {
		light = appendString(light, s)
	}
	for _, t := range [...]time.Time{r.ReceivedAt, r.UpdatedAt, r.FinishedAt, r.WakeAt} {
		light = binary.AppendVarint(light, TimeNanos(t))
	}
	light = binary.AppendUvarint(light, uint64(max(r.Attempt, 0)))
	for _, s := range [...]string{r.ReplayOf, r.IdempotencyKey, r.DebounceKey, r.SerializeKey, r.Error,
		r.Request.Method, r.Request.Path, r.Request.Query, r.Request.RemoteIP, r.Request.ContentType} {
		light = appendString(light, s)
	}
	light = binary.AppendUvarint(light, uint64(len(r.Request.Headers)))
	for name, values := range r.Request.Headers {
		light = appendString(light, name)
		light = binary.AppendUvarint(light, uint64(len(values)))
		for _, v := range values {
			light = appendString(light, v)
		}
	}
	if r.Answer == nil {
		light = append(light, 0)
	} else {
		light = append(light, 1)
		light = binary.AppendUvarint(light, uint64(max(r.Answer.Status, 0)))
		light = appendBytes(light, r.Answer.Body)
	}
	for _, f := range r.laterFields() {
		light = appendString(light, *f)
	}
	light = append(light, byte(boolInt(r.CancelRequested)))

	// One allocation for the record: growing it by appends copied the light part and
	// then the result (the biggest part) again.
	dst = slices.Grow(dst, 1+3*binary.MaxVarintLen64+len(light)+len(r.State)+len(r.Result)+len(body))
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, uint64(len(light)))
	dst = append(dst, light...)
	dst = appendBytes(dst, r.State)
	dst = appendBytes(dst, r.Result)
	return appendBytes(dst, body)
}

func (a *Answer) bodyOrNil() []byte {
	if a == nil {
		return nil
	}
	return a.Body
}

// TimeNanos maps the zero time to 0 so "not set" survives the round trip.
func TimeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func NanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads a record. Strings are cut from one string copy of the light part; byte
// fields are copied, because bbolt's values live in its mmap only for the transaction.
type decoder struct {
	s   string // light part
	b   []byte // heavy part
	err error
}

// DecodeRun fills r from rec. With full false it stops after the light part and leaves
// State, Result and the body nil. It returns the body when full.
func DecodeRun(rec []byte, r *Run, full bool) (body []byte, err error) {
	if len(rec) == 0 || rec[0] != codecVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrCorrupt)
	}
	n, k := binary.Uvarint(rec[1:])
	if k <= 0 || uint64(len(rec)-1-k) < n {
		return nil, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	start := 1 + k
	d := decoder{s: string(rec[start : start+int(n)]), b: rec[start+int(n):]}
	r.Partner, r.Site, r.Endpoint, r.Saga, r.SagaVersion, r.Mode = d.str(), d.str(), d.str(), d.str(), d.str(), d.str()
	r.Status = Status(d.str())
	r.ReceivedAt, r.UpdatedAt, r.FinishedAt, r.WakeAt = d.time(), d.time(), d.time(), d.time()
	r.Attempt = int(d.uvarint())
	r.ReplayOf, r.IdempotencyKey, r.DebounceKey, r.SerializeKey, r.Error = d.str(), d.str(), d.str(), d.str(), d.str()
	q := &r.Request
	q.Method, q.Path, q.Query, q.RemoteIP, q.ContentType = d.str(), d.str(), d.str(), d.str(), d.str()
	q.Headers = nil
	if nh := d.uvarint(); nh > 0 && nh <= uint64(len(d.s)) {
		q.Headers = make(map[string][]string, nh)
		for i := uint64(0); i < nh && d.err == nil; i++ {
			name := d.str()
			nv := d.uvarint()
			if nv > uint64(len(d.s)) {
				d.err = ErrCorrupt
				break
			}
			var vs []string
			if nv > 0 {
				vs = make([]string, nv)
				for j := range vs {
					vs[j] = d.str()
				}
			}
			q.Headers[name] = vs
		}
	} else if nh > 0 {
		d.err = ErrCorrupt
	}
	r.Answer = nil
	if d.byte() == 1 {
		r.Answer = &Answer{Status: int(d.uvarint()), Body: []byte(d.str())}
		if len(r.Answer.Body) == 0 {
			r.Answer.Body = nil
		}
	}
	// Fields appended to the light part after version 1 shipped: an older record ends
	// before them, and they read as empty.
	for _, f := range r.laterFields() {
		*f = ""
		if len(d.s) > 0 && d.err == nil {
			*f = d.str()
		}
	}
	r.CancelRequested = false
	if len(d.s) > 0 && d.err == nil {
		r.CancelRequested = d.byte() == 1
	}
	r.State, r.Result = nil, nil
	if full {
		r.State, r.Result, body = d.bytes(), d.bytes(), d.bytes()
	}
	if d.err != nil {
		return nil, d.err
	}
	return body, nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint([]byte(d.s[:min(len(d.s), binary.MaxVarintLen64)]))
	if k <= 0 {
		d.err = ErrCorrupt
		return 0
	}
	d.s = d.s[k:]
	return v
}

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, k := binary.Varint([]byte(d.s[:min(len(d.s), binary.MaxVarintLen64)]))
	if k <= 0 {
		d.err = ErrCorrupt
		return time.Time{}
	}
	d.s = d.s[k:]
	return NanosTime(v)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)) {
		d.err = ErrCorrupt
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.s) == 0 {
		d.err = ErrCorrupt
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = ErrCorrupt
		return nil
	}
	p := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// laterFields are the light part's strings appended after version 1 shipped, in record
// order, before the CancelRequested byte. A new field goes at the end of the record, and
// older records read it as empty.
func (r *Run) laterFields() [4]*string {
	return [...]*string{&r.MessageKey, &r.TraceParent, &r.SupersededBy, &r.RetryOf}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
