package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Credentials of the test configs. Each is distinctive enough that finding it in an error
// message can only mean a leak.
const (
	basicUser     = "snapdocs-user"
	basicPassword = "pa:ss:w0rd-Ünïcode" // colons on purpose: split at the first one only
	tokenValue    = "tok-7f3a9c1e5b"
	tokenSecret   = "sec-2d8b6f4a0c"
	sigKey1       = "encompass-signing-key-0001"
	sigKey2       = "Zoë-rotation-kéy-2"
	whsec1        = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	apiKey1       = "apikey-one-4c1d2e"
	apiKey2       = "apikey-two-9a8b7c"
	bearer1       = "bearer-token-5e6f7a"
	bearer2       = "bearer-token-1b2c3d"
)

// whsec2 is a second Standard Webhooks secret, for rotation.
var whsec2Key = []byte("second-standard-webhooks-key-32b")

func whsec2() string { return "whsec_" + base64.StdEncoding.EncodeToString(whsec2Key) }

func whsec1Key() []byte {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec1, "whsec_"))
	if err != nil {
		panic(err)
	}
	return k
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// allSecrets lists every credential configured anywhere in these tests.
func allSecrets() []string {
	return []string{basicUser, basicPassword, tokenValue, tokenSecret, sigKey1, sigKey2, whsec1,
		strings.TrimPrefix(whsec1, "whsec_"), whsec2(), string(whsec2Key), apiKey1, apiKey2, bearer1, bearer2}
}

func secrets(s ...string) []Secret {
	out := make([]Secret, len(s))
	for i, v := range s {
		out[i] = NewSecret(v)
	}
	return out
}

func basicConfig() Config {
	return Config{Method: Basic, Username: basicUser, Password: NewSecret(basicPassword)}
}

func tokenConfig() Config {
	return Config{Method: Token, Token: NewSecret(tokenValue), TokenSecret: NewSecret(tokenSecret)}
}

func signatureConfig() Config {
	return Config{Method: Signature, Secrets: secrets(sigKey1, sigKey2)}
}

func hexSignatureConfig() Config {
	return Config{Method: Signature, Header: "X-Hub-Signature-256", Encoding: "hex", Prefix: "sha256=", Secrets: secrets(sigKey1)}
}

func standardWebhooksConfig() Config {
	return Config{Method: StandardWebhooks, Secrets: secrets(whsec1, whsec2())}
}

func apiKeyHeaderConfig() Config {
	return Config{Method: APIKey, Header: "X-Api-Key", Keys: secrets(apiKey1, apiKey2)}
}

func apiKeyQueryConfig() Config {
	return Config{Method: APIKey, Query: "api_key", Keys: secrets(apiKey1, apiKey2)}
}

func bearerConfig() Config {
	return Config{Method: Bearer, Tokens: secrets(bearer1, bearer2)}
}

func withAllowIPs(cfg Config, prefixes ...string) Config {
	for _, p := range prefixes {
		cfg.AllowIPs = append(cfg.AllowIPs, netip.MustParsePrefix(p))
	}
	return cfg
}

// hdr builds a header the way net/http's server does, canonicalising names.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// mac is computed here with crypto/hmac directly rather than with SignatureValue, so these
// rows do not test the package against itself (the openssl fixtures check SignatureValue).
func mac(key string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return m.Sum(nil)
}

func b64mac(key string, body []byte) string { return base64.StdEncoding.EncodeToString(mac(key, body)) }

