package security

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerifyOverTheWire sends raw request bytes over a loopback connection, so header names
// arrive exactly as odd senders spell them and pass through net/http's real parsing and
// canonicalisation (HTTP_ACCESS_TOKEN becomes Http_access_token, for instance).
func TestVerifyOverTheWire(t *testing.T) {
	now := time.Now().Unix()
	id := "msg_wire"
	tests := []struct {
		name    string
		cfg     Config
		target  string
		headers []string
		body    []byte
		want    Reason
	}{
		{"token accepts the literal HTTP_ACCESS_TOKEN and HTTP_ACCESS_SECRET names", tokenConfig(), "/",
			[]string{"HTTP_ACCESS_TOKEN: " + tokenValue, "HTTP_ACCESS_SECRET: " + tokenSecret}, nil, ""},
		{"token accepts the CGI names in lower case", tokenConfig(), "/",
			[]string{"http_access_token: " + tokenValue, "Http_Access_Secret: " + tokenSecret}, nil, ""},
		{"token accepts its default names in upper case", tokenConfig(), "/",
			[]string{"ACCESS-TOKEN: " + tokenValue, "access-secret: " + tokenSecret}, nil, ""},
		{"token rejects a wrong secret sent with the CGI name", tokenConfig(), "/",
			[]string{"HTTP_ACCESS_TOKEN: " + tokenValue, "HTTP_ACCESS_SECRET: wrong-secret"}, nil, ReasonMismatch},
		{"signature accepts the header name in odd case", signatureConfig(), "/",
			[]string{"pUsHbAcK-sIgNaTuRe: " + b64mac(sigKey1, body)}, body, ""},
		{"signature accepts trailing spaces after the value", signatureConfig(), "/",
			[]string{"Pushback-Signature:   " + b64mac(sigKey1, body) + "   "}, body, ""},
		{"signature accepts a configured CGI-style header name", Config{Method: Signature, Header: "PUSHBACK_SIGNATURE", Secrets: secrets(sigKey1)}, "/",
			[]string{"Pushback_Signature: " + b64mac(sigKey1, body)}, body, ""},
		{"signature rejects a signature of another body", signatureConfig(), "/",
			[]string{"PUSHBACK-SIGNATURE: " + b64mac(sigKey1, []byte("{}"))}, body, ReasonMismatch},
		{"hex signature accepts GitHub's X-Hub-Signature-256 in lower case", hexSignatureConfig(), "/",
			[]string{"x-hub-signature-256: sha256=" + hex.EncodeToString(mac(sigKey1, body))}, body, ""},
		{"basic accepts the scheme in upper case", basicConfig(), "/",
			[]string{"authorization: BASIC " + strings.TrimPrefix(basicAuth(basicUser, basicPassword), "Basic ")}, nil, ""},
		{"basic rejects a Bearer token", basicConfig(), "/",
			[]string{"Authorization: Bearer " + bearer1}, nil, ReasonMalformed},
		{"standard webhooks accepts upper-case header names", standardWebhooksConfig(), "/",
			[]string{"WEBHOOK-ID: " + id, "WEBHOOK-TIMESTAMP: " + strconv.FormatInt(now, 10), "WEBHOOK-SIGNATURE: " + swSig(whsec1Key(), id, now, body)}, body, ""},
		{"standard webhooks rejects a stale message", standardWebhooksConfig(), "/",
			[]string{"webhook-id: " + id, "webhook-timestamp: " + strconv.FormatInt(now-3600, 10), "webhook-signature: " + swSig(whsec1Key(), id, now-3600, body)}, body, ReasonExpired},
		{"stripe accepts its header in lower case with spaces after the commas", stripeConfig(), "/",
			[]string{"stripe-signature: " + strings.ReplaceAll(stripeHeader(stripeKey, now, body), ",", ", ")}, body, ""},
		{"stripe refuses a message an hour old", stripeConfig(), "/",
			[]string{"Stripe-Signature: " + stripeHeader(stripeKey, now-3600, body)}, body, ReasonExpired},
		{"slack accepts its headers in upper case", Config{Preset: "slack", Secrets: secrets(slackKey)}, "/",
			[]string{"X-SLACK-SIGNATURE: " + slackHeaders(slackKey, now, body).Get("X-Slack-Signature"), "X-SLACK-REQUEST-TIMESTAMP: " + strconv.FormatInt(now, 10)}, body, ""},
		{"encompass picks the key named by Elli-SubscriptionId", Config{Preset: "encompass", Secrets: secrets(sigKey1, sigKey2), SecretIDs: []string{"sub-1", "sub-2"}}, "/",
			[]string{"elli-signature: " + b64mac(sigKey2, body), "elli-subscriptionid: sub-2"}, body, ""},
		{"api key accepts the key in the query string", apiKeyQueryConfig(), "/pushback/acme/x?api_key=" + apiKey1, nil, nil, ""},
		{"api key accepts the key in its header in lower case", apiKeyHeaderConfig(), "/", []string{"x-api-key: " + apiKey2}, nil, ""},
		{"api key rejects a query key when the endpoint wants a header", apiKeyHeaderConfig(), "/?X-Api-Key=" + apiKey1, nil, nil, ReasonMissing},
		{"allow_ips accepts the loopback peer", withAllowIPs(bearerConfig(), "127.0.0.0/8", "::1/128"), "/",
			[]string{"Authorization: Bearer " + bearer1}, nil, ""},
		{"allow_ips rejects a loopback peer outside the list", withAllowIPs(bearerConfig(), "10.0.0.0/8"), "/",
			[]string{"Authorization: Bearer " + bearer1}, nil, ReasonIPDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(verifyHandler(v))
			defer srv.Close()
			resp := rawPost(t, srv.Listener.Addr().String(), tc.target, tc.headers, tc.body)
			got := Reason(resp.Header.Get("X-Test-Reason"))
			if tc.want == "" && resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d (%s), want 204", resp.StatusCode, got)
			}
			if tc.want != "" && (resp.StatusCode != http.StatusUnauthorized || got != tc.want) {
				t.Fatalf("status %d reason %q, want 401 %q", resp.StatusCode, got, tc.want)
			}
			if tc.want != "" && resp.Header.Get("WWW-Authenticate") != Challenge(tc.cfg.Method) {
				t.Errorf("WWW-Authenticate = %q, want %q", resp.Header.Get("WWW-Authenticate"), Challenge(tc.cfg.Method))
			}
		})
	}
}

// verifyHandler does what the gateway does: read the body, resolve the peer, verify, and
// answer 401 with the method's challenge. The reason goes back in a test-only header.
func verifyHandler(v Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		err = v.Verify(&Request{Header: r.Header, Query: r.URL.Query(), Body: b, RemoteIP: ap.Addr()})
		var f *Failure
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.As(err, &f):
			if c := Challenge(f.Method); c != "" {
				w.Header().Set("WWW-Authenticate", c)
			}
			w.Header().Set("X-Test-Reason", string(f.Reason))
			w.WriteHeader(http.StatusUnauthorized)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

func rawPost(t *testing.T, addr, target string, headers []string, body []byte) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", target, addr, len(body))
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
