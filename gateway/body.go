package gateway

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strings"

	"github.com/pushbackd/pushbackd/internal/jsondec"
)

// bodyKind is how a content type's body is parsed for sagas.
type bodyKind int

const (
	bodyText bodyKind = iota
	bodyJSON
	bodyForm
	bodyXML
)

func kindOf(contentType string) bodyKind {
	// The content types nearly every sender writes, as they write them, skip the parser,
	// which allocates a parameter map per request; anything else goes through it.
	switch contentType {
	case "", "text/plain":
		return bodyText
	case "application/json":
		return bodyJSON
	case "application/x-www-form-urlencoded":
		return bodyForm
	}
	return kindOfParsed(contentType)
}

// kindOfParsed is kindOf through mime.ParseMediaType.
func kindOfParsed(contentType string) bodyKind {
	if contentType == "" {
		return bodyText
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return bodyText
	}
	switch {
	case mt == "application/json", mt == "text/json", strings.HasSuffix(mt, "+json"):
		return bodyJSON
	case mt == "application/x-www-form-urlencoded":
		return bodyForm
	case mt == "application/xml", mt == "text/xml", strings.HasSuffix(mt, "+xml"):
		return bodyXML
	}
	return bodyText
}

// parseBody turns the raw bytes into what sagas see as `body`: a JSON value, a form map, an
// XML element tree, or the text itself. An empty body is nil whatever its type says: senders
// "ping" with empty JSON posts, and refusing them helps nobody.
func parseBody(contentType string, raw []byte) (any, error) {
	kind := kindOf(contentType)
	if len(bytes.TrimSpace(raw)) == 0 && kind != bodyText {
		return nil, nil
	}
	switch kind {
	case bodyJSON:
		return parseJSON(raw)
	case bodyForm:
		return parseForm(raw)
	case bodyXML:
		return parseXML(raw)
	}
	return string(raw), nil
}

// parseJSON decodes with jsondec, which gives what json.Unmarshal would with less than half
// its allocations (its keys and plain strings are substrings of one copy of the body):
// json.Unmarshal was ~18% of the objects allocated per accepted request in the bench's
// allocation profile. A body jsondec refuses goes to json.Unmarshal, whose message the
// sender gets as before; both parses are linear in the body, which is already bounded by
// limits.max_body_bytes. Unmarshal, not a Decoder over the bytes, which would copy them
// into its own buffer first.
func parseJSON(raw []byte) (any, error) {
	if v, err := jsondec.Decode(raw); err == nil {
		return v, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %s", jsonMessage(err, raw))
	}
	// Unreachable while the two agree (FuzzDecodeMatchesEncodingJSON); if they ever do not,
	// encoding/json's answer stands.
	return v, nil
}

// jsonMessage gives the parser's message with a byte offset a sender can find.
func jsonMessage(err error, raw []byte) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if se.Error() == "unexpected end of JSON input" {
			return fmt.Sprintf("unexpected end of input at offset %d", len(raw))
		}
		if strings.HasSuffix(se.Error(), "after top-level value") {
			// The offset counts the offending byte; report where the extra data starts.
			return fmt.Sprintf("unexpected data after the top-level value at offset %d", se.Offset-1)
		}
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s at offset %d", te.Error(), te.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Sprintf("unexpected end of input at offset %d", len(raw))
	}
	return err.Error()
}

func parseForm(raw []byte) (any, error) {
	values, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, fmt.Errorf("invalid form body: %v", err)
	}
	out := make(map[string]any, len(values))
	for k, vs := range values {
		if len(vs) == 1 {
			out[k] = vs[0]
			continue
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		out[k] = list
	}
	return out, nil
}

// maxXMLDepth bounds nesting so a hostile document cannot make the tree arbitrarily deep.
const maxXMLDepth = 64

// parseXML builds {root: element} where an element with neither attributes nor children is
// its text, and otherwise a map of children by name (repeated names become lists),
// attributes as "@name" and non-blank text as "#text". That keeps `body.Loan.Status` natural
// in expressions.
func parseXML(raw []byte) (any, error) {
	dec := xml.NewDecoder(bytes.NewReader(raw))
	dec.Strict = true
	type frame struct {
		name     string
		children map[string]any
		text     strings.Builder
	}
	var stack []*frame
	var root map[string]any
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("invalid XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxXMLDepth {
				return nil, fmt.Errorf("invalid XML: nested deeper than %d elements", maxXMLDepth)
			}
			if len(stack) == 0 && root != nil {
				return nil, errors.New("invalid XML: more than one root element")
			}
			f := &frame{name: t.Name.Local}
			for _, a := range t.Attr {
				if f.children == nil {
					f.children = map[string]any{}
				}
				f.children["@"+a.Name.Local] = a.Value
			}
			stack = append(stack, f)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("invalid XML: text outside the root element")
			}
		case xml.EndElement:
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			var value any
			text := strings.TrimSpace(f.text.String())
			if f.children == nil {
				value = text
			} else {
				if text != "" {
					f.children["#text"] = text
				}
				value = f.children
			}
			if len(stack) == 0 {
				root = map[string]any{f.name: value}
				continue
			}
			parent := stack[len(stack)-1]
			if parent.children == nil {
				parent.children = map[string]any{}
			}
			switch prev := parent.children[f.name].(type) {
			case nil:
				parent.children[f.name] = value
			case []any:
				parent.children[f.name] = append(prev, value)
			default:
				parent.children[f.name] = []any{prev, value}
			}
		}
	}
	if root == nil {
		return nil, errors.New("invalid XML: no root element")
	}
	return root, nil
}
