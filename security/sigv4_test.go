package security

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	sigv4Key    = "AKIDPUSHBACKD1"
	sigv4Secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
)

func sigv4Config() Config {
	return Config{Method: AWSSigV4, Region: "us-east-1", Service: "pushbackd",
		Secrets: secrets(sigv4Secret), SecretIDs: []string{sigv4Key}}
}

// requestOf is what the gateway hands Verify for r.
func requestOf(r *http.Request, body []byte, now time.Time) *Request {
	h := r.Header.Clone()
	if r.ContentLength > 0 {
		h.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	return &Request{Header: h, Query: r.URL.Query(), Body: body, Method: r.Method, Host: r.URL.Host,
		Path: r.URL.EscapedPath(), Now: now}
}

// TestSigV4SignMatchesTheAWSSDK: what Sign produces is, byte for byte, the Authorization
// the AWS SDK computes for the same request, so `pushbackd sign` and `curl` send what an
// SDK would.
func TestSigV4SignMatchesTheAWSSDK(t *testing.T) {
	for _, tt := range []struct{ name, target, body string }{
		{"a plain path and a JSON body", "https://hooks.example.com/pushback/maxwell/events", `{"a":1}`},
		{"a query with reserved and non-ASCII characters", "https://hooks.example.com:8443/pushback/maxwell/events?z=1&a=b%20c&a=%2F~*&%C3%A9=%C3%BC", `x`},
		{"an empty body", "http://127.0.0.1:8080/pushback/maxwell/events", ``},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(tt.target)
			h, _, err := SignFor(sigv4Config(), u, []byte(tt.body), "", testNow)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, tt.target, bytes.NewReader([]byte(tt.body)))
			sum := sha256.Sum256([]byte(tt.body))
			req.Header.Set(HeaderAmzContentSHA256, hex.EncodeToString(sum[:]))
			err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: sigv4Key, SecretAccessKey: sigv4Secret},
				req, hex.EncodeToString(sum[:]), "pushbackd", "us-east-1", testNow)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := h.Get("Authorization"), req.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization\n got %s\nwant %s", got, want)
			}
			if err := mustNew(t, sigv4Config()).Verify(requestOf(req, []byte(tt.body), testNow)); err != nil {
				t.Errorf("the SDK's request is refused: %v", err)
			}
		})
	}
}

func TestSignWithoutATargetSaysSigV4NeedsTheURL(t *testing.T) {
	if _, _, err := Sign(sigv4Config(), nil, "", testNow); err == nil || !strings.Contains(err.Error(), "URL") {
		t.Fatalf("err = %v, want one asking for the URL", err)
	}
}

func mustNew(t testing.TB, cfg Config) Verifier {
	t.Helper()
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSigV4ConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(c *Config)
		key  string
		want string
	}{
		{"a region with a slash is refused", func(c *Config) { c.Region = "us/east" }, "region", "region must be"},
		{"a service with a space is refused", func(c *Config) { c.Service = "push back" }, "service", "service must be"},
		{"a credential without an access key id is refused", func(c *Config) { c.SecretIDs = nil }, "credentials", "needs an access_key_id"},
		{"an access key id with punctuation is refused", func(c *Config) { c.SecretIDs = []string{"AKID/1"} }, "credentials", "letters and digits"},
		{"an access key id listed twice is refused", func(c *Config) {
			c.Secrets, c.SecretIDs = secrets("a", "b"), []string{"AKID1", "AKID1"}
		}, "credentials", "listed twice"},
		{"no credentials are refused", func(c *Config) { c.Secrets, c.SecretIDs = nil, nil }, "credentials", "required"},
		{"a secret with a trailing newline is refused", func(c *Config) { c.Secrets = secrets("s\n") }, "credentials", "whitespace"},
		{"a negative tolerance is refused", func(c *Config) { c.Tolerance = -time.Second }, "tolerance", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sigv4Config()
			tt.cfg(&cfg)
			_, err := New(cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q at key %s", err, tt.want, tt.key)
			}
		})
	}
}

// sdkSigned is a request signed by the SDK, as the gateway would see it.
func sdkSigned(t testing.TB, body []byte, at time.Time) *Request {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/pushback/maxwell/events?x=1", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: sigv4Key, SecretAccessKey: sigv4Secret},
		req, hex.EncodeToString(sum[:]), "pushbackd", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	return requestOf(req, body, testNow)
}

