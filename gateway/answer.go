package gateway

import (
	"encoding/json"
	"strconv"

	"github.com/pushbackd/pushbackd/internal/jsonenc"
)

// appendJSON appends a's JSON, byte for byte what encoding/json makes of it (field order,
// omitempty, HTML-safe escaping), without reflection: every answer, the 401 to a guess
// and the durable accept's recorded answer included, is one of these, and json.Marshal's
// reflection and allocations were a measurable share of the cheapest requests.
func (a Answer) appendJSON(dst []byte) ([]byte, error) {
	if len(a.Errors) > 0 {
		// Schema problems (400 only) are rare and nested: encoding/json has them.
		b, err := json.Marshal(a)
		return append(dst, b...), err
	}
	dst = append(dst, `{"status":`...)
	dst = jsonenc.AppendString(dst, a.Status)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(a.Code), 10)
	if a.Message != "" {
		dst = append(dst, `,"message":`...)
		dst = jsonenc.AppendString(dst, a.Message)
	}
	if a.RunID != "" {
		dst = append(dst, `,"run_id":`...)
		dst = jsonenc.AppendString(dst, a.RunID)
	}
	if a.Duplicate {
		dst = append(dst, `,"duplicate":true`...)
	}
	return append(dst, '}'), nil
}
