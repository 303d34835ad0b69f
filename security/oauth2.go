package security

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// oauth2 bounds and defaults. A token is minted by pushbackd itself, so anything longer
// than what it mints is refused before any decoding.
const (
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 24 * time.Hour
	maxOAuth2Token  = 512
	maxClientID     = 64
	oauth2Prefix    = "pbo2_"
	// oauth2KeyLabel derives a token key from a client secret: a token verifies only while
	// the secret that minted it is configured, so rotating the secret out revokes it, and
	// every instance sharing the config verifies it without shared state.
	oauth2KeyLabel = "pushbackd-oauth2"
)

var oauth2Method = method{
	name: OAuth2,
	keys: []Key{
		{Name: "clients", Kind: KeySecrets, IDs: true, IDName: "id", SecretName: "secret",
			Need: "clients: a list of {id: ..., secret: <secret reference>}", field: fSecrets},
		durationKey("token_ttl", fTokenTTL),
	},
	challenge:   `Bearer realm="pushbackd"`,
	prepare:     newOAuth2,
	credentials: func(Config) (credentialHeaders, string) { return credentialHeaders{}, "" }, // Authorization is always redacted
}

// oauth2Scheme checks Authorization: Bearer <token> where the token was issued by the
// partner's token endpoint (POST /oauth/{partner}/token) to one of the endpoint's clients.
// The Check holds the client secrets, in the order of ids, and keys their derived token keys.
type oauth2Scheme struct {
	ids []string
	ttl time.Duration
}

func newOAuth2(cfg Config, p *problems) (scheme, material) {
	s := &oauth2Scheme{ids: cfg.SecretIDs, ttl: cfg.TokenTTL}
	switch {
	case s.ttl == 0:
		s.ttl = DefaultTokenTTL
	case s.ttl < time.Second || s.ttl > MaxTokenTTL:
		p.at("token_ttl", "token_ttl must be between 1s and %s", MaxTokenTTL)
	}
	raw := requireSecrets("clients", cfg.Secrets, p)
	keys := make([][]byte, len(raw))
	for i := range raw {
		id := ""
		if i < len(cfg.SecretIDs) {
			id = cfg.SecretIDs[i]
		}
		switch {
		case id == "":
			p.item("clients", i, "clients[%d] needs an id", i)
		case !clientID(id):
			p.item("clients", i, "clients[%d]: id must be 1 to %d letters, digits, '.', '_', '-' or '~'", i, maxClientID)
		}
		checkSendable("clients", i, raw[i], p)
		keys[i] = hmacSHA256(raw[i], []byte(oauth2KeyLabel))
	}
	return s, material{keys: keys, digests: digestsOf(raw)}
}

// clientID is what a client id may be: unreserved characters, so it needs no escaping in a
// form or in Basic credentials, and never holds the token's separator.
func clientID(v string) bool {
	if len(v) == 0 || len(v) > maxClientID {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !unreserved(v[i]) {
			return false
		}
	}
	return true
}

// oauth2Token is a parsed token: "pbo2_" base64url(payload) "." base64url(HMAC-SHA256).
// The payload is partner "\n" client id "\n" expiry (unix seconds) "\n" random id.
type oauth2Token struct {
	partner, client string
	expires         time.Time
	payload         []byte
	mac             [sha256.Size]byte
}