func TestSigV4RefusesMalformedRequests(t *testing.T) {
	body := []byte(`{"a":1}`)
	tests := []struct {
		name   string
		change func(r *Request)
		reason Reason
	}{
		{"no Authorization header is missing", func(r *Request) { r.Header.Del("Authorization") }, ReasonMissing},
		{"another scheme is malformed", func(r *Request) { r.Header.Set("Authorization", "Bearer x") }, ReasonMalformed},
		{"a signed header list without host is malformed", func(r *Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "content-length;host;", "content-length;", 1))
		}, ReasonMalformed},
		{"no X-Amz-Date is malformed", func(r *Request) { r.Header.Del(HeaderAmzDate) }, ReasonMalformed},
		{"an X-Amz-Date of another day than the scope is malformed", func(r *Request) {
			r.Header.Set(HeaderAmzDate, testNow.Add(24*time.Hour).Format(amzDateFormat))
		}, ReasonMalformed},
		{"a path other than the one signed is a mismatch", func(r *Request) { r.Path = "/pushback/maxwell/other" }, ReasonMismatch},
		{"a host other than the one signed is a mismatch", func(r *Request) { r.Host = "evil.example.com" }, ReasonMismatch},
		{"a method other than the one signed is a mismatch", func(r *Request) { r.Method = http.MethodPut }, ReasonMismatch},
	}
	v := mustNew(t, sigv4Config())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sdkSigned(t, body, testNow)
			if err := v.Verify(r); err != nil {
				t.Fatalf("unchanged request refused: %v", err)
			}
			tt.change(r)
			var f *Failure
			if err := v.Verify(r); !errors.As(err, &f) || f.Reason != tt.reason {
				t.Fatalf("err = %v, want reason %s", err, tt.reason)
			}
			if strings.Contains(f.Detail, sigv4Key) {
				t.Errorf("detail %q quotes the access key id", f.Detail)
			}
		})
	}
}

// TestSigV4MessageIDIsTheSignature: a resent request is recognised as the same message for
// twice the tolerance; a request signed a second later is another message.
func TestSigV4MessageIDIsTheSignature(t *testing.T) {
	v := mustNew(t, sigv4Config())
	body := []byte(`{"a":1}`)
	id1, remember := v.MessageID(sdkSigned(t, body, testNow))
	id2, _ := v.MessageID(sdkSigned(t, body, testNow))
	id3, _ := v.MessageID(sdkSigned(t, body, testNow.Add(time.Second)))
	if id1 == "" || id1 != id2 {
		t.Errorf("a resent request has id %q then %q, want the same", id1, id2)
	}
	if id3 == id1 {
		t.Error("a request signed a second later has the same id")
	}
	if remember != 2*DefaultTolerance {
		t.Errorf("remembered for %s, want %s", remember, 2*DefaultTolerance)
	}
}

// FuzzSigV4Authorization: the parser never panics, and what it accepts is within its
// bounds and what a signer writes.
func FuzzSigV4Authorization(f *testing.F) {
	f.Add(sdkSigned(f, []byte("x"), testNow).Header.Get("Authorization"))
	f.Add("AWS4-HMAC-SHA256 Credential=A/20260101/r/s/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64))
	f.Add("AWS4-HMAC-SHA256 Credential=A/2026/r/s/aws4_request,SignedHeaders=host;host,Signature=zz,Signature=00")
	f.Add("AWS4-HMAC-SHA256 ,,,=")
	f.Fuzz(func(t *testing.T, v string) {
		a, err := parseSigV4Authorization(v)
		if err != nil {
			// The messages are fixed texts, so none can carry what was sent.
			if _, fixed := err.(parseError); !fixed || len(err.Error()) > 100 {
				t.Errorf("error %q is not one of the parser's fixed messages", err)
			}
			return
		}
		if len(v) > maxSigV4Authorization || !accessKeyID(a.accessKey) || !scopePart(a.region) || !scopePart(a.service) {
			t.Errorf("accepted out of bounds: %+v", a)
		}
		if strings.Count(a.signedHeaders, ";") >= maxSigV4Headers || checkSignedHeaders(a.signedHeaders) != nil {
			t.Errorf("accepted signed headers %q", a.signedHeaders)
		}
	})
}

// BenchmarkVerifySigV4Reject is the 401 path: a well-formed request signed with a wrong
// secret, which costs the full canonical request and key derivation.
func BenchmarkVerifySigV4Reject(b *testing.B) {
	v := mustNew(b, Config{Method: AWSSigV4, Region: "us-east-1", Service: "pushbackd",
		Secrets: secrets("another-secret"), SecretIDs: []string{sigv4Key}})
	r := sdkSigned(b, bytes.Repeat([]byte("a"), 1024), testNow)
	b.ReportAllocs()
	for b.Loop() {
		if v.Verify(r) == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkVerifySigV4(b *testing.B) {
	v := mustNew(b, sigv4Config())
	r := sdkSigned(b, bytes.Repeat([]byte("a"), 1024), testNow)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}
