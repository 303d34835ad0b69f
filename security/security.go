// Package security verifies that a pushback came from its configured sender.
//
// Each endpoint has exactly one method (basic, token, signature, standard_webhooks,
// api_key, bearer, jwt: each one entry of methodTable), or a preset over one of them, plus an
// optional IP allow list. New validates an endpoint's Config once, at config load, and
// returns a Verifier; Verify answers nil or a *Failure whose Reason is a stable metric
// label. The gateway answers every failure with the same 401, so the reason only ever
// reaches logs and metrics, and no Failure ever carries a credential or a header value.
package security

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
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
	AWSSigV4         Method = "aws_sigv4"
	JWT              Method = "jwt"
	OAuth2           Method = "oauth2"
)

// Defaults of the optional Config fields.
const (
	DefaultTokenHeader     = "Access-Token"
	DefaultSecretHeader    = "Access-Secret"
	DefaultSignatureHeader = "Pushback-Signature"
	DefaultTolerance       = 5 * time.Minute
	// DefaultSigned is what a timestamped signature covers unless signed says otherwise.
	DefaultSigned = "{timestamp}.{body}"
)

// Config is one endpoint's security, secrets already resolved.
type Config struct {
	Method Method
	// Preset, when set, names a shorthand (github, stripe, ...) whose settings fill the
	// keys this Config leaves empty; Method may then be left empty.
	Preset string

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

	// signature, timestamped: the timestamp comes from a header of its own
	// (TimestampHeader) or from a part of a multi-part signature header such as Stripe's
	// "t=...,v1=..." (TimestampPart "t" with SignaturePart "v1"; several signature parts
	// are rotation). Signed is what the HMAC covers: a template of {timestamp}, {body} and
	// literal text, DefaultSigned when empty. TimestampFormat is "unix" (seconds, the
	// default) or "rfc3339". Tolerance bounds the timestamp's age both ways.
	TimestampHeader string
	TimestampPart   string
	SignaturePart   string
	Signed          string
	TimestampFormat string
	// KeyIDHeader names a header by which a request says which key signed it (Encompass's
	// Elli-SubscriptionId). SecretIDs are the secrets' ids, parallel to Secrets ("" for a
	// secret tried whatever the request names), or nil when none has one.
	KeyIDHeader string
	SecretIDs   []string

	// Secrets are the signature method's HMAC keys (several = rotation, any may match) or
	// standard_webhooks' "whsec_<base64>" secrets.
	Secrets   []Secret
	Tolerance time.Duration // standard_webhooks and timestamped signatures; 0 means DefaultTolerance

	Query string   // api_key
	Keys  []Secret // api_key

	Tokens []Secret // bearer

	// aws_sigv4: the region and service the credential scope must name. The key pairs are
	// Secrets (secret access keys) with SecretIDs (their access key ids).
	Region, Service string
	// jwt: Keys (above) hold the identity provider's public keys, PEM or a JWKS document;
	// Algorithms pins what a token's alg may be; Issuer and Audience must match iss and
	// aud; Leeway is the clock skew allowed on exp and nbf (0 means DefaultLeeway).
	// JWKSURL, when set, is where the provider publishes its keys (https, fetched through
	// Egress, which the loader sets to a transport bound by the egress rules).
	// JWKSMaxAge is how long fetched keys are used before a token fetches them again (0
	// means DefaultJWKSMaxAge). Secrets (above), when set, are HMAC keys shared with the
	// provider: the only keys HS256/384/512 verify with, and they verify nothing else.
	Algorithms []string
	JWKSURL    string
	JWKSMaxAge time.Duration
	Egress     http.RoundTripper
	Issuer     string
	Audience   string
	Leeway     time.Duration

	// oauth2: the clients are Secrets (client secrets) with SecretIDs (client ids; an id
	// listed twice is a secret being rotated). TokenTTL is how long an issued token works,
	// 0 meaning DefaultTokenTTL.
	TokenTTL time.Duration

	AllowIPs []netip.Prefix // optional for every method; empty allows any address
}

// Request is what verification sees. The gateway reads the body once, under its size
// limit, and resolves RemoteIP (peer address or trusted proxy header) before calling.
type Request struct {
	Header http.Header
	Query  url.Values
	Body   []byte // exact raw bytes received; signatures are over these
	// Method, Host and Path (escaped, as received) are what aws_sigv4 signs besides
	// headers; Method "" reads as POST.
	Method, Host, Path string
	RemoteIP           netip.Addr
	// Partner is the partner whose endpoint the request is for: oauth2 accepts only tokens
	// issued for it.
	Partner string
	Now     time.Time // for timestamp tolerances; zero means time.Now()
}

func (r *Request) now() time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// Reason says why a request failed verification. The set is small and stable because it is
// the reason label of pushbackd_auth_failures_total.
type Reason string

const (
	ReasonMissing   Reason = "missing"        // credential header or parameter absent
	ReasonMalformed Reason = "malformed"      // present but unparseable
	ReasonMismatch  Reason = "mismatch"       // well-formed but wrong
	ReasonExpired   Reason = "expired"        // an authentic message whose timestamp is outside the tolerance
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
	MessageID(r *Request) (id string, remember time.Duration)
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
// with errors.Join, each a *ConfigError: a plain lower-case message naming the config key,
// never containing a secret value.
func New(cfg Config) (Verifier, error) {
	c, err := Compile(cfg, nil)
	if err != nil {
		return nil, err // an untyped nil Verifier, never a nil *Check
	}
	return &c, nil
}

// built is a validated Config on its way to becoming a Check.
type built struct {
	cfg    Config // presets applied
	m      *method
	scheme scheme
	mat    material
	allow  []netip.Prefix
}

func build(cfg Config) (*built, error) {
	var p problems
	cfg = withPreset(cfg, &p)
	m := lookup(cfg.Method)
	var b built
	switch {
	case m != nil:
		b.scheme, b.mat = m.prepare(cfg, &p)
	case cfg.Method == "" && cfg.Preset == "":
		p.add("security method is required")
	case cfg.Method != "":
		p.at("method", "unknown security method %q (want one of %s)", string(cfg.Method), methodNames())
	}
	b.allow = normalizePrefixes(cfg.AllowIPs, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	b.cfg, b.m = cfg, m
	return &b, nil
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
			p.item("allow_ips", i, "allow_ips[%d] is not a valid CIDR prefix", i)
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

// ConfigError is one problem with a Config. Key names the config key it concerns ("" for
// the block as a whole) and Index the item of a list key (-1 for none), so the loader can
// point at the exact line; the message never quotes a secret.
type ConfigError struct {
	Key   string
	Index int
	Msg   string
}

func (e *ConfigError) Error() string { return e.Msg }

// problems collects validation errors so New reports all of them, not only the first.
type problems struct{ errs []error }

// add records a problem of the block as a whole.
func (p *problems) add(format string, args ...any) { p.item("", -1, format, args...) }

// at records a problem of key.
func (p *problems) at(key, format string, args ...any) { p.item(key, -1, format, args...) }

// item records a problem of the i-th entry of list key.
func (p *problems) item(key string, i int, format string, args ...any) {
	p.errs = append(p.errs, &ConfigError{Key: key, Index: i, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// requireSecrets checks a list of secrets and returns their bytes.
func requireSecrets(key string, list []Secret, p *problems) [][]byte {
	if len(list) == 0 {
		p.at(key, "%s is required (at least one)", key)
		return nil
	}
	out := make([][]byte, 0, len(list))
	for i, s := range list {
		if s.IsZero() {
			p.item(key, i, "%s[%d] is empty", key, i)
		}
		out = append(out, s.b) // even when empty, so indexes in later messages stay right
	}
	return out
}

// checkSendable rejects a credential that cannot arrive intact in a header or query
// parameter (the i-th of list key, or key itself when i < 0). A secret read from a file
// with a trailing newline is the usual cause, and would otherwise fail every request with
// "mismatch".
func checkSendable(key string, i int, b []byte, p *problems) {
	why := unsendable(string(b))
	switch {
	case why == "":
	case i < 0:
		p.at(key, "%s %s", key, why)
	default:
		p.item(key, i, "%s[%d] %s", key, i, why)
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
