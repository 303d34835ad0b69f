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

// benchReject measures the 401 path: a request that fails verification, as a prober sends.
func benchReject(b *testing.B, cfg Config, req *Request) {
	b.Helper()
	v, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(req.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if v.Verify(req) == nil {
			b.Fatal("verified a bad request")
		}
	}
}

// The gateway's rejection scenario: a well-formed signature of the wrong key.
func BenchmarkRejectSignature(b *testing.B) {
	body := bytes.Repeat([]byte("a"), 1024)
	benchReject(b, Config{Method: Signature, Secrets: secrets(sigKey1)},
		&Request{Header: hdr(DefaultSignatureHeader, b64mac("not-the-key", body)), Body: body, Now: testNow})
}

func BenchmarkRejectBearer(b *testing.B) {
	benchReject(b, bearerConfig(), &Request{Header: hdr("Authorization", "Bearer not-a-token"), Now: testNow})
}

func BenchmarkRejectMissing(b *testing.B) {
	benchReject(b, signatureConfig(), &Request{Header: hdr(), Now: testNow})
}