func swSig(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func swHeaders(id string, ts int64, sig string) http.Header {
	return hdr("webhook-id", id, "webhook-timestamp", strconv.FormatInt(ts, 10), "webhook-signature", sig)
}

var body = []byte(`{"eventId":"3c8e2d53","eventType":"milestone"}`)

type verifyCase struct {
	name string
	cfg  Config
	req  Request
	want Reason // "" means the request must pass
}

func verifyCases() []verifyCase {
	now := testNow.Unix()
	id := "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W"
	sw := func(ts int64) http.Header { return swHeaders(id, ts, swSig(whsec1Key(), id, ts, body)) }
	otherBody := []byte(`{"eventId":"3c8e2d53","eventType":"milestone","x":1}`)
	good := b64mac(sigKey1, body)
	goodHex := hex.EncodeToString(mac(sigKey1, body))
	lower := http.Header{} // hand-built, not canonicalised: lookups must still find it
	lower["pushback-signature"] = []string{good}
	odd := http.Header{}
	odd["pUsHbAcK-sIgNaTuRe"] = []string{good}

	return []verifyCase{
		// basic
		{"basic accepts the configured username and a password containing ':'", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, basicPassword))}, ""},
		{"basic accepts the scheme in upper case", basicConfig(),
			Request{Header: hdr("Authorization", "BASIC "+strings.TrimPrefix(basicAuth(basicUser, basicPassword), "Basic "))}, ""},
		{"basic accepts the scheme in lower case", basicConfig(),
			Request{Header: hdr("Authorization", "basic "+strings.TrimPrefix(basicAuth(basicUser, basicPassword), "Basic "))}, ""},
		{"basic accepts unpadded base64", basicConfig(),
			Request{Header: hdr("Authorization", strings.TrimRight(basicAuth(basicUser, basicPassword), "="))}, ""},
		{"basic accepts a literal HTTP_AUTHORIZATION header", basicConfig(),
			Request{Header: hdr("HTTP_AUTHORIZATION", basicAuth(basicUser, basicPassword))}, ""},
		{"basic rejects a request without Authorization as missing", basicConfig(),
			Request{Header: hdr()}, ReasonMissing},
		{"basic rejects a request with no header map as missing", basicConfig(),
			Request{}, ReasonMissing},
		{"basic rejects an empty Authorization as missing", basicConfig(),
			Request{Header: hdr("Authorization", "  ")}, ReasonMissing},
		{"basic rejects a Bearer token as malformed", basicConfig(),
			Request{Header: hdr("Authorization", "Bearer "+bearer1)}, ReasonMalformed},
		{"basic rejects the scheme alone as malformed", basicConfig(),
			Request{Header: hdr("Authorization", "Basic")}, ReasonMalformed},
		{"basic rejects invalid base64 as malformed", basicConfig(),
			Request{Header: hdr("Authorization", "Basic "+basicUser+":"+basicPassword)}, ReasonMalformed},
		{"basic rejects credentials without a colon as malformed", basicConfig(),
			Request{Header: hdr("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basicUser+"-password-w0rd")))}, ReasonMalformed},
		{"basic rejects two different Authorization headers as malformed", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, basicPassword), "Authorization", basicAuth(basicUser, "x"))}, ReasonMalformed},
		{"basic accepts the same Authorization header sent twice", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, basicPassword), "Authorization", basicAuth(basicUser, basicPassword))}, ""},
		{"basic rejects a wrong password as mismatch", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, basicPassword+"x"))}, ReasonMismatch},
		{"basic rejects a wrong username as mismatch", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth("Snapdocs-user", basicPassword))}, ReasonMismatch},
		{"basic rejects the password cut at its first colon as mismatch", basicConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, "pa"))}, ReasonMismatch},

		// token
		{"token accepts Access-Token and Access-Secret", tokenConfig(),
			Request{Header: hdr("Access-Token", tokenValue, "Access-Secret", tokenSecret)}, ""},
		{"token accepts the CGI-style HTTP_ACCESS_TOKEN and HTTP_ACCESS_SECRET", tokenConfig(),
			Request{Header: hdr("HTTP_ACCESS_TOKEN", tokenValue, "HTTP_ACCESS_SECRET", tokenSecret)}, ""},
		{"token accepts hand-built lower-case header names", tokenConfig(),
			Request{Header: http.Header{"access-token": {tokenValue}, "http_access_secret": {tokenSecret}}}, ""},
		{"token accepts configured header names and their CGI-style spelling", Config{Method: Token,
			Token: NewSecret(tokenValue), TokenSecret: NewSecret(tokenSecret), TokenHeader: "X-Partner-Token", SecretHeader: "X-Partner-Secret"},
			Request{Header: hdr("X-Partner-Token", tokenValue, "HTTP_X_PARTNER_SECRET", tokenSecret)}, ""},
		{"token rejects a request without either header as missing", tokenConfig(),
			Request{Header: hdr()}, ReasonMissing},
		{"token rejects a request without the secret header as missing", tokenConfig(),
			Request{Header: hdr("Access-Token", tokenValue)}, ReasonMissing},
		{"token rejects a wrong secret as mismatch", tokenConfig(),
			Request{Header: hdr("Access-Token", tokenValue, "Access-Secret", tokenValue)}, ReasonMismatch},
		{"token rejects swapped token and secret as mismatch", tokenConfig(),
			Request{Header: hdr("Access-Token", tokenSecret, "Access-Secret", tokenValue)}, ReasonMismatch},
		{"token rejects two different token headers as malformed", tokenConfig(),
			Request{Header: hdr("Access-Token", tokenValue, "Access-Token", "other", "Access-Secret", tokenSecret)}, ReasonMalformed},

		// signature (base64)
		{"signature accepts base64 HMAC-SHA256 of the body", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", good), Body: body}, ""},
		{"signature accepts a trailing newline as Ruby's encode64 leaves it", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", good+"\n"), Body: body}, ""},
		{"signature accepts surrounding spaces", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", "  "+good+" \t"), Body: body}, ""},
		{"signature accepts unpadded base64", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", strings.TrimRight(good, "=")), Body: body}, ""},
		{"signature accepts a hand-built lower-case header name", signatureConfig(),
			Request{Header: lower, Body: body}, ""},
		{"signature accepts a header name in odd case", signatureConfig(),
			Request{Header: odd, Body: body}, ""},
		{"signature accepts the second secret during rotation", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", b64mac(sigKey2, body)), Body: body}, ""},
		{"signature accepts the signature of an empty body", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", b64mac(sigKey1, nil))}, ""},
		{"signature accepts a configured header name", Config{Method: Signature, Header: "Elli-Signature", Secrets: secrets(sigKey1)},
			Request{Header: hdr("elli-signature", good), Body: body}, ""},
		{"signature rejects a request without the header as missing", signatureConfig(),
			Request{Header: hdr("Elli-Signature", good), Body: body}, ReasonMissing},
		{"signature rejects the signature of a different body as mismatch", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", b64mac(sigKey1, otherBody)), Body: body}, ReasonMismatch},
		{"signature rejects a signature made with an unknown secret as mismatch", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", b64mac("not-a-configured-key", body)), Body: body}, ReasonMismatch},
		{"signature rejects the signature of an empty body sent with a body as mismatch", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", b64mac(sigKey1, nil)), Body: body}, ReasonMismatch},
		{"signature rejects a truncated signature as malformed", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", good[:40]), Body: body}, ReasonMalformed},
		{"signature rejects a hex signature on a base64 endpoint as malformed", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", goodHex), Body: body}, ReasonMalformed},
		{"signature rejects URL-safe base64 as malformed", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", base64.URLEncoding.EncodeToString(mac(sigKey1, []byte("?>?>")))), Body: []byte("?>?>")}, ReasonMalformed},
		{"signature rejects text that is not base64 as malformed", signatureConfig(),
			Request{Header: hdr("Pushback-Signature", "not a signature!"), Body: body}, ReasonMalformed},

		// signature (hex, prefixed)
		{"hex signature accepts sha256= and lower-case hex", hexSignatureConfig(),
			Request{Header: hdr("X-Hub-Signature-256", "sha256="+goodHex), Body: body}, ""},
		{"hex signature accepts upper-case hex and prefix", hexSignatureConfig(),
			Request{Header: hdr("X-Hub-Signature-256", "SHA256="+strings.ToUpper(goodHex)), Body: body}, ""},
		{"hex signature rejects a missing prefix as malformed", hexSignatureConfig(),
			Request{Header: hdr("X-Hub-Signature-256", goodHex), Body: body}, ReasonMalformed},
		{"hex signature rejects base64 as malformed", hexSignatureConfig(),
			Request{Header: hdr("X-Hub-Signature-256", "sha256="+good), Body: body}, ReasonMalformed},
		{"hex signature rejects a wrong digest as mismatch", hexSignatureConfig(),
			Request{Header: hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac(sigKey1, otherBody))), Body: body}, ReasonMismatch},

		// standard_webhooks
		{"standard webhooks accepts a message signed now", standardWebhooksConfig(),
			Request{Header: sw(now), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts a message 4 minutes old", standardWebhooksConfig(),
			Request{Header: sw(now - 240), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts a message 4 minutes ahead", standardWebhooksConfig(),
			Request{Header: sw(now + 240), Body: body, Now: testNow}, ""},
		{"standard webhooks rejects a message 6 minutes old as expired", standardWebhooksConfig(),
			Request{Header: sw(now - 360), Body: body, Now: testNow}, ReasonExpired},
		{"standard webhooks rejects a message 6 minutes ahead as expired", standardWebhooksConfig(),
			Request{Header: sw(now + 360), Body: body, Now: testNow}, ReasonExpired},
		{"standard webhooks rejects a timestamp from 1970 as expired", standardWebhooksConfig(),
			Request{Header: sw(0), Body: body, Now: testNow}, ReasonExpired},
		{"standard webhooks rejects an absurdly distant timestamp as expired", standardWebhooksConfig(),
			Request{Header: sw(1<<62 + 12345), Body: body, Now: testNow}, ReasonExpired},
		{"standard webhooks accepts 6 minutes with a 10 minute tolerance", Config{Method: StandardWebhooks, Secrets: secrets(whsec1), Tolerance: 10 * time.Minute},
			Request{Header: sw(now - 360), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts when the second of several signatures matches", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, swSig([]byte("unknown-key-unknown-key-unknown!"), id, now, body)+" "+swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts a matching v1 after a v1a entry", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, "v1a,"+base64.StdEncoding.EncodeToString(make([]byte, 64))+"  "+swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts signatures split over two header fields", standardWebhooksConfig(),
			Request{Header: func() http.Header {
				h := swHeaders(id, now, "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
				h.Add("webhook-signature", swSig(whsec1Key(), id, now, body))
				return h
			}(), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts the second secret during rotation", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, swSig(whsec2Key, id, now, body)), Body: body, Now: testNow}, ""},
		{"standard webhooks accepts an empty body", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, swSig(whsec1Key(), id, now, nil)), Now: testNow}, ""},
		{"standard webhooks rejects a missing webhook-id as missing", standardWebhooksConfig(),
			Request{Header: hdr("webhook-timestamp", strconv.FormatInt(now, 10), "webhook-signature", swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMissing},
		{"standard webhooks rejects a missing webhook-timestamp as missing", standardWebhooksConfig(),
			Request{Header: hdr("webhook-id", id, "webhook-signature", swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMissing},
		{"standard webhooks rejects a missing webhook-signature as missing", standardWebhooksConfig(),
			Request{Header: hdr("webhook-id", id, "webhook-timestamp", strconv.FormatInt(now, 10)), Body: body, Now: testNow}, ReasonMissing},
		{"standard webhooks rejects a fractional timestamp as malformed", standardWebhooksConfig(),
			Request{Header: hdr("webhook-id", id, "webhook-timestamp", strconv.FormatInt(now, 10)+".5", "webhook-signature", swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMalformed},
		{"standard webhooks rejects a negative timestamp as malformed", standardWebhooksConfig(),
			Request{Header: hdr("webhook-id", id, "webhook-timestamp", "-5", "webhook-signature", swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMalformed},
		{"standard webhooks rejects an RFC 3339 timestamp as malformed", standardWebhooksConfig(),
			Request{Header: hdr("webhook-id", id, "webhook-timestamp", testNow.Format(time.RFC3339), "webhook-signature", swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMalformed},
		{"standard webhooks rejects only v1a signatures as malformed", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, "v1a,"+base64.StdEncoding.EncodeToString(make([]byte, 64))), Body: body, Now: testNow}, ReasonMalformed},
		{"standard webhooks rejects a signature without a version as malformed", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now, strings.TrimPrefix(swSig(whsec1Key(), id, now, body), "v1,")), Body: body, Now: testNow}, ReasonMalformed},
		{"standard webhooks rejects the signature of a different body as mismatch", standardWebhooksConfig(),
			Request{Header: sw(now), Body: otherBody, Now: testNow}, ReasonMismatch},
		{"standard webhooks rejects a signature over a different message id as mismatch", standardWebhooksConfig(),
			Request{Header: swHeaders("msg_other", now, swSig(whsec1Key(), id, now, body)), Body: body, Now: testNow}, ReasonMismatch},
		{"standard webhooks reports a forgery with a stale timestamp as mismatch", standardWebhooksConfig(),
			Request{Header: swHeaders(id, now-3600, swSig([]byte("forger"), id, now-3600, body)), Body: body, Now: testNow}, ReasonMismatch},

		// api_key
		{"api key accepts the first key in its header", apiKeyHeaderConfig(),
			Request{Header: hdr("X-Api-Key", apiKey1)}, ""},
		{"api key accepts the second key in a lower-case header", apiKeyHeaderConfig(),
			Request{Header: http.Header{"x-api-key": {apiKey2}}}, ""},
		{"api key accepts the key in its query parameter", apiKeyQueryConfig(),
			Request{Query: url.Values{"api_key": {apiKey2}}}, ""},
		{"api key rejects a missing header as missing", apiKeyHeaderConfig(),
			Request{Header: hdr(), Query: url.Values{"X-Api-Key": {apiKey1}}}, ReasonMissing},
		{"api key rejects a key in a header when it belongs in the query as missing", apiKeyQueryConfig(),
			Request{Header: hdr("api_key", apiKey1)}, ReasonMissing},
		{"api key rejects an empty query parameter as missing", apiKeyQueryConfig(),
			Request{Query: url.Values{"api_key": {""}}}, ReasonMissing},
		{"api key rejects a query parameter name in another case as missing", apiKeyQueryConfig(),
			Request{Query: url.Values{"API_KEY": {apiKey1}}}, ReasonMissing},
		{"api key rejects two different query values as malformed", apiKeyQueryConfig(),
			Request{Query: url.Values{"api_key": {apiKey1, apiKey2}}}, ReasonMalformed},
		{"api key rejects a wrong key as mismatch", apiKeyHeaderConfig(),
			Request{Header: hdr("X-Api-Key", apiKey1+"0")}, ReasonMismatch},
		{"api key rejects a prefix of a key as mismatch", apiKeyQueryConfig(),
			Request{Query: url.Values{"api_key": {apiKey1[:6]}}}, ReasonMismatch},

		// bearer
		{"bearer accepts the first token", bearerConfig(),
			Request{Header: hdr("Authorization", "Bearer "+bearer1)}, ""},
		{"bearer accepts the second token with the scheme in lower case", bearerConfig(),
			Request{Header: hdr("Authorization", "bearer "+bearer2)}, ""},
		{"bearer rejects a missing Authorization as missing", bearerConfig(),
			Request{Header: hdr()}, ReasonMissing},
		{"bearer rejects Basic credentials as malformed", bearerConfig(),
			Request{Header: hdr("Authorization", basicAuth(basicUser, basicPassword))}, ReasonMalformed},
		{"bearer rejects the scheme without a token as malformed", bearerConfig(),
			Request{Header: hdr("Authorization", "Bearer ")}, ReasonMalformed},
		{"bearer rejects a token without the scheme as malformed", bearerConfig(),
			Request{Header: hdr("Authorization", bearer1)}, ReasonMalformed},
		{"bearer rejects a wrong token as mismatch", bearerConfig(),
			Request{Header: hdr("Authorization", "Bearer "+strings.ToUpper(bearer1))}, ReasonMismatch},

		// allow_ips
		{"allow_ips accepts an address inside a prefix", withAllowIPs(bearerConfig(), "10.0.0.0/8", "2001:db8::/32"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1), RemoteIP: netip.MustParseAddr("10.1.2.3")}, ""},
		{"allow_ips accepts an IPv4-mapped IPv6 address inside an IPv4 prefix", withAllowIPs(bearerConfig(), "10.0.0.0/8"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1), RemoteIP: netip.MustParseAddr("::ffff:10.1.2.3")}, ""},
		{"allow_ips accepts an IPv4 address inside an IPv4-mapped prefix", withAllowIPs(bearerConfig(), "::ffff:10.0.0.0/104"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1), RemoteIP: netip.MustParseAddr("10.1.2.3")}, ""},
		{"allow_ips accepts an IPv6 address with a zone inside a prefix", withAllowIPs(bearerConfig(), "fe80::/10"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1), RemoteIP: netip.MustParseAddr("fe80::1%eth0")}, ""},
		{"allow_ips rejects an address outside every prefix even with a good token", withAllowIPs(bearerConfig(), "10.0.0.0/8", "2001:db8::/32"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1), RemoteIP: netip.MustParseAddr("192.168.1.10")}, ReasonIPDenied},
		{"allow_ips rejects an outside address before looking at credentials", withAllowIPs(signatureConfig(), "10.0.0.0/8"),
			Request{RemoteIP: netip.MustParseAddr("192.168.1.10")}, ReasonIPDenied},
		{"allow_ips rejects an unknown remote address", withAllowIPs(bearerConfig(), "0.0.0.0/0"),
			Request{Header: hdr("Authorization", "Bearer "+bearer1)}, ReasonIPDenied},
		{"allow_ips rejects a good address with a bad token as mismatch", withAllowIPs(bearerConfig(), "10.0.0.0/8"),
			Request{Header: hdr("Authorization", "Bearer nope-nope"), RemoteIP: netip.MustParseAddr("10.1.2.3")}, ReasonMismatch},
	}
}

func TestVerify(t *testing.T) {
	for _, tc := range verifyCases() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if v.Method() != tc.cfg.Method {
				t.Errorf("Method() = %q, want %q", v.Method(), tc.cfg.Method)
			}
			err = v.Verify(&tc.req)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want success", err)
				}
				return
			}
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("Verify = %v (%T), want a *Failure with reason %q", err, err, tc.want)
			}
			if f.Reason != tc.want || f.Method != tc.cfg.Method {
				t.Fatalf("Verify = %q (reason %q, method %q), want reason %q, method %q", err, f.Reason, f.Method, tc.want, tc.cfg.Method)
			}
			if f.Detail == "" {
				t.Errorf("Failure has no detail")
			}
		})
	}
}

// TestFailureNeverContainsCredentials checks every failing row: the error text contains no
// configured secret and no credential the request carried.
func TestFailureNeverContainsCredentials(t *testing.T) {
	for _, tc := range verifyCases() {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			err = v.Verify(&tc.req)
			if err == nil {
				t.Fatal("Verify succeeded, want a failure")
			}
			msg := err.Error()
			for _, s := range append(allSecrets(), sentCredentials(tc.req)...) {
				if len(s) >= 6 && strings.Contains(msg, s) {
					t.Errorf("error %q contains credential %q", msg, s)
				}
			}
		})
	}
}

// sentCredentials lists each header and query value of r, whole and without its leading
// word (the Authorization scheme, a "sha256=" or "v1," prefix).
func sentCredentials(r Request) []string {
	var out []string
	add := func(v string) {
		out = append(out, v, strings.TrimSpace(v))
		for _, f := range strings.Fields(v) {
			out = append(out, f)
			if _, after, ok := strings.Cut(f, ","); ok {
				out = append(out, after)
			}
			if _, after, ok := strings.Cut(f, "="); ok {
				out = append(out, after)
			}
		}
		if _, after, ok := strings.Cut(v, " "); ok {
			out = append(out, after)
			if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(after)); err == nil {
				u, p, _ := strings.Cut(string(raw), ":")
				out = append(out, string(raw), u, p)
			}
		}
	}
	for _, vs := range r.Header {
		for _, v := range vs {
			add(v)
		}
	}
	for _, vs := range r.Query {
		for _, v := range vs {
			add(v)
		}
	}
	// Header names and a few fixed words legitimately appear in details.
	kept := out[:0]
	for _, s := range out {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "basic", "bearer", "sha256=":
			continue
		}
		kept = append(kept, s)
	}
	return kept
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	v, err := New(signatureConfig())
	if err != nil {
		t.Fatal(err)
	}
	good := &Request{Header: hdr("Pushback-Signature", b64mac(sigKey2, body)), Body: body}
	bad := &Request{Header: hdr("Pushback-Signature", b64mac(sigKey2, nil)), Body: body}
	done := make(chan error)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 100; j++ {
				if err := v.Verify(good); err != nil {
					done <- err
					return
				}
				if v.Verify(bad) == nil {
					done <- errors.New("bad request verified")
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
