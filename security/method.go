package security

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// method is one security method: everything this package and the config loader know about
// it. A new method is one entry in methodTable, with its scheme in a file of its own; no
// switch anywhere else names it.
type method struct {
	name Method
	// keys are the config keys the method takes besides method, preset and allow_ips: how
	// each is written, what kind of value it holds and which Config field it fills. The
	// loader decodes them, and refuses a key of another method, from this list alone.
	keys []Key
	// challenge is the WWW-Authenticate value of the method's 401, "" for none. Only the
	// schemes HTTP itself defines get one: a challenge for a custom header scheme would tell
	// clients nothing they can act on.
	challenge string
	// prepare validates cfg (presets applied, secrets included) and returns its scheme,
	// which holds no secret and is shared by endpoints that differ only in secrets, and what
	// a Check keeps derived from its secrets.
	prepare func(cfg Config, p *problems) (scheme, material)
	// credentials names where a sender puts its credentials, so recorded requests can be
	// redacted: header names (their CGI spellings are redacted too) and a query parameter.
	credentials func(cfg Config) (headers credentialHeaders, query string)
}

// credentialHeaders are up to two header names, "" for none: an array, not a slice, so
// that asking costs no allocation on every recorded request.
type credentialHeaders [2]string

// scheme is a prepared method: how it checks a request, what a correct sender sends, and
// the id its messages carry. The per-endpoint half (secrets, their digests, decoded keys)
// is in the Check, so one scheme serves every endpoint with the same settings.
//
// The request is passed by value: passed by pointer through the interface it would escape,
// and every request the gateway verifies would cost an allocation for it.
type scheme interface {
	check(r Request, c *Check) *Failure
	sign(c *Check, in *signing, h http.Header, q url.Values) error
	// messageID: see Verifier.MessageID.
	messageID(r Request) (id string, remember time.Duration)
}

// material is what a Check derives from its secrets once, at Compile.
type material struct {
	digests []digest // SHA-256 of each secret, for methods that compare credentials
	keys    [][]byte // decoded keys, for methods whose secrets are encoded
	jwt     *jwtKeys // jwt: the parsed public keys and the jwks_url cache
}

// signing is what Sign was asked for.
type signing struct {
	body  []byte
	msgID string
	now   time.Time
	// target is the URL the request goes to, for methods that sign it (aws_sigv4); nil
	// when unknown.
	target *url.URL
}

// methodTable lists every method in the order the documentation gives them. It is never
// modified.
var methodTable = [...]*method{&basicMethod, &tokenMethod, &signatureMethod, &standardWebhooksMethod, &apiKeyMethod, &bearerMethod, &awsSigV4Method, &jwtMethod, &oauth2Method}

// lookup finds a method by name.
func lookup(name Method) *method {
	for _, m := range methodTable {
		if m.name == name {
			return m
		}
	}
	return nil
}

// Methods returns every method, in the order the documentation lists them.
func Methods() []Method {
	out := make([]Method, len(methodTable))
	for i, m := range methodTable {
		out[i] = m.name
	}
	return out
}

// MethodKeys returns the config keys of method m besides method, preset and allow_ips, and
// whether m exists.
func MethodKeys(m Method) ([]Key, bool) {
	if d := lookup(m); d != nil {
		return d.keys, true
	}
	return nil, false
}

// IsKey reports whether some method takes a key called name, so the loader can tell a key
// of another method from a key nobody knows.
func IsKey(name string) bool {
	for _, m := range methodTable {
		if slices.ContainsFunc(m.keys, func(k Key) bool { return k.Name == name }) {
			return true
		}
	}
	return false
}

// Challenge is the WWW-Authenticate value a 401 should carry for m, "" if the method has
// none.
func Challenge(m Method) string {
	if d := lookup(m); d != nil {
		return d.challenge
	}
	return ""
}

func methodNames() string {
	names := make([]string, len(methodTable))
	for i, m := range methodTable {
		names[i] = string(m.name)
	}
	return strings.Join(names, ", ")
}

// KeyKind is what a config key holds.
type KeyKind uint8

const (
	KeyText     KeyKind = iota + 1 // free text
	KeyHeader                      // an HTTP header name
	KeyEnum                        // one of Key.Values
	KeyDuration                    // a Go duration
	KeySecret                      // one secret reference
	KeySecrets                     // a list of secret references
	KeyTexts                       // a list of text, each one of Key.Values when those are set
)

// Key is one config key of a method.
type Key struct {
	Name   string
	Kind   KeyKind
	Values []string // KeyEnum: what it may be
	// Need, when set, makes the key required, and says what the method needs when it is
	// absent ("a password (a secret reference)"). Presets never supply a required key.
	Need string
	// IDs is true for a KeySecrets whose entries may each carry an id, which a request
	// names to pick its key (see Config.SecretIDs).
	IDs bool
	// IDName and SecretName, when set, spell a keyed entry as {IDName: id, SecretName:
	// <secret reference>} instead of {id: id, env: ...}: aws_sigv4's {access_key_id,
	// secret_access_key}.
	IDName, SecretName string
	// field is the Config field the key fills; Config.at gives a pointer to it.
	field fieldID
}

// fieldID names a Config field a key fills. Keys name fields rather than hold functions
// returning them so that a Config on the stack stays there: a pointer passed to a function
// value escapes, and Check.Config and the redaction of every recorded request would each
// cost an allocation.
type fieldID uint8

