package security

import (
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Check is a verifier as a value, for an owner that keeps hundreds of thousands of them and
// embeds each in a larger object: a *Check is a Verifier, and a Check is no heap object of
// its own. What endpoints with the same settings have in common (the Config but for its
// secrets, the normalised allow list, the method's prepared scheme) lives in a Template
// they share; a Check holds its secrets and, for the methods that compare digests or
// decoded keys, those. For the signature method that is the secrets alone, so a garbage
// collection visits nothing per endpoint beyond the owner's own memory.
//
// The zero Check is not a verifier; Compile makes valid ones. A Check is immutable after
// Compile (MoveSecrets aside, which cannot change what it accepts) and safe for concurrent
// use.
type Check struct {
	t       *Template
	secrets []Secret // the method's secret keys' values, in the order its keys list them
	digests []digest // basic: password; token: token, secret; api_key, bearer: one per key
	keys    [][]byte // standard_webhooks: the decoded whsec keys
	jwt     *jwtKeys // jwt: its keys, static and from jwks_url
}

// Template is the part of a validated Config that holds no secret, prepared once and shared
// by the Checks of every Config that differs from it only in secrets.
type Template struct {
	cfg    Config // presets applied, secrets left out
	key    string // cfg as templateKey writes it: what sharing compares
	m      *method
	scheme scheme
	allow  []netip.Prefix
}

var _ Verifier = (*Check)(nil)

// Compile validates cfg exactly as New does, with the same errors, and returns its verifier
// as a value. like, when not nil, is a Template to share: it is used when its Config equals
// cfg but for secrets, and a new one is made otherwise.
func Compile(cfg Config, like *Template) (Check, error) {
	b, err := build(cfg)
	if err != nil {
		return Check{}, err
	}
	key := templateKey(b.cfg)
	t := like
	if t == nil || t.key != key {
		t = b.template(key)
	}
	return b.check(t), nil
}

// Templates hands out shared Templates, one per Config but for its secrets. It is not safe
// for concurrent use: a loader keeps one per worker.
type Templates struct{ m map[string]*Template }

// Compile is the package's Compile with the Template chosen from those handed out before.
func (ts *Templates) Compile(cfg Config) (Check, error) {
	b, err := build(cfg)
	if err != nil {
		return Check{}, err
	}
	key := templateKey(b.cfg)
	t := ts.m[key]
	if t == nil {
		t = b.template(key)
		if ts.m == nil {
			ts.m = map[string]*Template{}
		}
		ts.m[key] = t
	}
	return b.check(t), nil
}

func (b *built) template(key string) *Template {
	cfg := secretFree(b.m, b.cfg)
	cfg.AllowIPs, cfg.SecretIDs = slices.Clone(cfg.AllowIPs), slices.Clone(cfg.SecretIDs)
	return &Template{cfg: cfg, key: key, m: b.m, scheme: b.scheme, allow: b.allow}
}

// check is b's Check on t. Its secret list is its own: the caller may reuse its slices.
func (b *built) check(t *Template) Check {
	var list []Secret
	for _, k := range b.m.keys {
		switch f := b.cfg.at(k.field).(type) {
		case *Secret:
			list = append(list, *f)
		case *[]Secret:
			list = append(list, *f...)
		}
	}
	return Check{t: t, secrets: list, digests: b.mat.digests, keys: b.mat.keys, jwt: b.mat.jwt}
}

// secretFree is cfg with the method's secrets left out.
func secretFree(m *method, cfg Config) Config {
	for _, k := range m.keys {
		if k.secret() {
			k.copyTo(&cfg, &Config{})
		}
	}
	return cfg
}

// templateKey writes out everything of cfg that is not a secret, so that two Configs share
// a Template exactly when their keys are equal. It walks the method's key table, so a key
// added there is compared without further code.
func templateKey(cfg Config) string {
	b := make([]byte, 0, 128)
	b = append(append(b, cfg.Method...), 0)
	b = append(append(b, cfg.Preset...), 0)
	var keys []Key
	if m := lookup(cfg.Method); m != nil {
		keys = m.keys
	}
	for _, k := range keys {
		switch f := cfg.at(k.field).(type) {
		case *string:
			b = append(append(append(b, k.Name...), '='), *f...)
		case *time.Duration:
			b = strconv.AppendInt(append(append(b, k.Name...), '='), int64(*f), 10)
		case *[]string:
			b = append(append(b, k.Name...), '=')
			for _, v := range *f {
				b = append(append(b, strconv.Itoa(len(v))...), ':')
				b = append(b, v...)
			}
		default:
			continue
		}
		b = append(b, 0)
	}
	for _, p := range cfg.AllowIPs {
		b, _ = p.AppendText(b)
		b = append(b, ',')
	}
	b = append(b, 0)
	for _, id := range cfg.SecretIDs {
		b = append(append(b, strconv.Itoa(len(id))...), ':')
		b = append(b, id...)
	}
	return string(b)
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

// Config is the Config c was compiled from, presets applied and secrets included, or the
// zero Config for the zero Check. It allocates nothing: its secret lists are c's own, not
// to be modified.
func (c *Check) Config() Config {
	if c.t == nil {
		return Config{}
	}
	cfg := c.t.cfg
	rest := c.secrets
	lists := 0
	for _, k := range c.t.m.keys {
		switch f := cfg.at(k.field).(type) {
		case *Secret:
			*f, rest = rest[0], rest[1:]
		case *[]Secret:
			// jwt alone has two lists (keys, then secrets), and records where they split;
			// every other method's one list takes the rest.
			n := len(rest)
			if lists == 0 && c.jwt != nil {
				n = c.jwt.nKeys
			}
			*f, rest = rest[:n:n], rest[n:]
			lists++
		}
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
	if f := t.scheme.check(*r, c); f != nil {
		return f
	}
	return nil
}

// MessageID: see Verifier. r must be a request Verify accepted.
func (c *Check) MessageID(r *Request) (string, time.Duration) {
	if c.t == nil || r == nil {
		return "", 0
	}
	return c.t.scheme.messageID(*r)
}

// sign is what a correct sender would add to a request; see Sign.
func (c *Check) sign(in *signing, h http.Header, q url.Values) error {
	return c.t.scheme.sign(c, in, h, q)
}

// raw is c's secrets as bytes, for schemes that send them as they are.
func (c *Check) raw(i int) []byte { return c.secrets[i].b }
