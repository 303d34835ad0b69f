package security

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem
	}{
		{"a config without a method", Config{}, []string{"security method is required"}},
		{"an unknown method", Config{Method: "oauth3"}, []string{`unknown security method "oauth3"`}},
		{"basic without username and password", Config{Method: Basic}, []string{"username is required", "password is required"}},
		{"basic with a colon in the username", Config{Method: Basic, Username: "a:b", Password: NewSecret("pw-secret-1")}, []string{"username must not contain ':'"}},
		{"token without token and secret", Config{Method: Token}, []string{"token is required", "secret is required"}},
		{"token with the same header twice", Config{Method: Token, Token: NewSecret("t-secret-1"), TokenSecret: NewSecret("s-secret-1"), TokenHeader: "X-A", SecretHeader: "x-a"},
			[]string{"token_header and secret_header must differ"}},
		{"token with an invalid header name", Config{Method: Token, Token: NewSecret("t-secret-1"), TokenSecret: NewSecret("s-secret-1"), TokenHeader: "X Token"},
			[]string{`token_header "X Token" is not a valid HTTP header name`}},
		{"token with a trailing newline from a secret file", Config{Method: Token, Token: NewSecret("t-secret-1\n"), TokenSecret: NewSecret("s-secret-1")},
			[]string{"token has leading or trailing whitespace"}},
		{"signature without secrets", Config{Method: Signature}, []string{"secrets is required"}},
		{"signature with an empty secret", Config{Method: Signature, Secrets: []Secret{NewSecret("k-secret-1"), {}}}, []string{"secrets[1] is empty"}},
		{"signature with an unknown encoding", Config{Method: Signature, Encoding: "base32", Secrets: secrets("k-secret-1")}, []string{`encoding must be base64 or hex, not "base32"`}},
		{"signature with a whitespace prefix", Config{Method: Signature, Prefix: "sha256= ", Secrets: secrets("k-secret-1")}, []string{"prefix must not start or end with whitespace"}},
		{"standard webhooks without secrets", Config{Method: StandardWebhooks}, []string{"secrets is required"}},
		{"standard webhooks with a secret that is not base64", Config{Method: StandardWebhooks, Secrets: secrets("whsec_not*base64!")}, []string{"secrets[0]: not a whsec_<base64> secret"}},
		{"standard webhooks with an empty key", Config{Method: StandardWebhooks, Secrets: secrets("whsec_")}, []string{"secrets[0]: not a whsec_<base64> secret: the key is empty"}},
		{"standard webhooks with a negative tolerance", Config{Method: StandardWebhooks, Secrets: secrets(whsec1), Tolerance: -time.Second}, []string{"tolerance must not be negative"}},
		{"api key with neither header nor query", Config{Method: APIKey, Keys: secrets("key-secret-1")}, []string{"one of header or query is required"}},
		{"api key with both header and query", Config{Method: APIKey, Header: "X-Key", Query: "key", Keys: secrets("key-secret-1")}, []string{"header and query are mutually exclusive"}},
		{"api key without keys", Config{Method: APIKey, Query: "key"}, []string{"keys is required"}},
		{"api key with a control character in a key", Config{Method: APIKey, Query: "key", Keys: secrets("ok-key-1", "bad\x00key-secret")}, []string{"keys[1] contains control characters"}},
		{"bearer without tokens", Config{Method: Bearer}, []string{"tokens is required"}},
		{"bearer with a token ending in a space", Config{Method: Bearer, Tokens: secrets("tok-secret-1 ")}, []string{"tokens[0] has leading or trailing whitespace"}},
		{"an invalid allow_ips prefix", Config{Method: Bearer, Tokens: secrets("tok-secret-1"), AllowIPs: []netip.Prefix{{}}}, []string{"allow_ips[0] is not a valid CIDR prefix"}},
		{"a tolerance on a signature without a timestamp", Config{Method: Signature, Secrets: secrets("k-secret-1"), Tolerance: time.Minute},
			[]string{"tolerance applies only to timestamped signatures"}},
		{"a timestamp_format on a signature without a timestamp", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampFormat: "rfc3339"},
			[]string{"timestamp_format applies only to timestamped signatures"}},
		{"a signed template that leaves the body out", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: "v0:{timestamp}"},
			[]string{"signed must contain {body}"}},
		{"a signed template that leaves the timestamp out", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: "{body}"},
			[]string{"signed must contain {timestamp}"}},
		{"a signed template with {timestamp} but no timestamp", Config{Method: Signature, Secrets: secrets("k-secret-1"), Signed: "{timestamp}.{body}"},
			[]string{"signed uses {timestamp}, which needs timestamp_header or timestamp_part"}},
		{"a signed template with an unknown placeholder", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: "{ts}.{body}"},
			[]string{"signed: unknown placeholder {ts}"}},
		{"a signed template with {body} twice", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: "{timestamp}{body}{body}"},
			[]string{"signed: {body} appears twice"}},
		{"a signed template with an unclosed brace", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: "{timestamp}.{body"},
			[]string{"signed has a '{' without its '}'"}},
		{"a signed template longer than 256 bytes", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", Signed: strings.Repeat("x", 250) + "{timestamp}{body}"},
			[]string{"signed is 267 bytes long; at most 256"}},
		{"a timestamp_part without signature_part", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampPart: "t"},
			[]string{"timestamp_part needs signature_part"}},
		{"both timestamp_header and timestamp_part", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", TimestampPart: "t", SignaturePart: "v1"},
			[]string{"timestamp_header and timestamp_part are mutually exclusive"}},
		{"the same name for both parts", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampPart: "v1", SignaturePart: "v1"},
			[]string{"signature_part and timestamp_part must differ"}},
		{"a part name with '='", Config{Method: Signature, Secrets: secrets("k-secret-1"), SignaturePart: "v1="},
			[]string{`signature_part "v1=" must be a part name`}},
		{"a prefix with signature parts", Config{Method: Signature, Secrets: secrets("k-secret-1"), SignaturePart: "v1", Prefix: "sha256="},
			[]string{"prefix does not apply with signature_part"}},
		{"an unknown timestamp format", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X-Ts", TimestampFormat: "iso"},
			[]string{`timestamp_format must be unix or rfc3339, not "iso"`}},
		{"an invalid timestamp header name", Config{Method: Signature, Secrets: secrets("k-secret-1"), TimestampHeader: "X Ts"},
			[]string{`timestamp_header "X Ts" is not a valid HTTP header name`}},
		{"a secret id without key_id_header", Config{Method: Signature, Secrets: secrets("k-secret-1"), SecretIDs: []string{"sub-1"}},
			[]string{"secrets[0] has an id, which needs key_id_header"}},
		{"an unknown preset", Config{Preset: "paypal", Secrets: secrets("k-secret-1")}, []string{`unknown preset "paypal" (want one of encompass, snapdocs, github, stripe, slack, shopify, standard_webhooks)`}},
		{"a preset with another method", Config{Preset: "stripe", Method: Bearer, Tokens: secrets("tok-secret-1")}, []string{"preset stripe is method signature, not bearer"}},
		{"a preset without secrets", Config{Preset: "github"}, []string{"secrets is required"}},
		{"several problems at once", Config{Method: Signature, Encoding: "b64", AllowIPs: []netip.Prefix{{}}},
			[]string{"secrets is required", "encoding must be base64 or hex", "allow_ips[0]"}},
	}
	for _, tc := range tests {
		t.Run("New rejects "+tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err == nil {
				t.Fatalf("New succeeded, want errors %q", tc.want)
			}
			if v != nil {
				t.Errorf("New returned a verifier alongside its error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if n := len(strings.Split(msg, "\n")); n != len(tc.want) {
				t.Errorf("error reports %d problems, want %d: %q", n, len(tc.want), msg)
			}
			for _, line := range strings.Split(msg, "\n") {
				if line == "" || line[0] < 'a' || line[0] > 'z' || strings.HasSuffix(line, ".") {
					t.Errorf("problem %q is not a lower-case message without trailing punctuation", line)
				}
			}
			for _, s := range append(allSecrets(), "pw-secret-1", "t-secret-1", "s-secret-1", "k-secret-1", "key-secret-1", "tok-secret-1", "not*base64!", "bad\x00key-secret") {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains secret %q", msg, s)
				}
			}
		})
	}
}

func TestNewAcceptsValidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"basic", basicConfig()},
		{"token with default headers", tokenConfig()},
		{"signature with defaults", signatureConfig()},
		{"signature with hex and a prefix", hexSignatureConfig()},
		{"standard webhooks with the default tolerance", standardWebhooksConfig()},
		{"standard webhooks with a bare base64 secret", Config{Method: StandardWebhooks, Secrets: secrets(strings.TrimPrefix(whsec1, "whsec_"))}},
		{"api key in a header", apiKeyHeaderConfig()},
		{"api key in a query parameter", apiKeyQueryConfig()},
		{"bearer with allow_ips", withAllowIPs(bearerConfig(), "10.0.0.0/8", "::1/128")},
	}
	for _, tc := range tests {
		t.Run("New accepts "+tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if v.Method() != tc.cfg.Method {
				t.Errorf("Method() = %q, want %q", v.Method(), tc.cfg.Method)
			}
		})
	}
}

func TestEveryMethodIsListedAndBuildable(t *testing.T) {
	want := []Method{"basic", "token", "signature", "standard_webhooks", "api_key", "bearer", "aws_sigv4", "jwt", "oauth2"}
	if got := fmt.Sprint(Methods()); got != fmt.Sprint(want) {
		t.Fatalf("Methods() = %v, want %v", got, want)
	}
	cfgs := map[Method]Config{Basic: basicConfig(), Token: tokenConfig(), Signature: signatureConfig(),
		StandardWebhooks: standardWebhooksConfig(), APIKey: apiKeyQueryConfig(), Bearer: bearerConfig(),
		AWSSigV4: sigv4Config(), JWT: jwtConfig(t), OAuth2: oauth2Config()}
	for _, m := range Methods() {
		if _, err := New(cfgs[m]); err != nil {
			t.Errorf("New(%s): %v", m, err)
		}
	}
	if len(Reasons()) != 6 {
		t.Errorf("Reasons() = %v, want the five verdicts and rate_limited", Reasons())
	}
}

