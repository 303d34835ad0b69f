package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests compute their signatures with crypto/hmac directly, from each provider's
// documented scheme, rather than with the package's own Sign.

const (
	stripeKey   = "whsec_stripe-test-secret-9f2c"
	stripeKey2  = "whsec_stripe-rolled-secret-4b7a"
	slackKey    = "slack-signing-secret-77d1e0"
	snapdocsKey = "snapdocs-hmac-secret-3e5f"
)

// hmacHex is hex(HMAC-SHA256(key, text+body)).
func hmacHex(key, text string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func hmacB64(key, text string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func stripeHeader(key string, ts int64, body []byte) string {
	t := strconv.FormatInt(ts, 10)
	return "t=" + t + ",v1=" + hmacHex(key, t+".", body)
}

func slackHeaders(key string, ts int64, body []byte) http.Header {
	t := strconv.FormatInt(ts, 10)
	return hdr("X-Slack-Signature", "v0="+hmacHex(key, "v0:"+t+":", body), "X-Slack-Request-Timestamp", t)
}

func stripeConfig() Config { return Config{Preset: "stripe", Secrets: secrets(stripeKey, stripeKey2)} }

func timestampedCases() []verifyCase {
	now := testNow.Unix()
	iso := testNow.Format(time.RFC3339)
	good := stripeHeader(stripeKey, now, body)
	v1 := good[strings.Index(good, "v1="):]
	junk := "v1=" + strings.Repeat("00", 32)
	snapdocs := Config{Preset: "snapdocs", Secrets: secrets(snapdocsKey)}
	snap := func(ts string, b []byte) http.Header {
		return hdr("X-Authorization-Signature", hmacB64(snapdocsKey, ts+".", b), "X-Authorization-Timestamp", ts)
	}
	slack := Config{Preset: "slack", Secrets: secrets(slackKey)}
	plainTS := Config{Method: Signature, Header: "X-Sig", TimestampHeader: "X-Ts", Signed: "{body}|{timestamp}", Encoding: "hex", Secrets: secrets(sigKey1)}
	return []verifyCase{
		// stripe: t=...,v1=... in one header
		{"stripe accepts t and v1 over timestamp.body", stripeConfig(), Request{Header: hdr("Stripe-Signature", good), Body: body, Now: testNow}, ""},
		{"stripe accepts the parts in any order and with spaces", stripeConfig(), Request{Header: hdr("Stripe-Signature", v1+" , t="+strconv.FormatInt(now, 10)), Body: body, Now: testNow}, ""},
		{"stripe accepts a matching v1 among junk v1 and v0 parts", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+","+junk+",v0=abc,"+v1+",x"), Body: body, Now: testNow}, ""},
		{"stripe accepts the rolled secret's signature", stripeConfig(), Request{Header: hdr("Stripe-Signature", stripeHeader(stripeKey2, now, body)), Body: body, Now: testNow}, ""},
		{"stripe accepts a message 4 minutes old", stripeConfig(), Request{Header: hdr("Stripe-Signature", stripeHeader(stripeKey, now-240, body)), Body: body, Now: testNow}, ""},
		{"stripe rejects a message 6 minutes old as expired", stripeConfig(), Request{Header: hdr("Stripe-Signature", stripeHeader(stripeKey, now-360, body)), Body: body, Now: testNow}, ReasonExpired},
		{"stripe rejects a message 6 minutes ahead as expired", stripeConfig(), Request{Header: hdr("Stripe-Signature", stripeHeader(stripeKey, now+360, body)), Body: body, Now: testNow}, ReasonExpired},
		{"stripe rejects a signature moved to another timestamp as mismatch", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now+1, 10)+","+v1), Body: body, Now: testNow}, ReasonMismatch},
		{"stripe rejects a signature of the body alone as mismatch", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+",v1="+hmacHex(stripeKey, "", body)), Body: body, Now: testNow}, ReasonMismatch},
		{"stripe rejects a signature with the secret base64-decoded as mismatch", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+",v1="+hmacHex("stripe-test-secret-9f2c", strconv.FormatInt(now, 10)+".", body)), Body: body, Now: testNow}, ReasonMismatch},
		{"stripe rejects a header without the header at all as missing", stripeConfig(), Request{Header: hdr(), Body: body, Now: testNow}, ReasonMissing},
		{"stripe rejects a header without t as missing", stripeConfig(), Request{Header: hdr("Stripe-Signature", v1), Body: body, Now: testNow}, ReasonMissing},
		{"stripe rejects two different t parts as malformed", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", good+",t=1"), Body: body, Now: testNow}, ReasonMalformed},
		{"stripe rejects a header with no well-formed v1 as malformed", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+",v1=zz,v1=abcd"), Body: body, Now: testNow}, ReasonMalformed},
		{"stripe rejects seventeen v1 parts as malformed", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+strings.Repeat(","+junk, 16)+","+v1), Body: body, Now: testNow}, ReasonMalformed},
		{"stripe rejects a fractional timestamp as malformed", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t="+strconv.FormatInt(now, 10)+".5,"+v1), Body: body, Now: testNow}, ReasonMalformed},
		{"stripe rejects a negative timestamp as malformed", stripeConfig(),
			Request{Header: hdr("Stripe-Signature", "t=-5,"+v1), Body: body, Now: testNow}, ReasonMalformed},

		// slack: a timestamp header and "v0:{timestamp}:{body}"
		{"slack accepts v0= over v0:timestamp:body", slack, Request{Header: slackHeaders(slackKey, now, body), Body: body, Now: testNow}, ""},
		{"slack rejects a missing timestamp header as missing", slack,
			Request{Header: hdr("X-Slack-Signature", slackHeaders(slackKey, now, body).Get("X-Slack-Signature")), Body: body, Now: testNow}, ReasonMissing},
		{"slack rejects two different timestamp headers as malformed", slack,
			Request{Header: func() http.Header {
				h := slackHeaders(slackKey, now, body)
				h.Add("X-Slack-Request-Timestamp", "1")
				return h
			}(), Body: body, Now: testNow}, ReasonMalformed},
		{"slack rejects a timestamp that is not a number as malformed", slack,
			Request{Header: func() http.Header {
				h := slackHeaders(slackKey, now, body)
				h.Set("X-Slack-Request-Timestamp", iso)
				return h
			}(), Body: body, Now: testNow}, ReasonMalformed},
		{"slack rejects a stale request as expired", slack, Request{Header: slackHeaders(slackKey, now-3600, body), Body: body, Now: testNow}, ReasonExpired},
		{"slack reports a forgery with a stale timestamp as mismatch", slack, Request{Header: slackHeaders("forger", now-3600, body), Body: body, Now: testNow}, ReasonMismatch},
		{"slack rejects a signature without v0= as malformed", slack,
			Request{Header: hdr("X-Slack-Signature", hmacHex(slackKey, "v0:"+strconv.FormatInt(now, 10)+":", body), "X-Slack-Request-Timestamp", strconv.FormatInt(now, 10)), Body: body, Now: testNow}, ReasonMalformed},

		// snapdocs: an RFC 3339 timestamp header
		{"snapdocs accepts an RFC 3339 timestamp", snapdocs, Request{Header: snap(iso, body), Body: body, Now: testNow}, ""},
		{"snapdocs accepts an RFC 3339 timestamp with an offset", snapdocs, Request{Header: snap("2026-03-01T13:01:00+01:00", body), Body: body, Now: testNow}, ""},
		{"snapdocs rejects unix seconds as malformed", snapdocs, Request{Header: snap(strconv.FormatInt(now, 10), body), Body: body, Now: testNow}, ReasonMalformed},
		{"snapdocs rejects an hour-old timestamp as expired", snapdocs, Request{Header: snap(testNow.Add(-time.Hour).Format(time.RFC3339), body), Body: body, Now: testNow}, ReasonExpired},
		{"snapdocs rejects another body as mismatch", snapdocs, Request{Header: snap(iso, []byte("{}")), Body: body, Now: testNow}, ReasonMismatch},

		// a template of the operator's own
		{"a signed template puts the body and timestamp where it says", plainTS,
			Request{Header: hdr("X-Sig", hmacHex(sigKey1, "", append(append([]byte{}, body...), []byte("|"+strconv.FormatInt(now, 10))...)), "X-Ts", strconv.FormatInt(now, 10)), Body: body, Now: testNow}, ""},
		{"a signed template rejects the default form as mismatch", plainTS,
			Request{Header: hdr("X-Sig", hmacHex(sigKey1, strconv.FormatInt(now, 10)+".", body), "X-Ts", strconv.FormatInt(now, 10)), Body: body, Now: testNow}, ReasonMismatch},
	}
}

