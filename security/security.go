// Package security verifies that a pushback came from its configured sender.
//
// Each endpoint has exactly one method (basic, token, signature, standard_webhooks,
// api_key, bearer) plus an optional IP allow list. New validates an endpoint's Config once,
// at config load, and returns a Verifier; Verify answers nil or a *Failure whose Reason is a
// stable metric label. The gateway answers every failure with the same 401, so the reason
// only ever reaches logs and metrics, and no Failure ever carries a credential or a header
// value.
package security

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Method names a security method as written in the config.
type Method string

const (
	Basic            Method = "basic"
	Token            Method = "token"
	Signature        Method = "signature"
	StandardWebhooks Method = "standard_webhooks"
	APIKey           Method = "api_key"
	Bearer           Method = "bearer"
)

// Methods returns every method, in the order the documentation lists them.
func Methods() []Method {
	return []Method{Basic, Token, Signature, StandardWebhooks, APIKey, Bearer}
}

// Defaults of the optional Config fields.
const (
	DefaultTokenHeader     = "Access-Token"
	DefaultSecretHeader    = "Access-Secret"
	DefaultSignatureHeader = "Pushback-Signature"
	DefaultTolerance       = 5 * time.Minute
)

// Config is one endpoint's security, secrets already resolved.
type Config struct {
	Method Method

	// basic
	Username string
	Password Secret

	// token: header names default to Access-Token / Access-Secret. The CGI-style spelling of
	// each configured name (HTTP_ACCESS_TOKEN / HTTP_ACCESS_SECRET for the defaults) is
	// accepted too, because the platform this product replaces documented those names and
	// senders copied them literally.
	Token, TokenSecret        Secret
	TokenHeader, SecretHeader string

	// signature: Header defaults to Pushback-Signature; Encoding is "base64" (default) or
	// "hex"; Prefix (e.g. "sha256=") must then lead the header value.
	// api_key: the key's header (Header) or query parameter (Query), exactly one.
	Header   string
	Encoding string
	Prefix   string

	// Secrets are the signature method's HMAC keys (several = rotation, any may match) or
	// standard_webhooks' "whsec_<base64>" secrets.
	Secrets   []Secret
	Tolerance time.Duration // standard_webhooks; 0 means DefaultTolerance

	Query string   // api_key
	Keys  []Secret // api_key

	Tokens []Secret // bearer

	AllowIPs []netip.Prefix // optional for every method; empty allows any address
}

// Request is what verification sees. The gateway reads the body once, under its size
// limit, and resolves RemoteIP (peer address or trusted proxy header) before calling.
type Request struct {
	Header   http.Header
	Query    url.Values
	Body     []byte // exact raw bytes received; signatures are over these
	RemoteIP netip.Addr
	Now      time.Time // standard_webhooks tolerance; zero means time.Now()
}

// Reason says why a request failed verification. The set is small and stable because it is
// the reason label of pushbackd_auth_failures_total.
type Reason string

const (
	ReasonMissing   Reason = "missing"        // credential header or parameter absent
	ReasonMalformed Reason = "malformed"      // present but unparseable
	ReasonMismatch  Reason = "mismatch"       // well-formed but wrong
	ReasonExpired   Reason = "expired"        // standard_webhooks timestamp outside tolerance
	ReasonIPDenied  Reason = "ip_not_allowed" // remote address outside allow_ips
	// ReasonRateLimited is not a verdict on a credential: the client had no tries left, so
	// nothing was checked.
	ReasonRateLimited Reason = "rate_limited"
)

// Reasons returns every Reason, so metrics can be initialised at zero for each label.
func Reasons() []Reason {
	return []Reason{ReasonMissing, ReasonMalformed, ReasonMismatch, ReasonExpired, ReasonIPDenied, ReasonRateLimited}
}

// Failure is the error Verify returns. Detail is for humans reading logs; it names headers
// and parameters but never contains a credential, a header value or a secret.
type Failure struct {
	Method Method
	Reason Reason
	Detail string
}

func (f *Failure) Error() string {
	if f.Detail == "" {
		return string(f.Method) + ": " + string(f.Reason)
	}
	return string(f.Method) + ": " + string(f.Reason) + ": " + f.Detail
}

// Verifier checks requests for one endpoint. It is immutable after New and safe for
// concurrent use.
type Verifier interface {
	// Verify returns nil or a *Failure.
	Verify(r *Request) error
	Method() Method
	// MessageID is the id a verified request gives its message, and how long the gateway
	// must remember it to refuse every replay the method's timestamp check lets through;
	// "" for methods whose messages carry no id.
	MessageID(h http.Header) (id string, remember time.Duration)
}