const (
	fUsername fieldID = iota + 1
	fPassword
	fToken
	fTokenSecret
	fTokenHeader
	fSecretHeader
	fHeader
	fEncoding
	fPrefix
	fTimestampHeader
	fTimestampPart
	fSignaturePart
	fSigned
	fTimestampFormat
	fKeyIDHeader
	fSecrets
	fTolerance
	fQuery
	fKeys
	fTokens
	fRegion
	fService
	fAlgorithms
	fIssuer
	fAudience
	fLeeway
	fJWKSURL
	fTokenTTL
	fJWKSMaxAge
)

// at is a pointer to field id of c: *string, *[]string, *time.Duration, *Secret or *[]Secret.
func (c *Config) at(id fieldID) any {
	switch id {
	case fUsername:
		return &c.Username
	case fPassword:
		return &c.Password
	case fToken:
		return &c.Token
	case fTokenSecret:
		return &c.TokenSecret
	case fTokenHeader:
		return &c.TokenHeader
	case fSecretHeader:
		return &c.SecretHeader
	case fHeader:
		return &c.Header
	case fEncoding:
		return &c.Encoding
	case fPrefix:
		return &c.Prefix
	case fTimestampHeader:
		return &c.TimestampHeader
	case fTimestampPart:
		return &c.TimestampPart
	case fSignaturePart:
		return &c.SignaturePart
	case fSigned:
		return &c.Signed
	case fTimestampFormat:
		return &c.TimestampFormat
	case fKeyIDHeader:
		return &c.KeyIDHeader
	case fSecrets:
		return &c.Secrets
	case fTolerance:
		return &c.Tolerance
	case fQuery:
		return &c.Query
	case fKeys:
		return &c.Keys
	case fTokens:
		return &c.Tokens
	case fRegion:
		return &c.Region
	case fService:
		return &c.Service
	case fAlgorithms:
		return &c.Algorithms
	case fIssuer:
		return &c.Issuer
	case fAudience:
		return &c.Audience
	case fLeeway:
		return &c.Leeway
	case fJWKSURL:
		return &c.JWKSURL
	case fTokenTTL:
		return &c.TokenTTL
	case fJWKSMaxAge:
		return &c.JWKSMaxAge
	}
	return nil
}

// SetText stores a KeyText, KeyHeader or KeyEnum value in cfg.
func (k Key) SetText(cfg *Config, v string) { *cfg.at(k.field).(*string) = v }

// SetTexts stores a KeyTexts value in cfg.
func (k Key) SetTexts(cfg *Config, v []string) { *cfg.at(k.field).(*[]string) = v }

// SetDuration stores a KeyDuration value in cfg.
func (k Key) SetDuration(cfg *Config, v time.Duration) { *cfg.at(k.field).(*time.Duration) = v }

// SetSecrets stores a KeySecret (the first of list) or KeySecrets value in cfg. ids, for a
// key with IDs, holds each secret's id ("" for none) and may be nil when none has one.
func (k Key) SetSecrets(cfg *Config, list []Secret, ids []string) {
	switch f := cfg.at(k.field).(type) {
	case *Secret:
		if len(list) > 0 {
			*f = list[0]
		}
	case *[]Secret:
		*f = list
		if k.IDs && slices.ContainsFunc(ids, func(id string) bool { return id != "" }) {
			cfg.SecretIDs = ids
		}
	}
}

// isSet reports whether cfg gives the key a value.
func (k Key) isSet(cfg *Config) bool {
	switch f := cfg.at(k.field).(type) {
	case *string:
		return *f != ""
	case *time.Duration:
		return *f != 0
	case *[]string:
		return len(*f) > 0
	case *Secret:
		return !f.IsZero()
	case *[]Secret:
		return len(*f) > 0
	}
	return false
}

// copyTo sets the key in dst to its value in src.
func (k Key) copyTo(dst, src *Config) {
	switch f := dst.at(k.field).(type) {
	case *string:
		*f = *src.at(k.field).(*string)
	case *time.Duration:
		*f = *src.at(k.field).(*time.Duration)
	case *[]string:
		*f = *src.at(k.field).(*[]string)
	case *Secret:
		*f = *src.at(k.field).(*Secret)
	case *[]Secret:
		*f = *src.at(k.field).(*[]Secret)
	}
}

// secret reports whether the key holds secrets.
func (k Key) secret() bool { return k.Kind == KeySecret || k.Kind == KeySecrets }

// Constructors of the table's keys, so each entry reads as one line.
func textKey(name string, f fieldID) Key { return Key{Name: name, Kind: KeyText, field: f} }

func headerKey(name string, f fieldID) Key { return Key{Name: name, Kind: KeyHeader, field: f} }

func enumKey(name string, values []string, f fieldID) Key {
	return Key{Name: name, Kind: KeyEnum, Values: values, field: f}
}

func durationKey(name string, f fieldID) Key { return Key{Name: name, Kind: KeyDuration, field: f} }

func secretKey(name, need string, f fieldID) Key {
	return Key{Name: name, Kind: KeySecret, Need: need, field: f}
}

func secretsKey(name, need string, f fieldID) Key {
	return Key{Name: name, Kind: KeySecrets, Need: need, field: f}
}
