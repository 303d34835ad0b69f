package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names of AWS Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html).
const (
	HeaderAmzDate          = "X-Amz-Date"
	HeaderAmzContentSHA256 = "X-Amz-Content-Sha256"
	sigv4Algorithm         = "AWS4-HMAC-SHA256"
	amzDateFormat          = "20060102T150405Z"
	unsignedPayload        = "UNSIGNED-PAYLOAD"
)

// Bounds of what the Authorization parser accepts. A real SDK request signs a handful of
// headers; the bounds only stop a sender from making the gateway hash and sort at will.
const (
	maxSigV4Authorization = 4096
	maxSigV4Headers       = 32
)

var awsSigV4Method = method{
	name: AWSSigV4,
	keys: []Key{
		{Name: "region", Kind: KeyText, Need: "region: the AWS region senders sign for, e.g. us-east-1", field: fRegion},
		{Name: "service", Kind: KeyText, Need: "service: the service name senders sign for, e.g. pushbackd", field: fService},
		{Name: "credentials", Kind: KeySecrets, IDs: true, IDName: "access_key_id", SecretName: "secret_access_key",
			Need: "credentials: a list of {access_key_id: ..., secret_access_key: <secret reference>}", field: fSecrets},
		durationKey("tolerance", fTolerance),
	},
	prepare: newSigV4,
	credentials: func(Config) (credentialHeaders, string) {
		return credentialHeaders{"Authorization"}, ""
	},
}

// sigv4Scheme checks an AWS Signature Version 4 Authorization header: the access key id
// picks one of the operator's key pairs, the credential scope must name the configured
// region and service, the canonical request is rebuilt from the request as received (only
// the headers the sender lists as signed, host and x-amz-date among them), the payload
// hash is always computed from the raw body, and X-Amz-Date must be within tolerance both
// ways. The Check holds the secret access keys, in the order of ids.
type sigv4Scheme struct {
	region, service string
	ids             []string // access key ids, parallel to the Check's secrets
	tolerance       time.Duration
	keys            sigv4KeyCache // derived signing keys; shared by the Template's Checks
}

func newSigV4(cfg Config, p *problems) (scheme, material) {
	s := &sigv4Scheme{region: cfg.Region, service: cfg.Service, tolerance: tolerance(cfg.Tolerance, p), ids: cfg.SecretIDs}
	for _, k := range [...]struct{ name, v string }{{"region", cfg.Region}, {"service", cfg.Service}} {
		if k.v != "" && !scopePart(k.v) {
			p.at(k.name, "%s must be 1 to 64 letters, digits, '.', '_' or '-' (it is part of the credential scope)", k.name)
		}
	}
	raw := requireSecrets("credentials", cfg.Secrets, p)
	for i := range raw {
		id := ""
		if i < len(cfg.SecretIDs) {
			id = cfg.SecretIDs[i]
		}
		switch {
		case id == "":
			p.item("credentials", i, "credentials[%d] needs an access_key_id", i)
		case !accessKeyID(id):
			p.item("credentials", i, "credentials[%d]: access_key_id must be 1 to 128 letters and digits", i)
		case slices.Index(cfg.SecretIDs, id) < i:
			p.item("credentials", i, "credentials[%d]: access_key_id %s is listed twice", i, id)
		}
		checkSendable("credentials", i, raw[i], p)
	}
	return s, material{}
}