func TestChallenge(t *testing.T) {
	want := map[Method]string{
		Basic:  `Basic realm="pushbackd"`,
		Bearer: `Bearer realm="pushbackd"`,
		JWT:    `Bearer realm="pushbackd"`,
		OAuth2: `Bearer realm="pushbackd"`,
	}
	for _, m := range append(Methods(), "unknown") {
		t.Run(string(m)+" challenges with "+fmt.Sprintf("%q", want[m]), func(t *testing.T) {
			if got := Challenge(m); got != want[m] {
				t.Errorf("Challenge(%q) = %q, want %q", m, got, want[m])
			}
		})
	}
}

func TestFailureError(t *testing.T) {
	f := &Failure{Method: Signature, Reason: ReasonMismatch, Detail: "no configured secret matches header Pushback-Signature"}
	if got, want := f.Error(), "signature: mismatch: no configured secret matches header Pushback-Signature"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&Failure{Method: Basic, Reason: ReasonMissing}).Error(), "basic: missing"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const raw = "hunter2-very-secret"
	s := NewSecret(raw)
	type wrapper struct {
		Name string
		Key  Secret
		Ptr  *Secret
	}
	w := wrapper{Name: "n", Key: s, Ptr: &s}
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json escapes < and > in strings by default, so compare decoded values.
	var decoded map[string]string
	if err := json.Unmarshal(js, &decoded); err != nil {
		t.Fatal(err)
	}
	text, _ := s.MarshalText()
	yml, _ := s.MarshalYAML()
	outputs := map[string]string{
		"String":      s.String(),
		"GoString":    s.GoString(),
		"%v":          fmt.Sprintf("%v", s),
		"%+v":         fmt.Sprintf("%+v", w),
		"%#v":         fmt.Sprintf("%#v", w),
		"%s":          fmt.Sprintf("%s", s),
		"%q":          fmt.Sprintf("%q", s),
		"%x":          fmt.Sprintf("%x", s),
		"%X":          fmt.Sprintf("%X", s),
		"%d":          fmt.Sprintf("%d", s),
		"Println":     fmt.Sprintln(s, &s),
		"MarshalJSON": decoded["Key"] + " " + decoded["Ptr"] + " " + string(js),
		"MarshalText": string(text),
		"MarshalYAML": fmt.Sprint(yml),
	}
	hexRaw := fmt.Sprintf("%x", raw)
	for name, out := range outputs {
		if strings.Contains(out, raw) || strings.Contains(strings.ToLower(out), hexRaw) || strings.Contains(out, "104 117 110") {
			t.Errorf("%s reveals the secret: %q", name, out)
		}
		if !strings.Contains(out, "<secret>") {
			t.Errorf("%s = %q, want the <secret> placeholder", name, out)
		}
	}
	if string(s.Reveal()) != raw {
		t.Errorf("Reveal() = %q, want the raw bytes", s.Reveal())
	}
	s.Reveal()[0] = 'X'
	if string(s.Reveal()) != raw {
		t.Errorf("changing Reveal's result changed the secret")
	}
	if s.IsZero() || !NewSecret("").IsZero() || !(Secret{}).IsZero() {
		t.Errorf("IsZero is wrong")
	}
}
