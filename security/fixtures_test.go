package security

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/sigfixtures"
)

// fixtureDir holds bodies and the signatures openssl computed for them
// (testdata/signatures/generate.sh writes expected.tsv).
const fixtureDir = "../testdata/signatures"

type fixture = sigfixtures.Fixture

func loadFixtures(t *testing.T) []fixture {
	t.Helper()
	out, err := sigfixtures.Load(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 30 {
		t.Fatalf("expected.tsv has only %d rows", len(out))
	}
	return out
}

func fixtureBody(t *testing.T, name string, cache map[string][]byte) []byte {
	t.Helper()
	if b, ok := cache[name]; ok {
		return b
	}
	b, err := sigfixtures.Body(fixtureDir, name)
	if err != nil {
		t.Fatal(err)
	}
	cache[name] = b
	return b
}

// fixtureKind says, for a kind of row in expected.tsv, which config verifies it and which
// headers carry it. sent is the signing time for timestamped kinds (zero otherwise).
type fixtureKind struct {
	cfg     func(key string) Config
	headers func(fx fixture) http.Header
	sent    func(fx fixture) time.Time
}

func fixtureKinds() map[string]fixtureKind {
	plain := func(cfg func(string) Config, header string) fixtureKind {
		return fixtureKind{cfg: cfg, headers: func(fx fixture) http.Header { return hdr(header, fx.Value) }}
	}
	unix := func(fx fixture) time.Time {
		ts, _ := strconv.ParseInt(fx.Timestamp, 10, 64)
		return time.Unix(ts, 0)
	}
	return map[string]fixtureKind{
		"base64": plain(func(k string) Config { return Config{Method: Signature, Secrets: secrets(k)} }, DefaultSignatureHeader),
		"hex":    plain(func(k string) Config { return Config{Method: Signature, Encoding: "hex", Secrets: secrets(k)} }, DefaultSignatureHeader),
		"hex-prefixed": plain(func(k string) Config {
			return Config{Method: Signature, Encoding: "hex", Prefix: "sha256=", Secrets: secrets(k)}
		}, DefaultSignatureHeader),
		"standard_webhooks": {
			cfg: func(k string) Config { return Config{Method: StandardWebhooks, Secrets: secrets(k)} },
			headers: func(fx fixture) http.Header {
				return hdr("webhook-id", fx.MsgID, "webhook-timestamp", fx.Timestamp, "webhook-signature", fx.Value)
			},
			sent: unix,
		},
		"github":  plain(func(k string) Config { return Config{Preset: "github", Secrets: secrets(k)} }, "X-Hub-Signature-256"),
		"shopify": plain(func(k string) Config { return Config{Preset: "shopify", Secrets: secrets(k)} }, "X-Shopify-Hmac-Sha256"),
		"slack": {
			cfg: func(k string) Config { return Config{Preset: "slack", Secrets: secrets(k)} },
			headers: func(fx fixture) http.Header {
				return hdr("X-Slack-Signature", fx.Value, "X-Slack-Request-Timestamp", fx.Timestamp)
			},
			sent: unix,
		},
		"stripe": {
			cfg:     func(k string) Config { return Config{Preset: "stripe", Secrets: secrets(k)} },
			headers: func(fx fixture) http.Header { return hdr("Stripe-Signature", fx.Value) },
			sent:    unix,
		},
		"snapdocs": {
			cfg: func(k string) Config { return Config{Preset: "snapdocs", Secrets: secrets(k)} },
			headers: func(fx fixture) http.Header {
				return hdr("X-Authorization-Signature", fx.Value, "X-Authorization-Timestamp", fx.Timestamp)
			},
			sent: func(fx fixture) time.Time {
				t, _ := time.Parse(time.RFC3339, fx.Timestamp)
				return t
			},
		},
	}
}

// TestOpensslFixtures checks the package against HMACs computed by openssl: Verify accepts
// what openssl signed, within the tolerance of a timestamped kind and not past it, and
// Sign produces exactly the same headers.
func TestOpensslFixtures(t *testing.T) {
	bodies := map[string][]byte{}
	kinds := fixtureKinds()
	seen := map[string]bool{}
	for _, fx := range loadFixtures(t) {
		t.Run(fx.File+" signed as "+fx.Kind+" with "+fx.Key, func(t *testing.T) {
			b := fixtureBody(t, fx.File, bodies)
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != fx.SHA256 {
				t.Fatalf("body %s has sha256 %x, generate.sh hashed %s: the body differs", fx.File, sum, fx.SHA256)
			}
			k, ok := kinds[fx.Kind]
			if !ok {
				t.Fatalf("no config for fixture kind %q", fx.Kind)
			}
			seen[fx.Kind] = true
			cfg := k.cfg(fx.Key)
			v, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			want := k.headers(fx)
			var sent time.Time
			if k.sent != nil {
				sent = k.sent(fx)
			}
			req := &Request{Header: want, Body: b, Now: sent.Add(90 * time.Second)}
			if err := v.Verify(req); err != nil {
				t.Errorf("Verify of openssl's signature: %v", err)
			}
			if k.sent != nil {
				late := &Request{Header: want, Body: b, Now: sent.Add(6 * time.Minute)}
				if reasonOf(v.Verify(late)) != ReasonExpired {
					t.Errorf("Verify 6 minutes after signing = %v, want expired", v.Verify(late))
				}
			}
			h, q, err := Sign(cfg, b, fx.MsgID, sent)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if len(h) != len(want) || len(q) != 0 {
				t.Errorf("Sign = %v %v, want only %v", h, q, want)
			}
			for name := range want {
				if h.Get(name) != want.Get(name) {
					t.Errorf("Sign %s = %q, openssl says %q", name, h.Get(name), want.Get(name))
				}
			}
			if cfg.Method == Signature && k.sent == nil {
				e, p := v.(*Check).Config().Encoding, v.(*Check).Config().Prefix
				if got := SignatureValue([]byte(fx.Key), b, e, p); got != fx.Value {
					t.Errorf("SignatureValue = %q, openssl says %q", got, fx.Value)
				}
			}
		})
	}
	for kind := range kinds {
		if !seen[kind] {
			t.Errorf("expected.tsv has no %s rows", kind)
		}
	}
}
