package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
)

const (
	sigv4AccessKey = "AKIDPUSHBACKD1"
	sigv4Secret    = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
)

const sigv4Partner = `id: maxwell
endpoints:
  - name: events
    saga: echo
    mode: sync
    security:
      method: aws_sigv4
      region: us-east-1
      service: pushbackd
      credentials:
        - {access_key_id: AKIDOLDKEY0001, secret_access_key: {value: "old-secret"}}
        - {access_key_id: ` + sigv4AccessKey + `, secret_access_key: {value: "` + sigv4Secret + `"}}
      tolerance: 5m
`

type reasonLog struct {
	mu      sync.Mutex
	reasons []security.Reason
}

func (o *reasonLog) Request(string, string, int, string) {}
func (o *reasonLog) AuthFailure(_, _, _ string, _ security.Method, r security.Reason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reasons = append(o.reasons, r)
}

func (o *reasonLog) last() security.Reason {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reasons) == 0 {
		return ""
	}
	return o.reasons[len(o.reasons)-1]
}

// startSigV4Gateway runs the real gateway, on loopback, with the test config plus a partner
// whose endpoint verifies aws_sigv4.
func startSigV4Gateway(t *testing.T, now time.Time) (*httptest.Server, *reasonLog, *fakeRuns) {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/config")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners", "maxwell.yaml"), []byte(sigv4Partner), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pushbackd.yaml"))
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	obs := &reasonLog{}
	runner := &fakeRuns{result: saga.Result{Status: "succeeded"}}
	gw := New(Options{Config: staticConfig{cfg}, Runs: runner, Logger: zaptest.NewLogger(t), Observer: obs,
		Now: func() time.Time { return now }})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv, obs, runner
}