// Challenge is the WWW-Authenticate value a 401 should carry for m, "" if the method has
// none. Only the schemes HTTP itself defines get one; a challenge for a custom header
// scheme would tell clients nothing they can act on.
func Challenge(m Method) string {
	switch m {
	case Basic:
		return `Basic realm="pushbackd"`
	case Bearer:
		return `Bearer realm="pushbackd"`
	}
	return ""
}

// scheme is the method-specific half of a verifier: how it checks a request and what a
// correct sender would send.
type scheme interface {
	check(r *Request) *Failure
	sign(body []byte, msgID string, now time.Time, h http.Header, q url.Values) error
}

// verifier is what build validates and prepares; Compile keeps its parts in a Check.
type verifier struct {
	method Method
	allow  []netip.Prefix
	scheme scheme
}

// checkIP refuses a remote address outside a non-empty allow list.
func checkIP(m Method, allow []netip.Prefix, ip netip.Addr) *Failure {
	if !ip.IsValid() {
		return fail(m, ReasonIPDenied, "remote address unknown")
	}
	// An IPv4 client on a dual-stack listener shows up as ::ffff:a.b.c.d, and a link-local
	// address may carry a zone; Prefix.Contains matches neither against a plain prefix.
	ip = ip.Unmap().WithZone("")
	for _, p := range allow {
		if p.Contains(ip) {
			return nil
		}
	}
	return fail(m, ReasonIPDenied, "remote address "+ip.String()+" is not in allow_ips")
}

func fail(m Method, r Reason, detail string) *Failure {
	return &Failure{Method: m, Reason: r, Detail: detail}
}

// New validates cfg and returns its verifier. All problems are reported at once, joined
// with errors.Join, each a plain lower-case message naming the config key; none contains a
// secret value.
func New(cfg Config) (Verifier, error) {
	c, err := Compile(cfg, nil)
	if err != nil {
		return nil, err // an untyped nil Verifier, never a nil *Check
	}
	return &c, nil
}

func build(cfg Config) (*verifier, error) {
	var p problems
	var s scheme
	switch cfg.Method {
	case Basic:
		s = newBasic(cfg, &p)
	case Token:
		s = newToken(cfg, &p)
	case Signature:
		s = newSignature(cfg, &p)
	case StandardWebhooks:
		s = newStandardWebhooks(cfg, &p)
	case APIKey:
		s = newAPIKey(cfg, &p)
	case Bearer:
		s = newBearer(cfg, &p)
	case "":
		p.add("security method is required")
	default:
		names := make([]string, 0, 6)
		for _, m := range Methods() {
			names = append(names, string(m))
		}
		p.add("unknown security method %q (want one of %s)", string(cfg.Method), strings.Join(names, ", "))
	}
	allow := normalizePrefixes(cfg.AllowIPs, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return &verifier{method: cfg.Method, allow: allow, scheme: s}, nil
}

// normalizePrefixes masks each prefix and rewrites IPv4-mapped IPv6 prefixes as IPv4 ones,
// because Verify unmaps the remote address before matching.
func normalizePrefixes(in []netip.Prefix, p *problems) []netip.Prefix {
	if len(in) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(in))
	for i, pr := range in {
		if !pr.IsValid() {
			p.add("allow_ips[%d] is not a valid CIDR prefix", i)
			continue
		}
		a := pr.Addr().WithZone("")
		bits := pr.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out
}

// problems collects validation errors so New reports all of them, not only the first.
type problems struct{ errs []error }

func (p *problems) add(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// requireSecrets checks a list of secrets and returns their bytes.
func requireSecrets(key string, list []Secret, p *problems) [][]byte {
	if len(list) == 0 {
		p.add("%s is required (at least one)", key)
		return nil
	}
	out := make([][]byte, 0, len(list))
	for i, s := range list {
		if s.IsZero() {
			p.add("%s[%d] is empty", key, i)
		}
		out = append(out, s.b) // even when empty, so indexes in later messages stay right
	}
	return out
}

// checkSendable rejects a credential that cannot arrive intact in a header or query
// parameter. A secret read from a file with a trailing newline is the usual cause, and would
// otherwise fail every request with "mismatch".
func checkSendable(key string, b []byte, p *problems) {
	if why := unsendable(string(b)); why != "" {
		p.add("%s %s", key, why)
	}
}

// unsendable says why v cannot travel intact as a header value, or "" if it can: HTTP drops
// surrounding whitespace from field values (and Verify trims it), and control characters
// cannot be sent at all.
func unsendable(v string) string {
	if v == "" {
		return ""
	}
	if isSpace(v[0]) || isSpace(v[len(v)-1]) {
		return "has leading or trailing whitespace, which HTTP strips from header values"
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return "contains control characters, which cannot be sent in an HTTP header"
		}
	}
	return ""
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
