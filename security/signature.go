package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// signatureScheme checks a header carrying HMAC-SHA256(secret, raw body), as the
// platform's .NET and Ruby examples, Encompass (Elli-Signature) and GitHub-style senders
// (hex with a "sha256=" prefix) produce it.
type signatureScheme struct {
	header   string
	encoding string // "base64" or "hex"
	prefix   string
	keys     []Secret // the configured secrets themselves: an endpoint's verifier holds no copy
}

func newSignature(cfg Config, p *problems) *signatureScheme {
	s := &signatureScheme{
		header:   orDefault(cfg.Header, DefaultSignatureHeader),
		encoding: orDefault(cfg.Encoding, "base64"),
		prefix:   cfg.Prefix,
		keys:     cfg.Secrets,
	}
	requireSecrets("secrets", cfg.Secrets, p)
	checkHeaderName("header", s.header, p)
	if s.encoding != "base64" && s.encoding != "hex" {
		p.add("encoding must be base64 or hex, not %q", cfg.Encoding)
	}
	if strings.TrimSpace(s.prefix) != s.prefix {
		// Surrounding whitespace of the header value is ignored, so a prefix that starts or
		// ends in whitespace could never be matched as written.
		p.add("prefix must not start or end with whitespace")
	}
	return s
}

func (s *signatureScheme) check(r *Request) *Failure { return s.checkKeys(r, s.keys) }

// checkKeys is check with the keys given: a Check keeps them apart from the shared scheme.
func (s *signatureScheme) checkKeys(r *Request, keys []Secret) *Failure {
	// single's trimming also drops the "\n" Ruby's Base64.encode64 appends when the sender forgets
	// the .gsub("\n", "") of the platform's example.
	v, st := single(headerValues(r.Header, s.header))
	switch st {
	case absent:
		return fail(Signature, ReasonMissing, "no "+s.header+" header")
	case conflicting:
		return fail(Signature, ReasonMalformed, s.header+" header sent more than once with different values")
	}
	if s.prefix != "" {
		if len(v) < len(s.prefix) || !strings.EqualFold(v[:len(s.prefix)], s.prefix) {
			return fail(Signature, ReasonMalformed, s.header+" header lacks the configured prefix")
		}
		v = v[len(s.prefix):]
	}
	var sig []byte
	var err error
	if s.encoding == "hex" {
		sig, err = hex.DecodeString(v) // accepts upper and lower case
	} else {
		sig, err = decodeBase64(v)
	}
	if err != nil {
		return fail(Signature, ReasonMalformed, s.header+" header is not valid "+s.encoding)
	}
	// A hex digest sent to a base64 endpoint decodes as base64 to 48 bytes and lands here,
	// as does a truncated value: neither can be an HMAC-SHA256, so both are malformed.
	if len(sig) != sha256.Size {
		return fail(Signature, ReasonMalformed, s.header+" header does not decode to a 32-byte HMAC-SHA256")
	}
	ok := 0
	for _, k := range keys { // every key, no early exit: timing must not reveal which matched
		ok |= subtle.ConstantTimeCompare(hmacSHA256(k.b, r.Body), sig)
	}
	if ok != 1 {
		return fail(Signature, ReasonMismatch, "no configured secret matches header "+s.header)
	}
	return nil
}

func (s *signatureScheme) sign(body []byte, _ string, _ time.Time, h http.Header, _ url.Values) error {
	h.Set(s.header, SignatureValue(s.keys[0].b, body, s.encoding, s.prefix))
	return nil
}

// SignatureValue computes the signature method's header value for body: prefix followed by
// HMAC-SHA256(secret, body) in lower-case hex when encoding is "hex", else in padded
// standard base64.
func SignatureValue(secret []byte, body []byte, encoding, prefix string) string {
	mac := hmacSHA256(secret, body)
	if encoding == "hex" {
		return prefix + hex.EncodeToString(mac)
	}
	return prefix + base64.StdEncoding.EncodeToString(mac)
}

func hmacSHA256(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}