// parseOAuth2Token parses a token's shape; it does not check the MAC.
func parseOAuth2Token(tok string) (oauth2Token, error) {
	var t oauth2Token
	if len(tok) > maxOAuth2Token {
		return t, parseError("token is longer than " + strconv.Itoa(maxOAuth2Token) + " bytes")
	}
	rest, ok := strings.CutPrefix(tok, oauth2Prefix)
	if !ok {
		return t, parseError("token was not issued by pushbackd")
	}
	body, mac, ok := strings.Cut(rest, ".")
	if !ok {
		return t, parseError("token has no signature")
	}
	enc := base64.RawURLEncoding.Strict()
	// The length first: Decode writes past a too-small destination.
	if len(mac) != enc.EncodedLen(sha256.Size) {
		return t, parseError("token signature is malformed")
	}
	if n, err := enc.Decode(t.mac[:], []byte(mac)); err != nil || n != sha256.Size {
		return t, parseError("token signature is malformed")
	}
	payload, err := enc.DecodeString(body)
	if err != nil {
		return t, parseError("token payload is not base64url")
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 4 {
		return t, parseError("token payload does not have 4 fields")
	}
	if !clientID(parts[1]) || len(parts[0]) == 0 || len(parts[0]) > 128 || len(parts[3]) != 32 {
		return t, parseError("token payload has a malformed field")
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || exp <= 0 || strconv.FormatInt(exp, 10) != parts[2] {
		return t, parseError("token expiry is malformed")
	}
	t.partner, t.client, t.expires, t.payload = parts[0], parts[1], time.Unix(exp, 0), payload
	return t, nil
}

func (s *oauth2Scheme) check(req Request, c *Check) *Failure {
	r := &req
	scheme, tok, st := authorization(r.Header)
	switch st {
	case absent:
		return fail(OAuth2, ReasonMissing, "no Authorization header")
	case conflicting:
		return fail(OAuth2, ReasonMalformed, "Authorization header sent more than once with different values")
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return fail(OAuth2, ReasonMalformed, "Authorization scheme is not Bearer")
	}
	t, err := parseOAuth2Token(tok)
	if err != nil {
		return fail(OAuth2, ReasonMalformed, err.Error())
	}
	// The partner is public; the MAC below is what proves the token. A token of another
	// partner is refused even when both configure the same client secret.
	if r.Partner == "" || t.partner != r.Partner {
		return fail(OAuth2, ReasonMismatch, "token was issued for another partner")
	}
	ok := 0
	for i, id := range s.ids {
		if id != t.client {
			continue
		}
		m := hmac.New(sha256.New, c.keys[i])
		m.Write(t.payload)
		if hmac.Equal(m.Sum(nil), t.mac[:]) {
			ok = 1
		}
	}
	if ok == 0 {
		return fail(OAuth2, ReasonMismatch, "token does not verify with any configured client secret")
	}
	now := r.now()
	if !now.Before(t.expires) {
		return fail(OAuth2, ReasonExpired, "token expired")
	}
	// A token from the future beyond the longest lifetime was not minted by this config.
	if t.expires.Sub(now) > MaxTokenTTL+time.Minute {
		return fail(OAuth2, ReasonMalformed, "token expiry is too far ahead")
	}
	return nil
}

// IssueToken is the token endpoint's half: when c is an oauth2 check that lists client id
// with secret, it mints a token for partner valid from now for the configured token_ttl.
// The secret is compared by digest in constant time; ok is false for any other check.
func (c *Check) IssueToken(partner, id, secret string, now time.Time) (token string, ttl time.Duration, ok bool) {
	if c.t == nil || c.t.cfg.Method != OAuth2 {
		return "", 0, false
	}
	s := c.t.scheme.(*oauth2Scheme)
	d := digestOf([]byte(secret))
	match := -1
	for i, cid := range s.ids {
		if cid == id && hmac.Equal(d[:], c.digests[i][:]) {
			match = i
		}
	}
	if match < 0 {
		return "", 0, false
	}
	return mintOAuth2(c.keys[match], partner, id, now.Add(s.ttl)), s.ttl, true
}

// mintOAuth2 builds a token with key (the derived key of the client's secret).
func mintOAuth2(key []byte, partner, id string, expires time.Time) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	payload := partner + "\n" + id + "\n" + strconv.FormatInt(expires.Unix(), 10) + "\n" + hex.EncodeToString(nonce[:])
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return oauth2Prefix + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(m.Sum(nil))
}

// sign refuses: a sender gets its token from the token endpoint, which `pushbackd curl`
// shows, rather than one minted offline that would outlive a rotation it never saw.
func (*oauth2Scheme) sign(*Check, *signing, http.Header, url.Values) error {
	return parseError("oauth2 tokens come from POST /oauth/{partner}/token: run `pushbackd curl` for the token request and the call using it")
}

func (*oauth2Scheme) messageID(Request) (string, time.Duration) { return "", 0 }
