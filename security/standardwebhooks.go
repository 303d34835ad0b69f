package security

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks specification (https://www.standardwebhooks.com).
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// whsecPrefix leads a Standard Webhooks secret; the rest is the base64 key.
const whsecPrefix = "whsec_"

var standardWebhooksMethod = method{
	name: StandardWebhooks,
	keys: []Key{
		secretsKey("secrets", "secrets: a list of at least one secret reference", fSecrets),
		durationKey("tolerance", fTolerance),
	},
	prepare: newStandardWebhooks,
	credentials: func(Config) (credentialHeaders, string) {
		return credentialHeaders{HeaderWebhookSignature}, ""
	},
}

// standardWebhooksScheme checks webhook-signature: "v1,<base64 HMAC-SHA256(key,
// id.timestamp.body)>" entries against every configured key, and the timestamp against a
// tolerance in both directions. Its Check holds the keys decoded from whsec_<base64>.
type standardWebhooksScheme struct {
	tolerance time.Duration
}

func newStandardWebhooks(cfg Config, p *problems) (scheme, material) {
	s := &standardWebhooksScheme{tolerance: tolerance(cfg.Tolerance, p)}
	var keys [][]byte
	for i, raw := range requireSecrets("secrets", cfg.Secrets, p) {
		if len(raw) == 0 {
			continue // already reported
		}
		k, err := decodeWhsec(string(raw))
		if err != nil {
			p.item("secrets", i, "secrets[%d]: %v", i, err)
			continue
		}
		keys = append(keys, k)
	}
	return s, material{keys: keys}
}

// tolerance validates a configured tolerance and applies the default.
func tolerance(d time.Duration, p *problems) time.Duration {
	switch {
	case d < 0:
		p.at("tolerance", "tolerance must not be negative")
	case d == 0:
		return DefaultTolerance
	}
	return d
}

// decodeWhsec decodes a "whsec_<base64>" secret. Like the reference libraries it also
// takes the bare base64, since some senders' dashboards show the key without the prefix.
// The error never quotes the secret.
func decodeWhsec(s string) ([]byte, error) {
	k, err := decodeBase64(strings.TrimPrefix(strings.TrimSpace(s), whsecPrefix))
	if err != nil {
		return nil, fmt.Errorf("not a whsec_<base64> secret: the part after whsec_ is not valid base64")
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("not a whsec_<base64> secret: the key is empty")
	}
	return k, nil
}

func (s *standardWebhooksScheme) check(req Request, c *Check) *Failure {
	r := &req
	id, idSt := single(headerValues(r.Header, HeaderWebhookID))
	ts, tsSt := single(headerValues(r.Header, HeaderWebhookTimestamp))
	// Several webhook-signature fields are read as one space-separated list, as RFC 9110
	// allows a proxy to split or join them; any entry may match.
	sigs := strings.Join(headerValues(r.Header, HeaderWebhookSignature), " ")
	switch {
	case idSt == absent:
		return fail(StandardWebhooks, ReasonMissing, "no "+HeaderWebhookID+" header")
	case tsSt == absent:
		return fail(StandardWebhooks, ReasonMissing, "no "+HeaderWebhookTimestamp+" header")
	case strings.TrimSpace(sigs) == "":
		return fail(StandardWebhooks, ReasonMissing, "no "+HeaderWebhookSignature+" header")
	case idSt == conflicting:
		return fail(StandardWebhooks, ReasonMalformed, HeaderWebhookID+" header sent more than once with different values")
	case tsSt == conflicting:
		return fail(StandardWebhooks, ReasonMalformed, HeaderWebhookTimestamp+" header sent more than once with different values")
	}
	sec, err := strconv.ParseUint(ts, 10, 63) // digits only: no sign, no exponent, no fraction
	if err != nil {
		return fail(StandardWebhooks, ReasonMalformed, HeaderWebhookTimestamp+" header is not a whole number of unix seconds")
	}
	cands := parseV1Signatures(sigs)
	if len(cands) == 0 {
		return fail(StandardWebhooks, ReasonMalformed, HeaderWebhookSignature+" header has no well-formed v1 signature")
	}
	ok := 0
	for _, k := range c.keys { // all keys and all entries, no early exit
		mac := standardWebhooksMAC(k, id, ts, r.Body)
		for _, c := range cands {
			ok |= subtle.ConstantTimeCompare(mac, c)
		}
	}
	if ok != 1 {
		return fail(StandardWebhooks, ReasonMismatch, "no configured secret matches a v1 signature in "+HeaderWebhookSignature)
	}
	// The timestamp is judged after the signature so that "expired" always means an
	// authentic message that is too old or too new (a replay, or a skewed clock), and a
	// forgery with a stale timestamp is reported as the mismatch it is.
	return checkAge(StandardWebhooks, HeaderWebhookTimestamp, r.now(), time.Unix(int64(sec), 0), s.tolerance)
}

// checkAge refuses a timestamp sent more than tolerance before or after now, as expired.
func checkAge(m Method, header string, now, sent time.Time, tolerance time.Duration) *Failure {
	switch d := now.Sub(sent); { // Sub saturates instead of overflowing on absurd timestamps
	case d > tolerance:
		return fail(m, ReasonExpired, fmt.Sprintf("%s is %s in the past, tolerance %s", header, roundAge(d), tolerance))
	case d < -tolerance:
		return fail(m, ReasonExpired, fmt.Sprintf("%s is %s in the future, tolerance %s", header, roundAge(-d), tolerance))
	}
	return nil
}

// messageID is the webhook-id a message was signed with, and how long to remember it: a
// message accepted at t carries a timestamp of at most t+tolerance, so it can pass the
// timestamp check again until t+2×tolerance, and not after.
func (s *standardWebhooksScheme) messageID(req Request) (string, time.Duration) {
	r := &req
	id, st := single(headerValues(r.Header, HeaderWebhookID))
	if st != present {
		return "", 0
	}
	return id, 2 * s.tolerance
}

// standardWebhooksMAC signs "id.timestamp.body" without building the concatenation, which
// for a large body would be a second copy of it.
func standardWebhooksMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, id)
	io.WriteString(m, ".")
	io.WriteString(m, ts)
	io.WriteString(m, ".")
	m.Write(body)
	return m.Sum(nil)
}

