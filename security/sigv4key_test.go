package security

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// TestHMACSumIsCryptoHMAC: the stack-buffer HMAC is RFC 2104's, for keys shorter than,
// equal to and longer than the block, and messages past its stack buffer.
func TestHMACSumIsCryptoHMAC(t *testing.T) {
	for _, tt := range []struct{ key, msg int }{{0, 0}, {4, 8}, {32, 250}, {64, 64}, {65, 1}, {200, 400}, {44, 5000}} {
		t.Run("a "+strconv.Itoa(tt.key)+" byte key over "+strconv.Itoa(tt.msg)+" bytes matches crypto/hmac", func(t *testing.T) {
			key, msg := bytes.Repeat([]byte{0xa5}, tt.key), strings.Repeat("m", tt.msg)
			m := hmac.New(sha256.New, key)
			m.Write([]byte(msg))
			if got := hmacSum(key, msg); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Errorf("hmacSum = %x, want %x", got, m.Sum(nil))
			}
			if got := hmacSum(key, []byte(msg)); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Errorf("hmacSum([]byte) = %x, want %x", got, m.Sum(nil))
			}
		})
	}
}

// sdkSignedBy is a request the SDK signs with secret at at, verified at now.
func sdkSignedBy(t testing.TB, secret string, at, now time.Time) *Request {
	t.Helper()
	body := []byte(`{"id":1}`)
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/pushback/maxwell/events", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: sigv4Key, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "pushbackd", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	return requestOf(req, body, now)
}

// TestSigV4SigningKeyCacheKeepsEachSecretItsOwn: Checks that share a Template share its
// key cache, and whatever order requests come in, each Check accepts what its own secret
// signed and refuses what another's signed, on both days of a tolerance over midnight.
func TestSigV4SigningKeyCacheKeepsEachSecretItsOwn(t *testing.T) {
	var ts Templates
	other := "another-secret-access-key"
	mine, err := ts.Compile(sigv4Config())
	if err != nil {
		t.Fatal(err)
	}
	cfg := sigv4Config()
	cfg.Secrets = secrets(other)
	theirs, err := ts.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mine.Template() != theirs.Template() {
		t.Fatal("the two Checks do not share a Template, so they would not share a cache")
	}
	midnight := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for round := range 3 {
		for _, at := range []time.Time{midnight.Add(-time.Second), midnight.Add(time.Second)} {
			for _, tt := range []struct {
				name   string
				check  *Check
				secret string
				ok     bool
			}{
				{"the first secret's check accepts its own signature", &mine, sigv4Secret, true},
				{"the second secret's check refuses the first's signature", &theirs, sigv4Secret, false},
				{"the second secret's check accepts its own signature", &theirs, other, true},
				{"the first secret's check refuses the second's signature", &mine, other, false},
			} {
				t.Run(tt.name+" on "+at.Format(amzDateFormat)+" round "+strconv.Itoa(round), func(t *testing.T) {
					err := tt.check.Verify(sdkSignedBy(t, tt.secret, at, midnight))
					var f *Failure
					switch {
					case tt.ok && err != nil:
						t.Fatalf("refused: %v", err)
					case !tt.ok && (!errors.As(err, &f) || f.Reason != ReasonMismatch):
						t.Fatalf("err = %v, want a signature mismatch", err)
					}
				})
			}
		}
	}
}

