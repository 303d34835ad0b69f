package store

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
)

// Keys taken from senders (an idempotency key, a debounce key, a message id) are scoped to
// where the request arrived before they are stored, so that a sender holding one endpoint's
// credentials cannot touch the keys of another endpoint, of another site, or of the partner
// itself. Every store compares scoped keys as opaque strings; these functions are the one
// place they are built.
//
// A scoped key is "<partner>/<site>/<endpoint>/" followed by fixed parts and, last, the
// sender's text. Partner, site and endpoint ids are [a-z0-9-] (site "" for a partner's own
// endpoints, "*" for any), so the n-th "/" always ends the n-th fixed part and no sender
// text, whatever it holds, can reproduce another scope's prefix.

// KeyScope is where a sender's key applies: one endpoint URL by default, or wider when a
// saga asks (AnySite, AnyEndpoint).
type KeyScope struct {
	Partner  string
	Site     string // "" for the partner's own endpoints (/pushback/{partner}/{endpoint})
	Endpoint string
}

// AnySite and AnyEndpoint widen a KeyScope: "*" is no valid id, so it never names a real
// site or endpoint.
const (
	AnySite     = "*"
	AnyEndpoint = "*"
)

// MaxKeyPartLen bounds the sender's part of a scoped key; a longer one is replaced by its
// SHA-256 ("sha256:<hex>"), so a key of any length still matches its duplicates while the
// run record and the indexes stay small.
const MaxKeyPartLen = 256

// messagePrefix leads message keys. It holds ':', which no partner id does, so a message
// key never equals an idempotency key, whatever the sender chose for either.
const messagePrefix = "message-id:"

func (s KeyScope) prefix(extra int) *strings.Builder {
	var b strings.Builder
	b.Grow(len(s.Partner) + len(s.Site) + len(s.Endpoint) + 3 + extra)
	b.WriteString(s.Partner)
	b.WriteByte('/')
	b.WriteString(s.Site)
	b.WriteByte('/')
	b.WriteString(s.Endpoint)
	b.WriteByte('/')
	return &b
}

// IdempotencyKey scopes an endpoint's idempotency_key value: "<partner>/<site>/<endpoint>/<key>".
func IdempotencyKey(s KeyScope, key string) string {
	key = boundPart(key)
	b := s.prefix(len(key))
	b.WriteString(key)
	return b.String()
}

// MessageKey scopes a sender's message id (Standard Webhooks' webhook-id):
// "message-id:<partner>/<site>/<endpoint>/<id>".
func MessageKey(s KeyScope, id string) string {
	return messagePrefix + IdempotencyKey(s, id)
}

// DebounceKey scopes a saga's debounce key: "<partner>/<site>/<endpoint>/<saga>/<key>". Saga
// names are file names, which hold no "/"; one that did would be escaped.
func DebounceKey(s KeyScope, saga, key string) string {
	saga = url.PathEscape(saga)
	key = boundPart(key)
	b := s.prefix(len(saga) + 1 + len(key))
	b.WriteString(saga)
	b.WriteByte('/')
	b.WriteString(key)
	return b.String()
}

func boundPart(k string) string {
	if len(k) <= MaxKeyPartLen {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}
