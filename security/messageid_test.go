package security

import (
	"net/http"
	"testing"
	"time"
)

func TestMessageIDIsRememberedForTwiceTheTolerance(t *testing.T) {
	whsec := []Secret{NewSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}
	for _, tc := range []struct {
		name     string
		cfg      Config
		header   http.Header
		id       string
		remember time.Duration
	}{
		{"standard webhooks with the default tolerance", Config{Method: StandardWebhooks, Secrets: whsec},
			http.Header{"Webhook-Id": {"msg_1"}}, "msg_1", 10 * time.Minute},
		{"standard webhooks with a tolerance of one minute", Config{Method: StandardWebhooks, Secrets: whsec, Tolerance: time.Minute},
			http.Header{"Webhook-Id": {" msg_1 "}}, "msg_1", 2 * time.Minute},
		{"standard webhooks without an id", Config{Method: StandardWebhooks, Secrets: whsec},
			http.Header{}, "", 0},
		{"a method without message ids", Config{Method: Bearer, Tokens: []Secret{NewSecret("t")}},
			http.Header{"Webhook-Id": {"msg_1"}}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, remember := v.MessageID(&Request{Header: tc.header})
			if id != tc.id || remember != tc.remember {
				t.Fatalf("MessageID = %q, %v; want %q, %v", id, remember, tc.id, tc.remember)
			}
		})
	}
}
