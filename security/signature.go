package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var signatureMethod = method{
	name: Signature,
	keys: []Key{
		headerKey("header", fHeader),
		{Name: "secrets", Kind: KeySecrets, Need: "secrets: a list of at least one secret reference", IDs: true,
			field: fSecrets},
		enumKey("encoding", []string{"base64", "hex"}, fEncoding),
		textKey("prefix", fPrefix),
		headerKey("timestamp_header", fTimestampHeader),
		textKey("timestamp_part", fTimestampPart),
		textKey("signature_part", fSignaturePart),
		textKey("signed", fSigned),
		enumKey("timestamp_format", []string{"unix", "rfc3339"}, fTimestampFormat),
		durationKey("tolerance", fTolerance),
		headerKey("key_id_header", fKeyIDHeader),
	},
	prepare: newSignature,
	credentials: func(cfg Config) (credentialHeaders, string) {
		return credentialHeaders{orDefault(cfg.Header, DefaultSignatureHeader)}, ""
	},
}

// maxSignatureParts bounds how many signature parts one multi-part header may carry. A
// sender rotating keys sends two or three; each is compared against every key.
const maxSignatureParts = 16

// maxSignedLen bounds the signed template.
const maxSignedLen = 256

// signatureScheme checks a header carrying HMAC-SHA256(secret, what is signed), as the
// platform's .NET and Ruby examples, Encompass (Elli-Signature), GitHub, Shopify, Stripe,
// Slack and Snapdocs produce it. What is signed is the raw body, or with a timestamp a
// template of it such as Stripe's "{timestamp}.{body}". Its Check holds the secrets alone.
type signatureScheme struct {
	header   string
	encoding string // "base64" or "hex"
	prefix   string

	tsHeader  string  // the timestamp's own header, or
	tsPart    string  // the timestamp's part of a multi-part header
	sigPart   string  // set: the header is a list of parts, and these are the signatures
	signed    []piece // nil: the body alone
	rfc3339   bool    // the timestamp is RFC 3339 text, not unix seconds
	tolerance time.Duration

	keyIDHeader string
	ids         []string // parallel to the Check's secrets; nil when none has an id

	// hashes are SHA-256 states reused across requests; one pool per scheme, shared by the
	// endpoints of one Template.
	hashes macHashes
	// mismatch is the failure detail of a wrong signature, the guesser's answer, made once.
	mismatch string
}

// piece is one part of a signed template.
type piece struct {
	kind pieceKind
	text string // pieceText
}

type pieceKind uint8

const (
	pieceText pieceKind = iota
	pieceTimestamp
	pieceBody
)

func newSignature(cfg Config, p *problems) (scheme, material) {
	s := &signatureScheme{
		header:      orDefault(cfg.Header, DefaultSignatureHeader),
		encoding:    orDefault(cfg.Encoding, "base64"),
		prefix:      cfg.Prefix,
		tsHeader:    cfg.TimestampHeader,
		tsPart:      cfg.TimestampPart,
		sigPart:     cfg.SignaturePart,
		keyIDHeader: cfg.KeyIDHeader,
		ids:         cfg.SecretIDs,
	}
	s.mismatch = "no configured secret matches header " + s.header
	requireSecrets("secrets", cfg.Secrets, p)
	checkHeaderName("header", s.header, p)
	if s.encoding != "base64" && s.encoding != "hex" {
		p.at("encoding", "encoding must be base64 or hex, not %q", cfg.Encoding)
	}
	if strings.TrimSpace(s.prefix) != s.prefix {
		// Surrounding whitespace of the header value is ignored, so a prefix that starts or
		// ends in whitespace could never be matched as written.
		p.at("prefix", "prefix must not start or end with whitespace")
	}
	s.checkTimestampKeys(cfg, p)
	s.checkKeyIDs(cfg, p)
	return s, material{}
}

