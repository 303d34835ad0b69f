package security

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedactRemovesEveryCredentialTheSenderSent(t *testing.T) {
	body := []byte(`{"a":1}`)
	cfgs := []Config{
		{Method: Basic, Username: "u", Password: NewSecret("pa:ss-word")},
		{Method: Token, Token: NewSecret("tok-value-1"), TokenSecret: NewSecret("sec-value-1")},
		{Method: Token, TokenHeader: "X-Partner-Token", SecretHeader: "X-Partner-Secret", Token: NewSecret("tok-value-2"), TokenSecret: NewSecret("sec-value-2")},
		{Method: Signature, Header: "Elli-Signature", Secrets: secrets("sig-key-1")},
		{Method: StandardWebhooks, Secrets: secrets(whsec1)},
		{Method: APIKey, Header: "X-API-Key", Keys: secrets("api-key-value")},
		{Method: APIKey, Query: "key", Keys: secrets("api-key-query")},
		{Method: Bearer, Tokens: secrets("bearer-value")},
	}
	for _, cfg := range cfgs {
		t.Run(string(cfg.Method), func(t *testing.T) {
			h, q, err := Sign(cfg, body, "msg_1", time.Unix(1700000000, 0))
			if err != nil {
				t.Fatal(err)
			}
			h.Set("Content-Type", "application/json")
			// The CGI spelling of the same credential, as some senders send it.
			cgi := http.Header{}
			for k, v := range h {
				if k != "Content-Type" && k != "Webhook-Id" && k != "Webhook-Timestamp" {
					cgi[cgiName(k)] = v
				}
			}
			for k, v := range cgi {
				h[k] = v
			}
			var sent []string
			for k, v := range h {
				if k != "Content-Type" && !strings.HasPrefix(k, "Webhook-I") && k != "Webhook-Timestamp" && !strings.HasPrefix(k, "HTTP_WEBHOOK_I") && k != "HTTP_WEBHOOK_TIMESTAMP" {
					sent = append(sent, v...)
				}
			}
			sent = append(sent, q["key"]...)
			got := cfg.RedactHeaders(h)
			recorded := ""
			for k, v := range got {
				recorded += k + ": " + strings.Join(v, ",") + "\n"
			}
			recorded += cfg.RedactQuery(q)
			for _, s := range sent {
				if strings.Contains(recorded, s) {
					t.Errorf("recorded request still holds %q:\n%s", s, recorded)
				}
			}
			if got["Content-Type"][0] != "application/json" {
				t.Error("a harmless header was redacted")
			}
		})
	}
	if got := (Config{Method: Bearer}).RedactQuery(url.Values{"a": {"1"}}); got != "a=1" {
		t.Errorf("query without credentials changed: %q", got)
	}
}
