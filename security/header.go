package security

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/textproto"
	"strings"
)

// presence is what a credential lookup found.
type presence int

const (
	absent      presence = iota // not sent, or sent empty
	present                     // exactly one value (repeats of the same value count as one)
	conflicting                 // sent several times with different values
)

// headerValues returns the values of header name, matching the name case-insensitively.
// The server canonicalises received names, so the direct lookup nearly always hits; the
// scan covers Headers built by hand and names the canonicaliser leaves alone.
func headerValues(h http.Header, name string) []string {
	if v, ok := h[textproto.CanonicalMIMEHeaderKey(name)]; ok {
		return v
	}
	var out []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	return out
}

// single reduces a credential's values to one trimmed value. Different values are refused
// rather than one picked, because which one a proxy or framework would pick is
// unspecified, and a credential should never be ambiguous.
func single(vals []string) (string, presence) {
	v := ""
	for _, raw := range vals {
		t := trimASCIISpace(raw)
		if t == "" {
			continue
		}
		if v != "" && t != v {
			return "", conflicting
		}
		v = t
	}
	if v == "" {
		return "", absent
	}
	return v, present
}

// cgiName is the CGI-style spelling of a header name (Access-Token -> HTTP_ACCESS_TOKEN),
// which some senders use literally as the header name.
func cgiName(name string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// headerOrCGI looks header name up, falling back to its CGI-style spelling.
func headerOrCGI(h http.Header, name string) (string, presence) {
	v, st := single(headerValues(h, name))
	if st == absent {
		v, st = single(headerValues(h, cgiName(name)))
	}
	return v, st
}

// authorization splits the Authorization header (or its CGI-style spelling, as the
// platform this product replaces documented it) into scheme and credentials.
func authorization(h http.Header) (scheme, cred string, st presence) {
	v, st := headerOrCGI(h, "Authorization")
	if st != present {
		return "", "", st
	}
	scheme, cred, _ = strings.Cut(v, " ")
	return scheme, strings.TrimLeft(cred, " \t"), present
}

// digest is the SHA-256 of a credential. Comparing digests instead of raw values gives
// subtle.ConstantTimeCompare equal lengths, so the time taken does not reveal the length
// of the configured value either.
type digest [sha256.Size]byte

func digestOf(b []byte) digest { return sha256.Sum256(b) }

func digestsOf(list [][]byte) []digest {
	out := make([]digest, len(list))
	for i, b := range list {
		out[i] = digestOf(b)
	}
	return out
}

// equalDigest compares in constant time; it returns 1 or 0 so callers can combine results
// with & and | without short-circuiting.
func equalDigest(a, b digest) int { return subtle.ConstantTimeCompare(a[:], b[:]) }

// matchesAny compares candidate against every entry, always all of them, so the time
// taken does not say which (or whether an early) entry matched.
func matchesAny(candidate []byte, set []digest) bool {
	d := digestOf(candidate)
	ok := 0
	for i := range set {
		ok |= equalDigest(d, set[i])
	}
	return ok == 1
}

// decodeBase64 accepts standard-alphabet base64 with or without padding: .NET's
// Convert.ToBase64String and Ruby's Base64 pad, some other libraries do not. The URL-safe
// alphabet is not accepted; no documented sender uses it.
func decodeBase64(s string) ([]byte, error) {
	if len(s)%4 == 0 {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// validHeaderName reports whether name is an RFC 9110 token, i.e. usable as a header name.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// trimASCIISpace drops the whitespace HTTP treats as padding around a field value. Unicode
// spaces (U+00A0 and friends) are part of the value: a credential may end in one, and New
// accepts such credentials, so trimming them here would make them unverifiable.
func trimASCIISpace(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
}
