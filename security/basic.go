package security

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// basicScheme checks Authorization: Basic base64(user:pass).
type basicScheme struct {
	username   string
	password   []byte
	user, pass digest
}

func newBasic(cfg Config, p *problems) *basicScheme {
	if cfg.Username == "" {
		p.add("username is required")
	}
	// RFC 7617 splits user-id and password at the first colon, so a colon in the username
	// could never be matched.
	if strings.Contains(cfg.Username, ":") {
		p.add("username must not contain ':'")
	}
	if cfg.Password.IsZero() {
		p.add("password is required")
	}
	return &basicScheme{
		username: cfg.Username,
		password: cfg.Password.b,
		user:     digestOf([]byte(cfg.Username)),
		pass:     digestOf(cfg.Password.b),
	}
}

func (s *basicScheme) check(r *Request) *Failure {
	user, pass, f := parseBasic(r.Header)
	if f != nil {
		return f
	}
	// Both comparisons always run, and are combined without short-circuiting, so timing
	// says nothing about whether the username alone was right.
	u := equalDigest(digestOf(user), s.user)
	pw := equalDigest(digestOf(pass), s.pass)
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

func (s *basicScheme) sign(_ []byte, _ string, _ time.Time, h http.Header, _ url.Values) error {
	cred := make([]byte, 0, len(s.username)+1+len(s.password))
	cred = append(append(append(cred, s.username...), ':'), s.password...)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(cred))
	return nil
}
