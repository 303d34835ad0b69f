package security

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

var basicMethod = method{
	name: Basic,
	keys: []Key{
		{Name: "username", Kind: KeyText, Need: "a username", field: fUsername},
		secretKey("password", "a password (a secret reference)", fPassword),
	},
	challenge:   `Basic realm="pushbackd"`,
	prepare:     newBasic,
	credentials: func(Config) (credentialHeaders, string) { return credentialHeaders{}, "" }, // Authorization is always redacted
}

// basicScheme checks Authorization: Basic base64(user:pass). Its Check holds the password
// and the password's digest.
type basicScheme struct {
	username string
	user     digest
}

func newBasic(cfg Config, p *problems) (scheme, material) {
	if cfg.Username == "" {
		p.at("username", "username is required")
	}
	// RFC 7617 splits user-id and password at the first colon, so a colon in the username
	// could never be matched.
	if strings.Contains(cfg.Username, ":") {
		p.at("username", "username must not contain ':'")
	}
	if cfg.Password.IsZero() {
		p.at("password", "password is required")
	}
	s := &basicScheme{username: cfg.Username, user: digestOf([]byte(cfg.Username))}
	return s, material{digests: []digest{digestOf(cfg.Password.b)}}
}

func (s *basicScheme) check(req Request, c *Check) *Failure {
	r := &req
	user, pass, f := parseBasic(r.Header)
	if f != nil {
		return f
	}
	// Both comparisons always run, and are combined without short-circuiting, so timing
	// says nothing about whether the username alone was right.
	u := equalDigest(digestOf(user), s.user)
	pw := equalDigest(digestOf(pass), c.digests[0])
	switch {
	case u&pw == 1:
		return nil
	case u == 1:
		return fail(Basic, ReasonMismatch, "password does not match")
	case pw == 1:
		return fail(Basic, ReasonMismatch, "username does not match")
	}
	return fail(Basic, ReasonMismatch, "username and password do not match")
}

// parseBasic extracts user and password from the Authorization header.
func parseBasic(h http.Header) (user, pass []byte, f *Failure) {
	scheme, cred, st := authorization(h)
	switch st {
	case absent:
		return nil, nil, fail(Basic, ReasonMissing, "no Authorization header")
	case conflicting:
		return nil, nil, fail(Basic, ReasonMalformed, "Authorization header sent more than once with different values")
	}
	if !strings.EqualFold(scheme, "Basic") {
		return nil, nil, fail(Basic, ReasonMalformed, "Authorization scheme is not Basic")
	}
	if cred == "" {
		return nil, nil, fail(Basic, ReasonMalformed, "Authorization Basic has no credentials")
	}
	raw, err := decodeBase64(cred)
	if err != nil {
		return nil, nil, fail(Basic, ReasonMalformed, "Authorization Basic credentials are not valid base64")
	}
	// The first colon separates them: passwords may contain colons, user-ids may not.
	i := strings.IndexByte(string(raw), ':')
	if i < 0 {
		return nil, nil, fail(Basic, ReasonMalformed, "Authorization Basic credentials have no ':' between username and password")
	}
	return raw[:i], raw[i+1:], nil
}

func (s *basicScheme) sign(c *Check, _ *signing, h http.Header, _ url.Values) error {
	password := c.raw(0)
	cred := make([]byte, 0, len(s.username)+1+len(password))
	cred = append(append(append(cred, s.username...), ':'), password...)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(cred))
	return nil
}

func (*basicScheme) messageID(Request) (string, time.Duration) { return "", 0 }
