package security

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixtureDir holds bodies and the signatures openssl computed for them
// (testdata/signatures/generate.sh writes expected.tsv).
const fixtureDir = "../testdata/signatures"

type fixture struct {
	file, sha256, kind, key, msgID, timestamp, value string
}

func loadFixtures(t *testing.T) []fixture {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fixture
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 7 {
			t.Fatalf("expected.tsv:%d: %d columns, want 7", n, len(c))
		}
		out = append(out, fixture{c[0], c[1], c[2], c[3], c[4], c[5], c[6]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 30 {
		t.Fatalf("expected.tsv has only %d rows", len(out))
	}
	return out
}

// oneMiB rebuilds one-mib.bin exactly as generate.sh does: AES-128-CTR with an all-zero key
// and IV over 1 MiB of zero bytes (openssl enc -aes-128-ctr).
func oneMiB(t *testing.T) []byte {
	t.Helper()
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1<<20)
	cipher.NewCTR(block, make([]byte, 16)).XORKeyStream(b, b)
	return b
}

func fixtureBody(t *testing.T, name string, cache map[string][]byte) []byte {
	t.Helper()
	if b, ok := cache[name]; ok {
		return b
	}
	var b []byte
	if name == "one-mib.bin" {
		b = oneMiB(t)
	} else {
		var err error
		if b, err = os.ReadFile(filepath.Join(fixtureDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	cache[name] = b
	return b
}

func fixtureConfig(fx fixture) Config {
	switch fx.kind {
	case "hex":
		return Config{Method: Signature, Encoding: "hex", Secrets: secrets(fx.key)}
	case "hex-prefixed":
		return Config{Method: Signature, Encoding: "hex", Prefix: "sha256=", Secrets: secrets(fx.key)}
	case "standard_webhooks":
		return Config{Method: StandardWebhooks, Secrets: secrets(fx.key)}
	}
	return Config{Method: Signature, Secrets: secrets(fx.key)}
}

// TestOpensslFixtures checks the package against HMACs computed by openssl: Verify accepts
// what openssl signed, and SignatureValue and Sign produce exactly the same values.
func TestOpensslFixtures(t *testing.T) {
	bodies := map[string][]byte{}
	for _, fx := range loadFixtures(t) {
		t.Run(fx.file+" signed as "+fx.kind+" with "+fx.key, func(t *testing.T) {
			b := fixtureBody(t, fx.file, bodies)
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != fx.sha256 {
				t.Fatalf("body %s has sha256 %x, generate.sh hashed %s: the body differs", fx.file, sum, fx.sha256)
			}
			cfg := fixtureConfig(fx)
			v, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			req := &Request{Body: b}
			var want string
			switch fx.kind {
			case "standard_webhooks":
				ts, err := strconv.ParseInt(fx.timestamp, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = hdr("webhook-id", fx.msgID, "webhook-timestamp", fx.timestamp, "webhook-signature", fx.value)
				req.Now = time.Unix(ts, 0).Add(90 * time.Second)
				h, _, err := Sign(cfg, b, fx.msgID, time.Unix(ts, 0))
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if got := h.Get("webhook-signature"); got != fx.value {
					t.Errorf("Sign webhook-signature = %q, openssl says %q", got, fx.value)
				}
				if h.Get("webhook-id") != fx.msgID || h.Get("webhook-timestamp") != fx.timestamp {
					t.Errorf("Sign headers = %v, want id %s and timestamp %s", h, fx.msgID, fx.timestamp)
				}
			default:
				req.Header = hdr(DefaultSignatureHeader, fx.value)
				prefix := ""
				if fx.kind == "hex-prefixed" {
					prefix = "sha256="
				}
				want = SignatureValue([]byte(fx.key), b, cfg.Encoding, prefix)
				if want != fx.value {
					t.Errorf("SignatureValue = %q, openssl says %q", want, fx.value)
				}
				h, q, err := Sign(cfg, b, "", time.Time{})
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if got := h.Get(DefaultSignatureHeader); got != fx.value || len(h) != 1 || len(q) != 0 {
					t.Errorf("Sign = %v %v, want only %s: %q", h, q, DefaultSignatureHeader, fx.value)
				}
			}
			if err := v.Verify(req); err != nil {
				t.Errorf("Verify of openssl's signature: %v", err)
			}
		})
	}
}