// checkTimestampKeys validates the keys of a timestamped signature and prepares signed.
func (s *signatureScheme) checkTimestampKeys(cfg Config, p *problems) {
	if s.tsHeader != "" {
		checkHeaderName("timestamp_header", s.tsHeader, p)
		if s.tsPart != "" {
			p.at("timestamp_part", "timestamp_header and timestamp_part are mutually exclusive: the timestamp comes from one place")
		}
	}
	for _, k := range []struct{ key, name string }{{"timestamp_part", s.tsPart}, {"signature_part", s.sigPart}} {
		if k.name != "" && (!validHeaderName(k.name) || strings.ContainsAny(k.name, "=,")) {
			p.at(k.key, "%s %q must be a part name like t or v1 (letters, digits, - or _)", k.key, k.name)
		}
	}
	switch {
	case s.tsPart != "" && s.sigPart == "":
		p.at("timestamp_part", "timestamp_part needs signature_part: the header is then a list of parts like t=1492774577,v1=5257a8")
	case s.tsPart != "" && s.tsPart == s.sigPart:
		p.at("signature_part", "signature_part and timestamp_part must differ")
	case s.sigPart != "" && s.prefix != "":
		p.at("prefix", "prefix does not apply with signature_part: each part's value is the bare signature")
	}
	timestamped := s.tsHeader != "" || s.tsPart != ""
	switch cfg.TimestampFormat {
	case "", "unix":
	case "rfc3339":
		s.rfc3339 = true
	default:
		p.at("timestamp_format", "timestamp_format must be unix or rfc3339, not %q", cfg.TimestampFormat)
	}
	if !timestamped {
		const why = "applies only to timestamped signatures: set timestamp_header or timestamp_part"
		if cfg.TimestampFormat != "" {
			p.at("timestamp_format", "timestamp_format %s", why)
		}
		if cfg.Tolerance != 0 {
			p.at("tolerance", "tolerance %s", why)
		}
	}
	s.tolerance = tolerance(cfg.Tolerance, p)
	signed := cfg.Signed
	if signed == "" && timestamped {
		signed = DefaultSigned
	}
	if signed == "" {
		return
	}
	pieces, err := parseSigned(signed)
	if err != nil {
		p.at("signed", "%v", err)
		return
	}
	var hasTS, hasBody bool
	for _, pc := range pieces {
		hasTS = hasTS || pc.kind == pieceTimestamp
		hasBody = hasBody || pc.kind == pieceBody
	}
	switch {
	case !hasBody:
		p.at("signed", "signed must contain {body}: a signature that does not cover the body would let anyone who saw one request send any body with it")
	case timestamped && !hasTS:
		p.at("signed", "signed must contain {timestamp}: an unsigned timestamp could be changed to replay a request forever")
	case !timestamped && hasTS:
		p.at("signed", "signed uses {timestamp}, which needs timestamp_header or timestamp_part")
	}
	s.signed = pieces
}

// checkKeyIDs validates secrets' ids, which only mean something with key_id_header.
func (s *signatureScheme) checkKeyIDs(cfg Config, p *problems) {
	if s.keyIDHeader != "" {
		checkHeaderName("key_id_header", s.keyIDHeader, p)
	}
	if len(cfg.SecretIDs) == 0 {
		return
	}
	if len(cfg.SecretIDs) != len(cfg.Secrets) {
		p.at("secrets", "secrets have %d ids for %d secrets", len(cfg.SecretIDs), len(cfg.Secrets))
		return
	}
	for i, id := range cfg.SecretIDs {
		switch {
		case id == "":
		case s.keyIDHeader == "":
			p.item("secrets", i, "secrets[%d] has an id, which needs key_id_header: the header a request names its key in", i)
			return
		case unsendable(id) != "":
			p.item("secrets", i, "secrets[%d].id %s", i, unsendable(id))
		}
	}
}

// parseSigned reads a signed template: literal text with {timestamp} and {body}, each at
// most once.
func parseSigned(t string) ([]piece, error) {
	if len(t) > maxSignedLen {
		return nil, fmt.Errorf("signed is %d bytes long; at most %d", len(t), maxSignedLen)
	}
	var out []piece
	seen := map[pieceKind]bool{}
	for t != "" {
		i := strings.IndexAny(t, "{}")
		if i < 0 {
			out = append(out, piece{text: t})
			break
		}
		if i > 0 {
			out = append(out, piece{text: t[:i]})
		}
		if t[i] == '}' {
			return nil, errors.New("signed has a '}' without its '{'")
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return nil, errors.New("signed has a '{' without its '}'")
		}
		var k pieceKind
		switch name := t[i+1 : i+j]; name {
		case "timestamp":
			k = pieceTimestamp
		case "body":
			k = pieceBody
		default:
			return nil, fmt.Errorf("signed: unknown placeholder {%s} (use {timestamp} and {body})", name)
		}
		if seen[k] {
			return nil, fmt.Errorf("signed: %s appears twice", t[i:i+j+1])
		}
		seen[k] = true
		out = append(out, piece{kind: k})
		t = t[i+j+1:]
	}
	return out, nil
}

func (s *signatureScheme) timestamped() bool { return s.tsHeader != "" || s.tsPart != "" }

// timestampWhere names where the timestamp comes from, for failure details.
func (s *signatureScheme) timestampWhere() string {
	if s.tsHeader != "" {
		return s.tsHeader
	}
	return s.header + " part " + s.tsPart
}