func TestVerifyTimestampedSignatures(t *testing.T) {
	for _, tc := range timestampedCases() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			err = v.Verify(&tc.req)
			if got := reasonOf(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Fatalf("Verify = %v, want reason %q", err, tc.want)
			}
			if err != nil {
				msg := err.Error()
				for _, s := range append(allSecrets(), append(sentCredentials(tc.req), stripeKey, stripeKey2, slackKey, snapdocsKey)...) {
					if len(s) >= 12 && strings.Contains(msg, s) {
						t.Errorf("error %q contains credential %q", msg, s)
					}
				}
			}
		})
	}
}

// The examples the providers publish, with their secrets, bodies and signatures.
func TestPresetsVerifyTheProvidersPublishedExamples(t *testing.T) {
	slackBody := []byte("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
	tests := []struct {
		name   string
		cfg    Config
		header http.Header
		body   []byte
		sent   time.Time // when it was signed; Verify runs 30s later
	}{
		{"github's sample for X-Hub-Signature-256", Config{Preset: "github", Secrets: secrets("It's a Secret to Everybody")},
			hdr("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"), []byte("Hello, World!"), testNow},
		{"slack's example request", Config{Preset: "slack", Secrets: secrets("8f742231b10e8888abcd99yyyzzz85a5")},
			hdr("X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "X-Slack-Request-Timestamp", "1531420618"),
			slackBody, time.Unix(1531420618, 0)},
		{"the standard webhooks specification's example", Config{Preset: "standard_webhooks", Secrets: secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")},
			hdr("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265330", "webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
			[]byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)},
	}
	for _, tc := range tests {
		t.Run("preset "+tc.cfg.Preset+" verifies "+tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(&Request{Header: tc.header, Body: tc.body, Now: tc.sent.Add(30 * time.Second)}); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			h, _, err := Sign(tc.cfg, tc.body, tc.header.Get("webhook-id"), tc.sent)
			if err != nil {
				t.Fatal(err)
			}
			for name := range tc.header {
				if h.Get(name) != tc.header.Get(name) {
					t.Errorf("Sign %s = %q, published %q", name, h.Get(name), tc.header.Get(name))
				}
			}
		})
	}
}

// Encompass names the subscription whose key signed a notification in
// Elli-SubscriptionId; with several subscriptions' keys configured, that one key is tried.
func TestEncompassPresetPicksTheKeyBySubscriptionID(t *testing.T) {
	cfg := Config{Preset: "encompass", Secrets: secrets("key-of-sub-a-0001", "key-of-sub-b-0002", "rotation-key-any"),
		SecretIDs: []string{"sub-a", "sub-b", ""}}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sig := func(key string) string { return b64mac(key, body) }
	tests := []struct {
		name   string
		header http.Header
		want   Reason
	}{
		{"sub-a's notification signed with sub-a's key is accepted", hdr("Elli-Signature", sig("key-of-sub-a-0001"), "Elli-SubscriptionId", "sub-a"), ""},
		{"sub-b's notification signed with sub-b's key is accepted", hdr("Elli-Signature", sig("key-of-sub-b-0002"), "Elli-SubscriptionId", "sub-b"), ""},
		{"a key without an id is tried for every subscription", hdr("Elli-Signature", sig("rotation-key-any"), "Elli-SubscriptionId", "sub-a"), ""},
		{"sub-a's notification signed with sub-b's key is a mismatch", hdr("Elli-Signature", sig("key-of-sub-b-0002"), "Elli-SubscriptionId", "sub-a"), ReasonMismatch},
		{"an unknown subscription signed with a known key is a mismatch", hdr("Elli-Signature", sig("key-of-sub-a-0001"), "Elli-SubscriptionId", "sub-z"), ReasonMismatch},
		{"no subscription id is tried against keys without an id only", hdr("Elli-Signature", sig("key-of-sub-a-0001")), ReasonMismatch},
		{"two different subscription ids are malformed", hdr("Elli-Signature", sig("key-of-sub-a-0001"), "Elli-SubscriptionId", "sub-a", "Elli-SubscriptionId", "sub-b"), ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonOf(v.Verify(&Request{Header: tc.header, Body: body})); got != tc.want {
				t.Fatalf("reason %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("with every key named, a notification without an id is missing one", func(t *testing.T) {
		v, err := New(Config{Preset: "encompass", Secrets: secrets("key-of-sub-a-0001"), SecretIDs: []string{"sub-a"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := reasonOf(v.Verify(&Request{Header: hdr("Elli-Signature", sig("key-of-sub-a-0001")), Body: body})); got != ReasonMissing {
			t.Fatalf("reason %q, want missing", got)
		}
	})
	t.Run("sign sets the first key's subscription id", func(t *testing.T) {
		h, _, err := Sign(cfg, body, "", testNow)
		if err != nil {
			t.Fatal(err)
		}
		if h.Get("Elli-SubscriptionId") != "sub-a" || h.Get("Elli-Signature") != sig("key-of-sub-a-0001") {
			t.Fatalf("Sign = %v", h)
		}
	})
}

func TestTimestampedMessageIDs(t *testing.T) {
	now := testNow.Unix()
	v, err := New(stripeConfig())
	if err != nil {
		t.Fatal(err)
	}
	good := stripeHeader(stripeKey, now, body)
	v1 := good[strings.Index(good, "v1="):]
	id := func(h http.Header, b []byte) (string, time.Duration) {
		t.Helper()
		r := &Request{Header: h, Body: b, Now: testNow}
		if err := v.Verify(r); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return v.MessageID(r)
	}
	first, remember := id(hdr("Stripe-Signature", good), body)
	if !strings.HasPrefix(first, "sha256:") || remember != 10*time.Minute {
		t.Fatalf("MessageID = %q, %v; want a sha256: id remembered 10m", first, remember)
	}
	t.Run("the same message dressed differently has the same id", func(t *testing.T) {
		for _, h := range []string{
			v1 + ",t=" + strconv.FormatInt(now, 10),
			good + ",v1=" + strings.Repeat("ab", 32),
			good + ",v0=" + strings.Repeat("cd", 32),
			"t=" + strconv.FormatInt(now, 10) + ", " + v1 + " ",
		} {
			if got, _ := id(hdr("Stripe-Signature", h), body); got != first {
				t.Errorf("%q: id %q, want %q", h, got, first)
			}
		}
	})
	t.Run("the rolled secret's signature of the same message has the same id", func(t *testing.T) {
		if got, _ := id(hdr("Stripe-Signature", stripeHeader(stripeKey2, now, body)), body); got != first {
			t.Errorf("id %q, want %q", got, first)
		}
	})
	t.Run("another body or another second is another message", func(t *testing.T) {
		other := []byte(`{"eventId":"other"}`)
		if got, _ := id(hdr("Stripe-Signature", stripeHeader(stripeKey, now, other)), other); got == first {
			t.Error("another body has the same id")
		}
		if got, _ := id(hdr("Stripe-Signature", stripeHeader(stripeKey, now+1, body)), body); got == first {
			t.Error("another timestamp has the same id")
		}
	})
	t.Run("a timestamp header's message id is remembered for twice its tolerance", func(t *testing.T) {
		cfg := Config{Preset: "slack", Secrets: secrets(slackKey), Tolerance: time.Minute}
		v, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := &Request{Header: slackHeaders(slackKey, now, body), Body: body, Now: testNow}
		if got, remember := v.MessageID(r); got == "" || remember != 2*time.Minute {
			t.Fatalf("MessageID = %q, %v", got, remember)
		}
	})
	t.Run("a signature without a timestamp has no message id", func(t *testing.T) {
		v, err := New(Config{Preset: "github", Secrets: secrets(sigKey1)})
		if err != nil {
			t.Fatal(err)
		}
		if got, remember := v.MessageID(&Request{Header: hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac(sigKey1, body))), Body: body}); got != "" || remember != 0 {
			t.Fatalf("MessageID = %q, %v", got, remember)
		}
	})
}
