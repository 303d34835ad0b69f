package main

import (
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/internal/sigfixtures"
)

// `sign` must print exactly the headers a provider sends, as openssl computed them
// (testdata/signatures/expected.tsv), for every preset and for the timestamped signature
// spelled out key by key.
func TestSignPrintsEveryMethodsHeadersAsOpenSSLComputedThem(t *testing.T) {
	fixtures, err := sigfixtures.Load("../../testdata/signatures")
	if err != nil {
		t.Fatal(err)
	}
	type want func(f sigfixtures.Fixture) []string
	kinds := map[string][]struct {
		name  string
		args  func(f sigfixtures.Fixture) []string
		lines want
	}{
		"github": {{"preset github", func(f sigfixtures.Fixture) []string { return []string{"-preset", "github"} },
			func(f sigfixtures.Fixture) []string { return []string{"X-Hub-Signature-256: " + f.Value} }}},
		"shopify": {{"preset shopify", func(f sigfixtures.Fixture) []string { return []string{"-preset", "shopify"} },
			func(f sigfixtures.Fixture) []string { return []string{"X-Shopify-Hmac-Sha256: " + f.Value} }}},
		"stripe": {{"preset stripe", func(f sigfixtures.Fixture) []string { return []string{"-preset", "stripe", "-timestamp", f.Timestamp} },
			func(f sigfixtures.Fixture) []string { return []string{"Stripe-Signature: " + f.Value} }}},
		"slack": {
			{"preset slack", func(f sigfixtures.Fixture) []string { return []string{"-preset", "slack", "-timestamp", f.Timestamp} },
				func(f sigfixtures.Fixture) []string {
					return []string{"X-Slack-Request-Timestamp: " + f.Timestamp, "X-Slack-Signature: " + f.Value}
				}},
			{"slack's scheme spelled out", func(f sigfixtures.Fixture) []string {
				return []string{"-header", "X-Sig", "-timestamp-header", "X-Ts", "-signed", "v0:{timestamp}:{body}", "-encoding", "hex", "-prefix", "v0=", "-timestamp", f.Timestamp}
			}, func(f sigfixtures.Fixture) []string { return []string{"X-Sig: " + f.Value, "X-Ts: " + f.Timestamp} }},
		},
		"snapdocs": {{"preset snapdocs", func(f sigfixtures.Fixture) []string {
			return []string{"-preset", "snapdocs", "-timestamp", f.Timestamp}
		},
			func(f sigfixtures.Fixture) []string {
				return []string{"X-Authorization-Signature: " + f.Value, "X-Authorization-Timestamp: " + f.Timestamp}
			}}},
		"standard_webhooks": {{"method standard_webhooks", func(f sigfixtures.Fixture) []string {
			return []string{"-method", "standard_webhooks", "-msg-id", f.MsgID, "-timestamp", f.Timestamp}
		}, func(f sigfixtures.Fixture) []string {
			return []string{"Webhook-Id: " + f.MsgID, "Webhook-Signature: " + f.Value, "Webhook-Timestamp: " + f.Timestamp}
		}}},
		"base64": {{"preset encompass with a subscription id", func(f sigfixtures.Fixture) []string { return []string{"-preset", "encompass", "-key-id", "sub-7"} },
			func(f sigfixtures.Fixture) []string {
				return []string{"Elli-Signature: " + f.Value, "Elli-SubscriptionId: sub-7"}
			}},
			{"a key id header of one's own keeps its spelling", func(f sigfixtures.Fixture) []string {
				return []string{"-header", "X-SIG", "-key-id-header", "X-Key-ID", "-key-id", "k1"}
			}, func(f sigfixtures.Fixture) []string { return []string{"X-Key-ID: k1", "X-SIG: " + f.Value} }},
		},
	}
	checked := map[string]int{}
	for _, f := range fixtures {
		if f.File == "one-mib.bin" {
			continue
		}
		for _, k := range kinds[f.Kind] {
			t.Run(f.File+" with "+k.name, func(t *testing.T) {
				t.Setenv("PUSHBACKD_TEST_SIGNING_KEY", f.Key)
				args := append([]string{"sign", "-secret-env", "PUSHBACKD_TEST_SIGNING_KEY", "-file", "../../testdata/signatures/" + f.File}, k.args(f)...)
				code, out, errOut := runCLI(t, "", args...)
				if want := strings.Join(k.lines(f), "\n") + "\n"; code != 0 || out != want {
					t.Fatalf("exit %d, printed\n%s\nwant\n%s%s", code, out, want, errOut)
				}
			})
			checked[f.Kind]++
		}
	}
	for kind := range kinds {
		if checked[kind] < 5 {
			t.Errorf("only %d %s fixtures checked", checked[kind], kind)
		}
	}
}

func TestSignRefusesWhatItCannotSign(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_SIGNING_KEY", "k-secret")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an unknown preset", []string{"-preset", "paypal"}, 2, `unknown preset "paypal"`},
		{"a signed template without the body", []string{"-timestamp-header", "X-Ts", "-signed", "{timestamp}"}, 2, "signed must contain {body}"},
		{"a timestamp that is neither form", []string{"-preset", "stripe", "-timestamp", "yesterday"}, 2, "neither unix seconds nor an RFC 3339 time"},
		{"an encoding that does not exist", []string{"-encoding", "base32"}, 2, "-encoding must be base64 or hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "body", append([]string{"sign", "-secret-env", "PUSHBACKD_TEST_SIGNING_KEY"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "k-secret") {
				t.Fatalf("exit %d: %s", code, errOut)
			}
		})
	}
}