// scopePart is what a region or service may be: the credential scope is "/"-separated.
func scopePart(v string) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func accessKeyID(v string) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isAlnum(v[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// sigv4Auth is a parsed Authorization header.
type sigv4Auth struct {
	accessKey, date, region, service string
	signedHeaders                    string // as sent: lower-case names joined by ';'
	signature                        [sha256.Size]byte
}

// parseError is a credential parser's error (sigv4 Authorization headers, oauth2 tokens):
// its text becomes a Failure detail, so it is fixed text that never quotes the input.
type parseError string

func (e parseError) Error() string { return string(e) }

// parseSigV4Authorization parses "AWS4-HMAC-SHA256 Credential=AKID/20260101/region/service/
// aws4_request, SignedHeaders=a;b, Signature=<64 hex>". Each component exactly once, in any
// order; the signed header list sorted, without repeats, and within bounds.
func parseSigV4Authorization(v string) (sigv4Auth, error) {
	var a sigv4Auth
	if len(v) > maxSigV4Authorization {
		return a, parseError("Authorization header is longer than " + strconv.Itoa(maxSigV4Authorization) + " bytes")
	}
	rest, ok := strings.CutPrefix(v, sigv4Algorithm+" ")
	if !ok {
		return a, parseError("Authorization header is not " + sigv4Algorithm)
	}
	var cred, signed, sig string
	var seen int
	for part := range strings.SplitSeq(rest, ",") {
		name, val, ok := strings.Cut(strings.Trim(part, " "), "=")
		var dst *string
		var bit int
		switch {
		case !ok:
			return a, parseError("Authorization component without '='")
		case name == "Credential":
			dst, bit = &cred, 1
		case name == "SignedHeaders":
			dst, bit = &signed, 2
		case name == "Signature":
			dst, bit = &sig, 4
		default:
			return a, parseError("Authorization has an unknown component")
		}
		if seen&bit != 0 {
			return a, parseError("Authorization repeats " + name)
		}
		seen |= bit
		*dst = val
	}
	if seen != 7 {
		return a, parseError("Authorization lacks Credential, SignedHeaders or Signature")
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return a, parseError("Credential is not AKID/date/region/service/aws4_request")
	}
	a.accessKey, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	if !accessKeyID(a.accessKey) || !scopePart(a.region) || !scopePart(a.service) {
		return a, parseError("Credential has a malformed access key id, region or service")
	}
	if _, err := time.Parse("20060102", a.date); err != nil || len(a.date) != 8 {
		return a, parseError("Credential date is not YYYYMMDD")
	}
	if err := checkSignedHeaders(signed); err != nil {
		return a, err
	}
	a.signedHeaders = signed
	if len(sig) != 2*sha256.Size || strings.ToLower(sig) != sig {
		return a, parseError("Signature is not 64 lower-case hex digits")
	}
	if _, err := hex.Decode(a.signature[:], []byte(sig)); err != nil {
		return a, parseError("Signature is not 64 lower-case hex digits")
	}
	return a, nil
}

// checkSignedHeaders checks the list is what a signer writes: lower-case header names,
// sorted, no repeats, host and x-amz-date among them, and at most maxSigV4Headers.
func checkSignedHeaders(list string) error {
	n, prev := 0, ""
	host, date := false, false
	for name := range strings.SplitSeq(list, ";") {
		n++
		switch {
		case n > maxSigV4Headers:
			return parseError("SignedHeaders lists more than " + strconv.Itoa(maxSigV4Headers) + " headers")
		case !validHeaderName(name) || strings.ToLower(name) != name:
			return parseError("SignedHeaders has a name that is not a lower-case header name")
		case name <= prev:
			return parseError("SignedHeaders is not sorted or repeats a name")
		}
		prev = name
		host = host || name == "host"
		date = date || name == "x-amz-date"
	}
	if !host || !date {
		return parseError("SignedHeaders must include host and x-amz-date")
	}
	return nil
}

func (s *sigv4Scheme) check(req Request, c *Check) *Failure {
	r := &req
	v, st := single(headerValues(r.Header, "Authorization"))
	switch st {
	case absent:
		return fail(AWSSigV4, ReasonMissing, "no Authorization header")
	case conflicting:
		return fail(AWSSigV4, ReasonMalformed, "Authorization header sent more than once with different values")
	}
	a, err := parseSigV4Authorization(v)
	if err != nil {
		return fail(AWSSigV4, ReasonMalformed, err.Error())
	}
	date, dst := single(headerValues(r.Header, HeaderAmzDate))
	if dst != present {
		return fail(AWSSigV4, ReasonMalformed, "no single "+HeaderAmzDate+" header")
	}
	sent, err := time.Parse(amzDateFormat, date)
	if err != nil || len(date) != len(amzDateFormat) {
		return fail(AWSSigV4, ReasonMalformed, HeaderAmzDate+" is not YYYYMMDDTHHMMSSZ")
	}
	if date[:8] != a.date {
		return fail(AWSSigV4, ReasonMalformed, "Credential date is not the date of "+HeaderAmzDate)
	}
	ph, pst := single(headerValues(r.Header, HeaderAmzContentSHA256))
	switch {
	case pst == conflicting:
		return fail(AWSSigV4, ReasonMalformed, HeaderAmzContentSHA256+" header sent more than once with different values")
	case pst == present && ph == unsignedPayload:
		return fail(AWSSigV4, ReasonMalformed, HeaderAmzContentSHA256+" is UNSIGNED-PAYLOAD, which is refused: sign the body")
	}
	// What no configured key could have signed is refused before the body is hashed: a
	// prober's large body with an unknown access key costs no more than a small one.
	if a.region != s.region || a.service != s.service {
		return fail(AWSSigV4, ReasonMismatch, "Credential scope names another region or service than configured")
	}
	i := slices.Index(s.ids, a.accessKey)
	if i < 0 {
		return fail(AWSSigV4, ReasonMismatch, "Credential names an access key id that is not configured")
	}
	bodyHash := sha256.Sum256(r.Body)
	var hexBody [2 * sha256.Size]byte
	hex.Encode(hexBody[:], bodyHash[:])
	if pst == present && !strings.EqualFold(ph, string(hexBody[:])) {
		return fail(AWSSigV4, ReasonMismatch, HeaderAmzContentSHA256+" is not the SHA-256 of the body received")
	}
	// Only a day whose X-Amz-Date could pass the age check is worth remembering.
	age := r.now().Sub(sent)
	key := s.keys.key(c.raw(i), a.date, s.region, s.service, age <= s.tolerance && age >= -s.tolerance)
	mac := sigv4Signature(key, a.date, s.region, s.service, date, s.stringToSignHash(r, a.signedHeaders, hexBody[:]))
	if !hmac.Equal(mac[:], a.signature[:]) {
		return fail(AWSSigV4, ReasonMismatch, "signature does not match the request")
	}
	// As for the other timestamped methods, the age is judged once the signature holds.
	return checkAge(AWSSigV4, HeaderAmzDate, r.now(), sent, s.tolerance)
}

// stringToSignHash is the hex SHA-256 of the canonical request, written straight into the
// hash rather than built as a string.
func (s *sigv4Scheme) stringToSignHash(r *Request, signedHeaders string, hexBody []byte) []byte {
	method := r.Method
	if method == "" {
		method = http.MethodPost
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	// Built in a stack buffer and hashed at once: writing to a hash.Hash through io.Writer
	// made every piece escape to the heap.
	var buf [1024]byte
	b := append(append(buf[:0], method...), '\n')
	b = append(append(b, awsEscape(path, false)...), '\n')
	b = append(append(b, canonicalQuery(r.Query)...), '\n')
	for name := range strings.SplitSeq(signedHeaders, ";") {
		b = append(append(b, name...), ':')
		b = append(append(b, canonicalHeaderValue(r, name)...), '\n')
	}
	b = append(append(b, '\n'), signedHeaders...)
	b = append(append(b, '\n'), hexBody...)
	sum := sha256.Sum256(b)
	out := make([]byte, 2*sha256.Size)
	hex.Encode(out, sum[:])
	return out
}

// canonicalHeaderValue is a signed header's values as the signer saw them: each trimmed,
// runs of spaces collapsed, joined with ",". Go's server moves Host out of the header map
// and may leave Content-Length implicit, so those come from the request itself.
func canonicalHeaderValue(r *Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	default:
		vals = headerValues(r.Header, name)
		if len(vals) == 0 && name == "content-length" {
			vals = []string{strconv.Itoa(len(r.Body))}
		}
	}
	if len(vals) == 1 {
		return collapseSpaces(vals[0])
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = collapseSpaces(v)
	}
	return strings.Join(out, ",")
}

func collapseSpaces(v string) string {
	v = strings.Trim(v, " ")
	if !strings.Contains(v, "  ") {
		return v
	}
	return strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' }), " ")
}

// canonicalQuery encodes every parameter as AWS does (RFC 3986 unreserved characters kept,
// everything else %XX, space as %20) and sorts by encoded name, then encoded value.
func canonicalQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	type kv struct{ k, v string }
	var params []kv
	for k, vs := range q {
		ek := awsEscape(k, true)
		for _, v := range vs {
			params = append(params, kv{ek, awsEscape(v, true)})
		}
	}
	slices.SortFunc(params, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// awsEscape is AWS's URI encoding: unreserved characters as they are, every other byte as
// %XX in upper-case hex; '/' too unless it separates path segments (slash false). Applied
// to an already escaped path it encodes it a second time, as SigV4 does for every service
// but S3.
func awsEscape(s string, slash bool) string {
	const hexDigits = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && (slash || s[i] != '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || !slash && c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.' || c == '~'
}

// sigv4Signature signs the string to sign with the day's signing key.
func sigv4Signature(key [sha256.Size]byte, day, region, service, amzDate string, canonicalHash []byte) [sha256.Size]byte {
	var buf [320]byte
	b := append(buf[:0], sigv4Algorithm+"\n"...)
	b = append(append(b, amzDate...), '\n')
	b = append(append(append(append(append(b, day...), '/'), region...), '/'), service...)
	b = append(append(b, "/aws4_request\n"...), canonicalHash...)
	return hmacSum(key[:], b)
}

// messageID is the signature: a resent request carries the same one while its X-Amz-Date
// is within tolerance, and a request signed anew at another second carries another. It is
// remembered for 2×tolerance for the reason given at standardWebhooksScheme.messageID.
func (s *sigv4Scheme) messageID(req Request) (string, time.Duration) {
	v, st := single(headerValues(req.Header, "Authorization"))
	if st != present {
		return "", 0
	}
	a, err := parseSigV4Authorization(v)
	if err != nil {
		return "", 0
	}
	return "sigv4:" + hex.EncodeToString(a.signature[:]), 2 * s.tolerance
}

// sign signs like an SDK: host, x-amz-date, x-amz-content-sha256 and, when the body is not
// empty, content-length, over the target URL's path and query.
func (s *sigv4Scheme) sign(c *Check, in *signing, h http.Header, _ url.Values) error {
	if in.target == nil {
		return errors.New("aws_sigv4 signs the URL as well as the body: give the request's URL")
	}
	now := in.now
	if now.IsZero() {
		now = time.Now()
	}
	date := now.UTC().Format(amzDateFormat)
	sum := sha256.Sum256(in.body)
	hexBody := []byte(hex.EncodeToString(sum[:]))
	h.Set(HeaderAmzDate, date)
	h.Set(HeaderAmzContentSHA256, string(hexBody))
	signed := "host;x-amz-content-sha256;x-amz-date"
	if len(in.body) > 0 {
		signed = "content-length;" + signed
		h.Set("Content-Length", strconv.Itoa(len(in.body)))
	}
	req := &Request{Method: http.MethodPost, Host: in.target.Host, Path: in.target.EscapedPath(),
		Query: in.target.Query(), Header: h, Body: in.body}
	sig := sigv4Signature(sigv4SigningKey(c.raw(0), date[:8], s.region, s.service), date[:8], s.region, s.service, date, s.stringToSignHash(req, signed, hexBody))
	h.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%x",
		sigv4Algorithm, s.ids[0], date[:8], s.region, s.service, signed, sig))
	return nil
}
