package security

import (
	"bytes"
	"testing"
)

// Run: go test -run='^$' -bench=. -benchmem ./security/

func benchVerify(b *testing.B, cfg Config, body []byte) {
	b.Helper()
	v, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	h, q, err := Sign(cfg, body, "msg_bench", testNow)
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{Header: h, Query: q, Body: body, Now: testNow}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	benchVerify(b, Config{Method: Signature, Secrets: secrets(sigKey1)}, bytes.Repeat([]byte("a"), 1024))
}

// The second of two rotation secrets matches: the cost of rotation is one more HMAC.
func BenchmarkVerifySignatureRotation(b *testing.B) {
	cfg := Config{Method: Signature, Secrets: secrets(sigKey2, sigKey1)}
	benchVerify(b, cfg, bytes.Repeat([]byte("a"), 1024))
}

func BenchmarkVerifyStandardWebhooks(b *testing.B) {
	benchVerify(b, Config{Method: StandardWebhooks, Secrets: secrets(whsec1)}, bytes.Repeat([]byte("a"), 1024))
}

func BenchmarkVerifyBasic(b *testing.B) {
	benchVerify(b, basicConfig(), nil)
}

func BenchmarkVerifyBearer(b *testing.B) {
	benchVerify(b, bearerConfig(), nil)
}