func (s *signatureScheme) check(req Request, c *Check) *Failure {
	r := &req
	// single's trimming also drops the "\n" Ruby's Base64.encode64 appends when the sender forgets
	// the .gsub("\n", "") of the platform's example.
	v, st := single(headerValues(r.Header, s.header))
	switch st {
	case absent:
		return fail(Signature, ReasonMissing, "no "+s.header+" header")
	case conflicting:
		return fail(Signature, ReasonMalformed, s.header+" header sent more than once with different values")
	}
	var cands [maxSignatureParts][]byte
	n := 0
	var ts string
	if s.sigPart == "" {
		if s.prefix != "" {
			if len(v) < len(s.prefix) || !strings.EqualFold(v[:len(s.prefix)], s.prefix) {
				return fail(Signature, ReasonMalformed, s.header+" header lacks the configured prefix")
			}
			v = v[len(s.prefix):]
		}
		sig, err := s.decode(v)
		if err != nil {
			return fail(Signature, ReasonMalformed, s.header+" header "+err.Error())
		}
		cands[0], n = sig, 1
	} else {
		var f *Failure
		if ts, n, f = s.parts(v, &cands); f != nil {
			return f
		}
	}
	var sent time.Time
	if s.timestamped() {
		var f *Failure
		if ts, sent, f = s.timestamp(r, ts); f != nil {
			return f
		}
	}
	id := ""
	if s.keyIDHeader != "" {
		var st presence
		if id, st = single(headerValues(r.Header, s.keyIDHeader)); st == conflicting {
			return fail(Signature, ReasonMalformed, s.keyIDHeader+" header sent more than once with different values")
		}
	}
	ok, tried := 0, 0
	for i := range c.secrets { // every eligible key, no early exit: timing must not reveal which matched
		if s.ids != nil && s.ids[i] != "" && s.ids[i] != id {
			continue // the key of another subscription: which one the request names is no secret
		}
		tried++
		var buf [sha256.Size]byte
		mac := s.macInto(buf[:0], c.secrets[i].b, ts, r.Body)
		for _, cand := range cands[:n] {
			ok |= subtle.ConstantTimeCompare(mac, cand)
		}
	}
	switch {
	case tried == 0 && id == "":
		return fail(Signature, ReasonMissing, "no "+s.keyIDHeader+" header, and every secret has an id")
	case tried == 0:
		return fail(Signature, ReasonMismatch, "no secret is configured for the key id in "+s.keyIDHeader)
	case ok != 1:
		return fail(Signature, ReasonMismatch, s.mismatch)
	}
	if s.timestamped() {
		// Judged after the signature, as for Standard Webhooks: "expired" always means an
		// authentic message that is too old or too new.
		return checkAge(Signature, s.timestampWhere(), r.now(), sent, s.tolerance)
	}
	return nil
}

// parts reads a multi-part header, "t=1492774577,v1=5257a8...,v0=6ffbb5...": the timestamp
// part (when tsPart is set) and the decoded signature parts. Parts of other names are
// skipped, as are signature parts that cannot be an HMAC-SHA256: another may still match.
func (s *signatureScheme) parts(v string, cands *[maxSignatureParts][]byte) (ts string, n int, f *Failure) {
	for rest := v; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		name, val = trimASCIISpace(name), trimASCIISpace(val)
		switch {
		case s.tsPart != "" && name == s.tsPart:
			if ts != "" && ts != val {
				return "", 0, fail(Signature, ReasonMalformed, s.header+" header has two different "+s.tsPart+" parts")
			}
			ts = val
		case name == s.sigPart:
			if n == maxSignatureParts {
				return "", 0, fail(Signature, ReasonMalformed, s.header+" header has more than "+strconv.Itoa(maxSignatureParts)+" "+s.sigPart+" parts")
			}
			if sig, err := s.decode(val); err == nil {
				cands[n] = sig
				n++
			}
		}
	}
	if n == 0 {
		return "", 0, fail(Signature, ReasonMalformed, s.header+" header has no well-formed "+s.sigPart+" part")
	}
	return ts, n, nil
}

// timestamp finds and parses the timestamp: from its header, or partTS from the signature
// header's parts.
func (s *signatureScheme) timestamp(r *Request, partTS string) (string, time.Time, *Failure) {
	ts := partTS
	if s.tsHeader != "" {
		var st presence
		switch ts, st = single(headerValues(r.Header, s.tsHeader)); st {
		case conflicting:
			return "", time.Time{}, fail(Signature, ReasonMalformed, s.tsHeader+" header sent more than once with different values")
		}
	}
	if ts == "" {
		return "", time.Time{}, fail(Signature, ReasonMissing, "no timestamp in "+s.timestampWhere())
	}
	if s.rfc3339 {
		t, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			return "", time.Time{}, fail(Signature, ReasonMalformed, s.timestampWhere()+" is not an RFC 3339 time")
		}
		return ts, t, nil
	}
	sec, err := strconv.ParseUint(ts, 10, 63) // digits only: no sign, no exponent, no fraction
	if err != nil {
		return "", time.Time{}, fail(Signature, ReasonMalformed, s.timestampWhere()+" is not a whole number of unix seconds")
	}
	return ts, time.Unix(int64(sec), 0), nil
}

