package security

import (
	"strings"
	"testing"
)

func TestPlaceholdersNameWhatSignSetsAndHoldNoSecret(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		want   string // name=value pairs, headers then query, as the command shows them
		signed bool
	}{
		{"basic asks for credentials", basicConfig(), "Authorization=Basic $CREDENTIALS", false},
		{"bearer asks for a token", bearerConfig(), "Authorization=Bearer $TOKEN", false},
		{"jwt asks for a bearer token", Config{Method: JWT}, "Authorization=Bearer $TOKEN", false},
		{"token names both default headers", tokenConfig(), "Access-Secret=$ACCESS_SECRET Access-Token=$ACCESS_TOKEN", false},
		{"signature names the default header", signatureConfig(), "Pushback-Signature=$PUSHBACK_SIGNATURE", true},
		{"a hex signature names its configured header", hexSignatureConfig(), "X-Hub-Signature-256=$X_HUB_SIGNATURE_256", true},
		{"a preset names the provider's header", Config{Preset: "github", Secrets: secrets(sigKey1)}, "X-Hub-Signature-256=$X_HUB_SIGNATURE_256", true},
		{"encompass keeps its spelling of the key id header", Config{Preset: "encompass", Secrets: secrets(sigKey1), SecretIDs: []string{"sub-a"}},
			"Elli-Signature=$ELLI_SIGNATURE Elli-SubscriptionId=$ELLI_SUBSCRIPTIONID", true},
		{"standard webhooks names its three headers", standardWebhooksConfig(),
			"Webhook-Id=$WEBHOOK_ID Webhook-Signature=$WEBHOOK_SIGNATURE Webhook-Timestamp=$WEBHOOK_TIMESTAMP", true},
		{"an api key in a header names it", apiKeyHeaderConfig(), "X-Api-Key=$X_API_KEY", false},
		{"an api key in the query names the parameter", apiKeyQueryConfig(), "?api_key=$API_KEY", false},
		{"aws_sigv4 names the headers its signature is in", sigv4Config(),
			"Authorization=$AUTHORIZATION X-Amz-Content-Sha256=$X_AMZ_CONTENT_SHA256 X-Amz-Date=$X_AMZ_DATE", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, signed := Placeholders(tc.cfg)
			var parts []string
			for _, p := range got {
				s := p.Name + "=" + p.Value
				if p.Query {
					s = "?" + s
				}
				parts = append(parts, s)
				for _, secret := range []string{basicPassword, tokenValue, tokenSecret, sigKey1, whsec1, apiKey1, bearer1} {
					if strings.Contains(p.Value, secret) {
						t.Errorf("%s carries a secret: %q", p.Name, p.Value)
					}
				}
			}
			if s := strings.Join(parts, " "); s != tc.want || signed != tc.signed {
				t.Errorf("Placeholders = %q, signed %v; want %q, %v", s, signed, tc.want, tc.signed)
			}
		})
	}
}
