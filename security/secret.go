package security

import (
	"encoding/json"
	"fmt"
)

// redacted is what every printing path of a Secret produces, so a Secret that ends up in a
// log line, an error, a JSON or YAML document or a %+v dump shows that a value is set
// without showing it.
const redacted = "<secret>"

// Secret holds a credential. It deliberately has no exported fields and prints as
// "<secret>" through fmt, JSON, text and YAML marshalling.
type Secret struct{ b []byte }

// NewSecret returns a Secret holding the bytes of s.
func NewSecret(s string) Secret { return Secret{b: []byte(s)} }

// Reveal returns a copy of the raw bytes; callers must not log them. A copy, so a caller
// that scribbles on the result cannot change what a running verifier compares against.
func (s Secret) Reveal() []byte {
	if s.b == nil {
		return nil
	}
	return append([]byte(nil), s.b...)
}

// IsZero reports whether the secret is empty; an empty credential is never valid config.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// Format makes every verb (%v, %+v, %#v, %s, %q, %x ...) print the placeholder; without it
// %x would bypass String and hex-dump the struct's bytes.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML satisfies the marshaler interface of goccy/go-yaml and yaml.v3 without
// importing either.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }
