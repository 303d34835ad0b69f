package security

import (
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"
)

// Check is a verifier as a value, for an owner that keeps hundreds of thousands of them and
// embeds each in a larger object: a *Check is a Verifier, and a Check is no heap object of
// its own. What endpoints with the same settings have in common (the Config but for its
// secrets, the normalised allow list, defaulted header names, digests of a username) lives
// in a Template they share; a Check holds its secrets and, for the methods that compare
// digests or decoded keys, those. For the signature method that is the secrets alone, so
// a garbage collection visits nothing per endpoint beyond the owner's own memory.
//
// The zero Check is not a verifier; Compile makes valid ones. A Check is immutable after
// Compile (MoveSecrets aside, which cannot change what it accepts) and safe for concurrent
// use.
type Check struct {
	t       *Template
	secrets []Secret // basic: password; token: token, secret; otherwise the method's list
	digests []digest // basic: password; token: token, secret; api_key, bearer: one per key
	keys    [][]byte // standard_webhooks: the decoded whsec keys
}

// Template is the part of a validated Config that holds no secret, prepared once and shared
// by the Checks of every Config that differs from it only in secrets.
type Template struct {
	cfg   Config // as given, secrets left out
	kind  kind   // cfg.Method, to switch on without comparing strings
	allow []netip.Prefix

	// The method's scheme with its per-endpoint fields left zero; Verify fills them in a
	// copy on its stack.
	basic  basicScheme
	token  tokenScheme
	sig    signatureScheme
	sw     standardWebhooksScheme
	apiKey apiKeyScheme
}

var _ Verifier = (*Check)(nil)

// kind numbers the methods for Verify's dispatch.
type kind uint8

const (
	kindBasic kind = iota + 1
	kindToken
	kindSignature
	kindStandardWebhooks
	kindAPIKey
	kindBearer
)

// Compile validates cfg exactly as New does, with the same errors, and returns its verifier
// as a value. like, when not nil, is a Template to share: it is used when its Config equals
// cfg but for secrets, and a new one is made otherwise.
func Compile(cfg Config, like *Template) (Check, error) {
	v, err := build(cfg)
	if err != nil {
		return Check{}, err
	}
	t := like
	if t == nil || !t.matches(cfg) {
		t = newTemplate(cfg, v)
	}
	c := Check{t: t}
	switch s := v.scheme.(type) {
	case *basicScheme:
		c.secrets = []Secret{cfg.Password}
		c.digests = []digest{s.pass}
	case *tokenScheme:
		c.secrets = []Secret{cfg.Token, cfg.TokenSecret}
		c.digests = []digest{s.tokenDigest, s.secretDigest}
	case *signatureScheme:
		c.secrets = slices.Clone(cfg.Secrets) // the caller may reuse its slice
	case *standardWebhooksScheme:
		c.secrets = slices.Clone(cfg.Secrets)
		c.keys = s.keys
	case *apiKeyScheme:
		c.secrets = slices.Clone(cfg.Keys)
		c.digests = s.digests
	case *bearerScheme:
		c.secrets = slices.Clone(cfg.Tokens)
		c.digests = s.digests
	}
	return c, nil
}

// secretFree is cfg with its secrets left out.
func secretFree(cfg Config) Config {
	cfg.Password, cfg.Token, cfg.TokenSecret = Secret{}, Secret{}, Secret{}
	cfg.Secrets, cfg.Keys, cfg.Tokens = nil, nil, nil
	return cfg
}

func newTemplate(cfg Config, v *verifier) *Template {
	t := &Template{cfg: secretFree(cfg), allow: v.allow}
	t.cfg.AllowIPs = slices.Clone(cfg.AllowIPs)
	switch s := v.scheme.(type) {
	case *basicScheme:
		t.kind, t.basic = kindBasic, basicScheme{username: s.username, user: s.user}
	case *tokenScheme:
		t.kind, t.token = kindToken, tokenScheme{tokenHeader: s.tokenHeader, secretHeader: s.secretHeader}
	case *signatureScheme:
		t.kind, t.sig = kindSignature, signatureScheme{header: s.header, encoding: s.encoding, prefix: s.prefix}
	case *standardWebhooksScheme:
		t.kind, t.sw = kindStandardWebhooks, standardWebhooksScheme{tolerance: s.tolerance}
	case *apiKeyScheme:
		t.kind, t.apiKey = kindAPIKey, apiKeyScheme{header: s.header, query: s.query}
	case *bearerScheme:
		t.kind = kindBearer
	}
	return t
}

// matches reports whether cfg equals t's Config but for secrets.
func (t *Template) matches(cfg Config) bool {
	a, b := t.cfg, secretFree(cfg)
	return a.Method == b.Method && a.Username == b.Username && a.TokenHeader == b.TokenHeader &&
		a.SecretHeader == b.SecretHeader && a.Header == b.Header && a.Encoding == b.Encoding &&
		a.Prefix == b.Prefix && a.Tolerance == b.Tolerance && a.Query == b.Query &&
		slices.Equal(a.AllowIPs, b.AllowIPs)
}

// Template is what c shares with the Checks of Configs that differ only in secrets: pass it
// to Compile for those.
func (c *Check) Template() *Template { return c.t }

// Valid reports whether c came from a successful Compile.
func (c *Check) Valid() bool { return c.t != nil }

// Method is the configured method, "" for the zero Check.
func (c *Check) Method() Method {
	if c.t == nil {
		return ""
	}
	return c.t.cfg.Method
}

// Config is the Config c was compiled from, secrets included, or the zero Config for the
// zero Check. It allocates nothing: its secret lists are c's own, not to be modified.
func (c *Check) Config() Config {
	if c.t == nil {
		return Config{}
	}
	cfg := c.t.cfg
	switch cfg.Method {
	case Basic:
		cfg.Password = c.secrets[0]
	case Token:
		cfg.Token, cfg.TokenSecret = c.secrets[0], c.secrets[1]
	case Signature, StandardWebhooks:
		cfg.Secrets = c.secrets
	case APIKey:
		cfg.Keys = c.secrets
	case Bearer:
		cfg.Tokens = c.secrets
	}
	return cfg
}

// Secrets are c's secrets in the order Config lists them (basic: the password; token: the
// token, then the secret). Not to be modified: see MoveSecrets.
func (c *Check) Secrets() []Secret { return c.secrets }

// MoveSecrets makes c keep to instead of its own list of secrets, so that an owner can hold
// many Checks' secrets in one array (see PackSecrets). It refuses, returning false, unless
// to holds the same values in the same order: what c accepts cannot change. The owner must
// not modify to afterwards.
func (c *Check) MoveSecrets(to []Secret) bool {
	if len(to) != len(c.secrets) {
		return false
	}
	for i := range to {
		if !bytes.Equal(to[i].b, c.secrets[i].b) {
			return false
		}
	}
	c.secrets = to
	return true
}

// PackSecrets rewrites list in place so that its secrets' bytes are copies held in one
// allocation, rather than one each.
func PackSecrets(list []Secret) {
	n := 0
	for _, s := range list {
		n += len(s.b)
	}
	buf := make([]byte, n)
	for i, s := range list {
		if len(s.b) == 0 {
			continue // keeps a nil secret nil
		}
		k := copy(buf, s.b)
		list[i].b, buf = buf[:k:k], buf[k:]
	}
}

// Verify returns nil or a *Failure. The zero Check refuses everything as missing.
func (c *Check) Verify(r *Request) error {
	if r == nil {
		r = &Request{}
	}
	t := c.t
	if t == nil {
		return fail("", ReasonMissing, "no security method configured")
	}
	// The allow list goes first: a request from the wrong network is refused whatever it
	// carries, and without spending an HMAC on it.
	if len(t.allow) > 0 {
		if f := checkIP(t.cfg.Method, t.allow, r.RemoteIP); f != nil {
			return f
		}
	}
	if f := c.check(r); f != nil {
		return f
	}
	return nil
}

// MessageID: see Verifier.
func (c *Check) MessageID(h http.Header) (string, time.Duration) {
	if c.t == nil || c.t.kind != kindStandardWebhooks {
		return "", 0
	}
	return c.t.sw.messageID(h)
}

// check runs the method's scheme: the shared half from the Template, completed on the
// stack with c's secrets, so no call allocates for it.
func (c *Check) check(r *Request) *Failure {
	t := c.t
	switch t.kind {
	case kindSignature:
		return t.sig.checkKeys(r, c.secrets)
	case kindBasic:
		s := t.basic
		s.password, s.pass = c.secrets[0].b, c.digests[0]
		return s.check(r)
	case kindToken:
		s := t.token
		s.token, s.secret = c.secrets[0].b, c.secrets[1].b
		s.tokenDigest, s.secretDigest = c.digests[0], c.digests[1]
		return s.check(r)
	case kindStandardWebhooks:
		s := t.sw
		s.keys = c.keys
		return s.check(r)
	case kindAPIKey:
		s := t.apiKey
		s.digests = c.digests
		return s.check(r)
	case kindBearer:
		s := bearerScheme{digests: c.digests}
		return s.check(r)
	}
	return fail(t.cfg.Method, ReasonMissing, "unknown security method")
}

// sign is what a correct sender would add to a request; see Sign.
func (c *Check) sign(body []byte, msgID string, now time.Time, h http.Header, q url.Values) error {
	t := c.t
	raw := func() [][]byte {
		out := make([][]byte, len(c.secrets))
		for i, s := range c.secrets {
			out[i] = s.b
		}
		return out
	}
	var s scheme
	switch t.cfg.Method {
	case Signature:
		sig := t.sig
		sig.keys = c.secrets
		s = &sig
	case Basic:
		b := t.basic
		b.password = c.secrets[0].b
		s = &b
	case Token:
		tk := t.token
		tk.token, tk.secret = c.secrets[0].b, c.secrets[1].b
		s = &tk
	case StandardWebhooks:
		sw := t.sw
		sw.keys = c.keys
		s = &sw
	case APIKey:
		a := t.apiKey
		a.keys = raw()
		s = &a
	case Bearer:
		s = &bearerScheme{tokens: raw()}
	}
	return s.sign(body, msgID, now, h, q)
}