// TestAWSSigV4RequestsSignedByTheAWSSDK sends requests signed by the AWS SDK for Go v2's
// signer, an implementation independent of ours, over loopback to the real gateway.
func TestAWSSigV4RequestsSignedByTheAWSSDK(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	srv, obs, _ := startSigV4Gateway(t, now)
	body := []byte(`{"event":"loan.updated","id":"L-1"}`)
	type sdkReq struct {
		path, query string
		secret      string
		accessKey   string
		region      string
		service     string
		at          time.Time
		before      func(r *http.Request) // before signing
		after       func(r *http.Request) // after signing: what an attacker changes
		sendBody    []byte                // nil: body
	}
	base := sdkReq{path: "/pushback/maxwell/events", secret: sigv4Secret, accessKey: sigv4AccessKey,
		region: "us-east-1", service: "pushbackd", at: now}
	with := func(f func(*sdkReq)) sdkReq { r := base; f(&r); return r }
	hashHeader := func(r *http.Request) {
		sum := sha256.Sum256(body)
		r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	}
	tests := []struct {
		name   string
		req    sdkReq
		want   int
		reason security.Reason
	}{
		{"a request signed with the right key pair is accepted", base, 200, ""},
		{"the second configured key pair is as good as the first", with(func(r *sdkReq) {
			r.accessKey, r.secret = "AKIDOLDKEY0001", "old-secret"
		}), 200, ""},
		{"a request signed with the wrong secret is refused", with(func(r *sdkReq) { r.secret = "not-the-secret" }), 401, security.ReasonMismatch},
		{"an access key id nobody issued is refused", with(func(r *sdkReq) { r.accessKey = "AKIDUNKNOWN0001" }), 401, security.ReasonMismatch},
		{"a request signed for another region is refused", with(func(r *sdkReq) { r.region = "eu-west-1" }), 401, security.ReasonMismatch},
		{"a request signed for another service is refused", with(func(r *sdkReq) { r.service = "execute-api" }), 401, security.ReasonMismatch},
		{"a request signed six minutes ago is refused as expired", with(func(r *sdkReq) { r.at = now.Add(-6 * time.Minute) }), 401, security.ReasonExpired},
		{"a request signed six minutes ahead is refused as expired", with(func(r *sdkReq) { r.at = now.Add(6 * time.Minute) }), 401, security.ReasonExpired},
		{"a request signed four minutes ago is accepted", with(func(r *sdkReq) { r.at = now.Add(-4 * time.Minute) }), 200, ""},
		{"a body altered after signing is refused", with(func(r *sdkReq) { r.sendBody = []byte(`{"event":"loan.updated","id":"L-2"}`) }), 401, security.ReasonMismatch},
		{"a body altered after signing with x-amz-content-sha256 is refused", with(func(r *sdkReq) {
			r.before = hashHeader
			r.sendBody = []byte(`{"event":"loan.updated","id":"L-2"}`)
		}), 401, security.ReasonMismatch},
		{"a signed x-amz-content-sha256 matching the body is accepted", with(func(r *sdkReq) { r.before = hashHeader }), 200, ""},
		{"UNSIGNED-PAYLOAD is refused", with(func(r *sdkReq) {
			r.before = func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD") }
		}), 401, security.ReasonMalformed},
		{"a signed header changed after signing is refused", with(func(r *sdkReq) {
			r.before = func(r *http.Request) { r.Header.Set("X-Loan-Event", "updated") }
			r.after = func(r *http.Request) { r.Header.Set("X-Loan-Event", "deleted") }
		}), 401, security.ReasonMismatch},
		{"a header added after signing is ignored, since it is not signed", with(func(r *sdkReq) {
			r.after = func(r *http.Request) { r.Header.Set("X-Added-Later", "anything") }
		}), 200, ""},
		{"signed header values are trimmed and their inner spaces collapsed", with(func(r *sdkReq) {
			r.before = func(r *http.Request) { r.Header.Set("X-Loan-Event", "  loan   updated  ") }
		}), 200, ""},
		{"a query string with special characters is canonicalised as the SDK does", with(func(r *sdkReq) {
			r.query = "b=2&a=z%20y&a=%2F~*%21&%C3%A9=%C3%BC&empty=&plus=a%2Bb"
		}), 200, ""},
		{"a query parameter changed after signing is refused", with(func(r *sdkReq) {
			r.query = "a=1"
			r.after = func(r *http.Request) { r.URL.RawQuery = "a=2" }
		}), 401, security.ReasonMismatch},
		{"a query parameter added after signing is refused", with(func(r *sdkReq) {
			r.after = func(r *http.Request) { r.URL.RawQuery = "debug=1" }
		}), 401, security.ReasonMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := srv.URL + tt.req.path
			if tt.req.query != "" {
				u += "?" + tt.req.query
			}
			req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tt.req.before != nil {
				tt.req.before(req)
			}
			sum := sha256.Sum256(body)
			creds := aws.Credentials{AccessKeyID: tt.req.accessKey, SecretAccessKey: tt.req.secret}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]),
				tt.req.service, tt.req.region, tt.req.at); err != nil {
				t.Fatal(err)
			}
			if tt.req.after != nil {
				tt.req.after(req)
			}
			if tt.req.sendBody != nil {
				req.Body, req.ContentLength = nopCloser{bytes.NewReader(tt.req.sendBody)}, int64(len(tt.req.sendBody))
				if req.Header.Get("Content-Length") != "" {
					t.Fatal("the SDK set a Content-Length header; the test would send two lengths")
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (reason %q)", resp.StatusCode, tt.want, obs.last())
			}
			if tt.want == 401 && obs.last() != tt.reason {
				t.Errorf("reason %q, want %q", obs.last(), tt.reason)
			}
		})
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// TestAWSSigV4ResentRequestCarriesTheSameMessageKey: the run of a verified request carries
// its signature as message key, so the store answers a resend within 2×tolerance as a
// duplicate; a request signed at another second is another message.
func TestAWSSigV4ResentRequestCarriesTheSameMessageKey(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	srv, _, runner := startSigV4Gateway(t, now)
	body := []byte(`{"event":"loan.updated"}`)
	send := func(req *http.Request) string {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return runner.lastRun(t).MessageKey
	}
	signed := func(at time.Time) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/pushback/maxwell/events", bytes.NewReader(body))
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: sigv4AccessKey, SecretAccessKey: sigv4Secret},
			req, hex.EncodeToString(sum[:]), "pushbackd", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
		return req
	}
	first := signed(now)
	resent := first.Clone(context.Background())
	resent.Body = nopCloser{bytes.NewReader(body)}
	k1, k2, k3 := send(first), send(resent), send(signed(now.Add(time.Second)))
	if k1 == "" || k1 != k2 {
		t.Errorf("message keys %q then %q, want the same non-empty key", k1, k2)
	}
	if k3 == k1 {
		t.Error("a request signed a second later has the same message key")
	}
}
