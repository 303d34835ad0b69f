package security

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"testing"
)

func TestReusedDigestsComputeHMACSHA256(t *testing.T) {
	var m macHashes
	bodies := [][]byte{nil, []byte("a"), bytes.Repeat([]byte("b"), 63), bytes.Repeat([]byte("c"), 64), bytes.Repeat([]byte("d"), 1000)}
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"an empty key", nil},
		{"a short key", []byte("k3y")},
		{"a key of exactly one block", bytes.Repeat([]byte("k"), 64)},
		{"a key one byte longer than a block is hashed first", bytes.Repeat([]byte("k"), 65)},
		{"a long key is hashed first", bytes.Repeat([]byte("long key "), 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second round uses the pooled digest
				for _, body := range bodies {
					want := hmac.New(sha256.New, tc.key)
					want.Write(body)
					got := m.sum(nil, tc.key, func(h hash.Hash) { h.Write(body) })
					if !bytes.Equal(got, want.Sum(nil)) {
						t.Fatalf("body of %d bytes: got %x, want %x", len(body), got, want.Sum(nil))
					}
				}
			}
		})
	}
}

// A rejected signature is what a guesser can send without a credential, as fast as we
// answer: checking one must not allocate per request beyond the failure it returns.
func TestRejectingASignatureAllocatesOnlyTheFailure(t *testing.T) {
	body := bytes.Repeat([]byte("a"), 1024)
	for _, tc := range []struct {
		name string
		cfg  Config
		sig  string
		max  float64
	}{
		{"a well-formed signature of the wrong key", Config{Method: Signature, Secrets: secrets(sigKey1)}, b64mac("not-the-key", body), 2},
		{"a wrong signature with two rotation secrets", Config{Method: Signature, Secrets: secrets(sigKey1, sigKey2)}, b64mac("not-the-key", body), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			req := &Request{Header: hdr(DefaultSignatureHeader, tc.sig), Body: body, Now: testNow}
			if v.Verify(req) == nil {
				t.Fatal("verified a bad signature")
			}
			if n := testing.AllocsPerRun(100, func() { _ = v.Verify(req) }); n > tc.max+raceAllocs {
				t.Errorf("%v allocations per rejected request, want at most %v", n, tc.max+raceAllocs)
			}
		})
	}
}