// TestSigV4SigningKeyCacheIsBounded: a day outside tolerance is never remembered (a
// sender choosing dates cannot fill the cache or push out a working day), and however many
// secrets share a Template, the cache holds at most maxSigV4CachedSecrets of them.
func TestSigV4SigningKeyCacheIsBounded(t *testing.T) {
	c := mustNew(t, sigv4Config()).(*Check)
	s := c.t.scheme.(*sigv4Scheme)
	t.Run("a request dated outside tolerance is refused and leaves the cache empty", func(t *testing.T) {
		for d := range 50 {
			err := c.Verify(sdkSignedBy(t, sigv4Secret, testNow.AddDate(0, 0, -1-d), testNow))
			var f *Failure
			if !errors.As(err, &f) || f.Reason != ReasonExpired {
				t.Fatalf("err = %v, want expired", err)
			}
		}
		if n := len(s.keys.m); n != 0 {
			t.Fatalf("cache holds %d secrets after out-of-tolerance requests, want 0", n)
		}
	})
	t.Run("many secrets keep the cache within its bound and each key right", func(t *testing.T) {
		for i := range 3 * maxSigV4CachedSecrets {
			secret := []byte("secret-" + strconv.Itoa(i))
			got := s.keys.key(secret, "20260301", "us-east-1", "pushbackd", true)
			if want := sigv4SigningKey(secret, "20260301", "us-east-1", "pushbackd"); got != want {
				t.Fatalf("key of secret %d = %x, want %x", i, got, want)
			}
			if n := len(s.keys.m); n > maxSigV4CachedSecrets {
				t.Fatalf("cache holds %d secrets, bound %d", n, maxSigV4CachedSecrets)
			}
		}
	})
	t.Run("a third day takes the older slot and keeps the newer", func(t *testing.T) {
		secret := []byte(sigv4Secret)
		for _, day := range []string{"20260301", "20260302", "20260303"} {
			s.keys.key(secret, day, "us-east-1", "pushbackd", true)
		}
		e := s.keys.m[sigv4Secret]
		if e == nil || !(e.day[0] == "20260303" && e.day[1] == "20260302" || e.day[1] == "20260303" && e.day[0] == "20260302") {
			t.Fatalf("entry = %+v, want the days 20260302 and 20260303", e)
		}
	})
}

// TestSigV4RefusalAllocatesLittle: a wrong-secret request (the 401 path under a flood)
// builds its canonical request and HMACs on the stack; it made 56 allocations before.
func TestSigV4RefusalAllocatesLittle(t *testing.T) {
	v := mustNew(t, Config{Method: AWSSigV4, Region: "us-east-1", Service: "pushbackd",
		Secrets: secrets("another-secret"), SecretIDs: []string{sigv4Key}})
	r := sdkSigned(t, bytes.Repeat([]byte("a"), 1024), testNow)
	if n := testing.AllocsPerRun(100, func() {
		if v.Verify(r) == nil {
			t.Fatal("accepted")
		}
	}); n > 10 {
		t.Errorf("a refusal allocates %v times, want at most 10", n)
	}
}

// TestSigV4RefusesWhatNoKeyCouldSignBeforeHashingTheBody: a request naming an unknown
// access key or another scope is refused as that, before the body (here one that does not
// match its X-Amz-Content-Sha256) is hashed; malformed headers are still malformed first.
func TestSigV4RefusesWhatNoKeyCouldSignBeforeHashingTheBody(t *testing.T) {
	v := mustNew(t, sigv4Config())
	for _, tt := range []struct {
		name, cred, payloadHash string
		reason                  Reason
		detail                  string
	}{
		{"an unknown access key id is refused before the body hash is compared", "AKIDUNKNOWN/20260301/us-east-1/pushbackd/aws4_request",
			strings.Repeat("0", 64), ReasonMismatch, "access key id that is not configured"},
		{"another region is refused before the body hash is compared", sigv4Key + "/20260301/eu-west-1/pushbackd/aws4_request",
			strings.Repeat("0", 64), ReasonMismatch, "another region or service"},
		{"UNSIGNED-PAYLOAD stays malformed whatever the key", "AKIDUNKNOWN/20260301/us-east-1/pushbackd/aws4_request",
			unsignedPayload, ReasonMalformed, "UNSIGNED-PAYLOAD"},
		{"a known key with a wrong body hash is a body mismatch", sigv4Key + "/20260301/us-east-1/pushbackd/aws4_request",
			strings.Repeat("0", 64), ReasonMismatch, "not the SHA-256 of the body"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			h.Set("Authorization", sigv4Algorithm+" Credential="+tt.cred+", SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("a", 64))
			h.Set(HeaderAmzDate, testNow.Format(amzDateFormat))
			h.Set(HeaderAmzContentSHA256, tt.payloadHash)
			err := v.Verify(&Request{Header: h, Host: "127.0.0.1:8080", Path: "/x", Method: http.MethodPost,
				Body: bytes.Repeat([]byte("b"), 1<<20), Now: testNow})
			var f *Failure
			if !errors.As(err, &f) || f.Reason != tt.reason || !strings.Contains(f.Detail, tt.detail) {
				t.Fatalf("err = %v, want %s with %q", err, tt.reason, tt.detail)
			}
		})
	}
}
