package security

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignProducesWhatVerifyAccepts(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		wantHeader []string
		wantQuery  []string
	}{
		{"basic sets Authorization", basicConfig(), []string{"Authorization"}, nil},
		{"token sets both default headers", tokenConfig(), []string{"Access-Token", "Access-Secret"}, nil},
		{"token sets configured headers", Config{Method: Token, Token: NewSecret(tokenValue), TokenSecret: NewSecret(tokenSecret), TokenHeader: "X-T", SecretHeader: "X-S"}, []string{"X-T", "X-S"}, nil},
		{"signature sets the default header", signatureConfig(), []string{"Pushback-Signature"}, nil},
		{"hex signature sets its configured header", hexSignatureConfig(), []string{"X-Hub-Signature-256"}, nil},
		{"standard webhooks sets the three webhook headers", standardWebhooksConfig(), []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}, nil},
		{"api key in a header sets that header", apiKeyHeaderConfig(), []string{"X-Api-Key"}, nil},
		{"api key in the query sets the parameter", apiKeyQueryConfig(), nil, []string{"api_key"}},
		{"bearer sets Authorization", bearerConfig(), []string{"Authorization"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, q, err := Sign(tc.cfg, body, "msg_fixed", testNow)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if len(h) != len(tc.wantHeader) || len(q) != len(tc.wantQuery) {
				t.Errorf("Sign = headers %v, query %v; want headers %v, query %v", keys(h), keys(q), tc.wantHeader, tc.wantQuery)
			}
			for _, k := range tc.wantHeader {
				if h.Get(k) == "" {
					t.Errorf("Sign did not set header %s", k)
				}
			}
			for _, k := range tc.wantQuery {
				if q.Get(k) == "" {
					t.Errorf("Sign did not set query parameter %s", k)
				}
			}
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(&Request{Header: h, Query: q, Body: body, Now: testNow}); err != nil {
				t.Errorf("Verify of Sign's output: %v", err)
			}
		})
	}
}

func keys[M ~map[string][]string](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSignGeneratesAMessageIDAndUsesTheClockWhenNotGiven(t *testing.T) {
	before := time.Now().Unix()
	h1, _, err := Sign(standardWebhooksConfig(), body, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	h2, _, _ := Sign(standardWebhooksConfig(), body, "", time.Time{})
	id := h1.Get("webhook-id")
	if !regexp.MustCompile(`^msg_[0-9a-f]{32}$`).MatchString(id) || id == h2.Get("webhook-id") {
		t.Errorf("generated ids %q and %q, want two different msg_<32 hex>", id, h2.Get("webhook-id"))
	}
	v, _ := New(standardWebhooksConfig())
	if err := v.Verify(&Request{Header: h1, Body: body}); err != nil {
		t.Errorf("Verify with the real clock: %v", err)
	}
	ts, err := strconv.ParseInt(h1.Get("webhook-timestamp"), 10, 64)
	if after := time.Now().Unix(); err != nil || ts < before || ts > after {
		t.Errorf("webhook-timestamp %q is not the unix time between %d and %d", h1.Get("webhook-timestamp"), before, after)
	}
}

func TestSignRejectsInvalidConfigWithoutRevealingSecrets(t *testing.T) {
	_, _, err := Sign(Config{Method: Signature, Encoding: "base32", Secrets: secrets(sigKey1)}, body, "", testNow)
	if err == nil || !strings.Contains(err.Error(), "encoding must be base64 or hex") || strings.Contains(err.Error(), sigKey1) {
		t.Errorf("Sign error = %v, want the encoding problem without the secret", err)
	}
}

// TestStandardWebhooksPublishedExample uses the example published with the specification
// and the svix libraries, independent of this package and of openssl.
func TestStandardWebhooksPublishedExample(t *testing.T) {
	cfg := Config{Method: StandardWebhooks, Secrets: secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}
	payload := []byte(`{"test": 2432232314}`)
	ts := time.Unix(1614265330, 0)
	const want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	h, _, err := Sign(cfg, payload, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Get("webhook-signature"); got != want {
		t.Errorf("webhook-signature = %q, want the published %q", got, want)
	}
	v, _ := New(cfg)
	if err := v.Verify(&Request{Header: h, Body: payload, Now: ts}); err != nil {
		t.Errorf("Verify of the published example: %v", err)
	}
}