// decode reads one signature in the configured encoding. The error says why in words that
// never quote the value.
func (s *signatureScheme) decode(v string) ([]byte, error) {
	var sig []byte
	var err error
	if s.encoding == "hex" {
		sig, err = hex.DecodeString(v) // accepts upper and lower case
	} else {
		sig, err = decodeBase64(v)
	}
	if err != nil {
		return nil, errors.New("is not valid " + s.encoding)
	}
	// A hex digest sent to a base64 endpoint decodes as base64 to 48 bytes and lands here,
	// as does a truncated value: neither can be an HMAC-SHA256, so both are malformed.
	if len(sig) != sha256.Size {
		return nil, errors.New("does not decode to a 32-byte HMAC-SHA256")
	}
	return sig, nil
}

// mac is the HMAC of what is signed, written piece by piece: concatenating a large body
// with the rest would be a second copy of it.
func (s *signatureScheme) mac(key []byte, ts string, body []byte) []byte {
	return s.macInto(nil, key, ts, body)
}

// macInto appends the HMAC-SHA256 of what is signed to out.
func (s *signatureScheme) macInto(out, key []byte, ts string, body []byte) []byte {
	return s.hashes.sum(out, key, func(h hash.Hash) { s.write(h, ts, body) })
}

func (s *signatureScheme) write(h hash.Hash, ts string, body []byte) {
	if s.signed == nil {
		h.Write(body)
		return
	}
	for _, p := range s.signed {
		switch p.kind {
		case pieceText:
			io.WriteString(h, p.text)
		case pieceTimestamp:
			io.WriteString(h, ts)
		case pieceBody:
			h.Write(body)
		}
	}
}

// messageID is, for a timestamped signature, the SHA-256 of what was signed: the same
// message has the same id however its header is dressed (parts reordered, a bogus
// signature part added), and another needs the key. It is remembered for twice the
// tolerance, as long as a replay could pass the timestamp check.
func (s *signatureScheme) messageID(req Request) (string, time.Duration) {
	r := &req
	if !s.timestamped() {
		return "", 0
	}
	partTS := ""
	if s.tsPart != "" {
		v, _ := single(headerValues(r.Header, s.header))
		var cands [maxSignatureParts][]byte
		var f *Failure
		if partTS, _, f = s.parts(v, &cands); f != nil {
			return "", 0
		}
	}
	ts, _, f := s.timestamp(r, partTS)
	if f != nil {
		return "", 0
	}
	h := sha256.New()
	s.write(h, ts, r.Body)
	return "sha256:" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)), 2 * s.tolerance
}

func (s *signatureScheme) sign(c *Check, in *signing, h http.Header, _ url.Values) error {
	if s.keyIDHeader != "" && s.ids != nil && s.ids[0] != "" {
		h.Set(s.keyIDHeader, s.ids[0])
	}
	ts := ""
	if s.timestamped() {
		now := in.now
		if now.IsZero() {
			now = time.Now()
		}
		switch {
		case s.rfc3339:
			ts = now.UTC().Format(time.RFC3339)
		case now.Unix() < 0:
			return fmt.Errorf("timestamp %s is before 1970, which unix seconds cannot express", now.UTC().Format(time.RFC3339))
		default:
			ts = strconv.FormatInt(now.Unix(), 10)
		}
	}
	sig := encodeMAC(s.mac(c.raw(0), ts, in.body), s.encoding)
	switch {
	case s.sigPart == "":
		h.Set(s.header, s.prefix+sig)
	case s.tsPart != "":
		h.Set(s.header, s.tsPart+"="+ts+","+s.sigPart+"="+sig)
	default:
		h.Set(s.header, s.sigPart+"="+sig)
	}
	if s.tsHeader != "" {
		h.Set(s.tsHeader, ts)
	}
	return nil
}

// SignatureValue computes the signature method's header value for body: prefix followed by
// HMAC-SHA256(secret, body) in lower-case hex when encoding is "hex", else in padded
// standard base64.
func SignatureValue(secret []byte, body []byte, encoding, prefix string) string {
	return prefix + encodeMAC(hmacSHA256(secret, body), encoding)
}

func encodeMAC(mac []byte, encoding string) string {
	if encoding == "hex" {
		return hex.EncodeToString(mac)
	}
	return base64.StdEncoding.EncodeToString(mac)
}

func hmacSHA256(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}
