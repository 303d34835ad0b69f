package security

import (
	"crypto/sha256"
	"encoding/hex"
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

func fixtureConfig(fx fixture) Config {
	switch fx.Kind {
	case "hex":
		return Config{Method: Signature, Encoding: "hex", Secrets: secrets(fx.Key)}
	case "hex-prefixed":
		return Config{Method: Signature, Encoding: "hex", Prefix: "sha256=", Secrets: secrets(fx.Key)}
	case "standard_webhooks":
		return Config{Method: StandardWebhooks, Secrets: secrets(fx.Key)}
	}
	return Config{Method: Signature, Secrets: secrets(fx.Key)}
}

// TestOpensslFixtures checks the package against HMACs computed by openssl: Verify accepts
// what openssl signed, and SignatureValue and Sign produce exactly the same values.
func TestOpensslFixtures(t *testing.T) {
	bodies := map[string][]byte{}
	for _, fx := range loadFixtures(t) {
		t.Run(fx.File+" signed as "+fx.Kind+" with "+fx.Key, func(t *testing.T) {
			b := fixtureBody(t, fx.File, bodies)
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != fx.SHA256 {
				t.Fatalf("body %s has sha256 %x, generate.sh hashed %s: the body differs", fx.File, sum, fx.SHA256)
			}
			cfg := fixtureConfig(fx)
			v, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			req := &Request{Body: b}
			var want string
			switch fx.Kind {
			case "standard_webhooks":
				ts, err := strconv.ParseInt(fx.Timestamp, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = hdr("webhook-id", fx.MsgID, "webhook-timestamp", fx.Timestamp, "webhook-signature", fx.Value)
				req.Now = time.Unix(ts, 0).Add(90 * time.Second)
				h, _, err := Sign(cfg, b, fx.MsgID, time.Unix(ts, 0))
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if got := h.Get("webhook-signature"); got != fx.Value {
					t.Errorf("Sign webhook-signature = %q, openssl says %q", got, fx.Value)
				}
				if h.Get("webhook-id") != fx.MsgID || h.Get("webhook-timestamp") != fx.Timestamp {
					t.Errorf("Sign headers = %v, want id %s and timestamp %s", h, fx.MsgID, fx.Timestamp)
				}
			default:
				req.Header = hdr(DefaultSignatureHeader, fx.Value)
				prefix := ""
				if fx.Kind == "hex-prefixed" {
					prefix = "sha256="
				}
				want = SignatureValue([]byte(fx.Key), b, cfg.Encoding, prefix)
				if want != fx.Value {
					t.Errorf("SignatureValue = %q, openssl says %q", want, fx.Value)
				}
				h, q, err := Sign(cfg, b, "", time.Time{})
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if got := h.Get(DefaultSignatureHeader); got != fx.Value || len(h) != 1 || len(q) != 0 {
					t.Errorf("Sign = %v %v, want only %s: %q", h, q, DefaultSignatureHeader, fx.Value)
				}
			}
			if err := v.Verify(req); err != nil {
				t.Errorf("Verify of openssl's signature: %v", err)
			}
		})
	}
}