// roundAge keeps log details short; a saturated duration is reported as such rather than
// as 2562047h47m16s.
func roundAge(d time.Duration) string {
	if d == math.MaxInt64 || d < 0 {
		return "more than 290 years"
	}
	return d.Round(time.Second).String()
}

// parseV1Signatures returns the decoded v1 entries of a webhook-signature value. Entries of
// other versions (v1a is Ed25519) and entries that cannot be an HMAC-SHA256 are skipped:
// another entry in the list may still be a valid one.
func parseV1Signatures(v string) [][]byte {
	var out [][]byte
	for _, e := range strings.Fields(v) {
		ver, sig, ok := strings.Cut(e, ",")
		if !ok || ver != "v1" {
			continue
		}
		b, err := decodeBase64(sig)
		if err != nil || len(b) != sha256.Size {
			continue
		}
		out = append(out, b)
	}
	return out
}

func (s *standardWebhooksScheme) sign(c *Check, in *signing, h http.Header, _ url.Values) error {
	msgID, now := in.msgID, in.now
	if why := unsendable(msgID); why != "" {
		return fmt.Errorf("message id %s", why)
	}
	if msgID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("generate message id: %w", err)
		}
		msgID = "msg_" + hex.EncodeToString(b[:])
	}
	if now.IsZero() {
		now = time.Now()
	}
	if now.Unix() < 0 {
		return fmt.Errorf("timestamp %s is before 1970, which webhook-timestamp cannot express", now.UTC().Format(time.RFC3339))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := standardWebhooksMAC(c.keys[0], msgID, ts, in.body)
	h.Set(HeaderWebhookID, msgID)
	h.Set(HeaderWebhookTimestamp, ts)
	h.Set(HeaderWebhookSignature, "v1,"+base64.StdEncoding.EncodeToString(mac))
	return nil
}
