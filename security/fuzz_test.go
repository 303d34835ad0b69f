package security

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzVerifiers covers every method, with an allow list on one of them.
func fuzzVerifiers(t testing.TB) []Verifier {
	cfgs := []Config{basicConfig(), tokenConfig(), signatureConfig(), hexSignatureConfig(),
		standardWebhooksConfig(), apiKeyHeaderConfig(), apiKeyQueryConfig(), withAllowIPs(bearerConfig(), "10.0.0.0/8")}
	out := make([]Verifier, len(cfgs))
	for i, c := range cfgs {
		v, err := New(c)
		if err != nil {
			t.Fatalf("New(%s): %v", c.Method, err)
		}
		out[i] = v
	}
	return out
}

// FuzzVerify feeds arbitrary credentials and bodies to every method. Verify must not panic,
// must return nil or a *Failure with a known reason and its own method, and the failure's
// text must never carry a configured secret or the value that was sent.
func FuzzVerify(f *testing.F) {
	now := testNow.Unix()
	ts := strconv.FormatInt(now, 10)
	id := "msg_seed"
	good := b64mac(sigKey1, body)
	f.Add(basicAuth(basicUser, basicPassword), tokenValue, tokenSecret, good, id, ts, swSig(whsec1Key(), id, now, body), apiKey1, "10.1.2.3", body)
	f.Add("Bearer "+bearer1, "", "", good+"\n", id, "1e9", "v1, v1a,abc v1,"+strings.Repeat("A", 44), "", "::ffff:10.0.0.1", body)
	f.Add("Basic ====", " ", "\x00", "sha256=", "", "-1", "v1", "\xff\xfe", "", []byte{})
	f.Add("basic "+base64.StdEncoding.EncodeToString([]byte(":")), "x", "y", strings.Repeat("=", 64), id, "99999999999999999999", ",,,", "a&b=c", "fe80::1%eth0", []byte("\x00\xff"))

	verifiers := fuzzVerifiers(f)
	known := Reasons()
	f.Fuzz(func(t *testing.T, authz, token, secret, sig, whID, whTS, whSig, query, ip string, payload []byte) {
		h := http.Header{}
		for k, v := range map[string]string{
			"Authorization": authz, "Access-Token": token, "HTTP_ACCESS_SECRET": secret,
			"Pushback-Signature": sig, "X-Hub-Signature-256": sig, "X-Api-Key": query,
			"webhook-id": whID, "webhook-timestamp": whTS, "webhook-signature": whSig,
		} {
			h[http.CanonicalHeaderKey(k)] = []string{v}
		}
		addr, _ := netip.ParseAddr(ip) // invalid stays the zero Addr, as an unknown peer
		req := &Request{Header: h, Query: url.Values{"api_key": {query}}, Body: payload, RemoteIP: addr, Now: testNow}
		sent := []string{authz, token, secret, sig, whSig, query}
		for _, v := range verifiers {
			err := v.Verify(req)
			if err == nil {
				continue
			}
			fl, ok := err.(*Failure)
			if !ok || !errors.As(err, &fl) {
				t.Fatalf("%s: Verify returned %T %v, want *Failure", v.Method(), err, err)
			}
			if !slices.Contains(known, fl.Reason) || fl.Method != v.Method() || fl.Detail == "" {
				t.Fatalf("%s: bad failure %+v", v.Method(), *fl)
			}
			msg := fl.Error()
			for _, s := range append(allSecrets(), sent...) {
				if len(strings.TrimSpace(s)) >= 12 && strings.Contains(msg, strings.TrimSpace(s)) {
					t.Fatalf("%s: failure %q contains the credential %q", v.Method(), msg, s)
				}
			}
		}
	})
}

// FuzzSignRoundTrip checks that whatever Sign produces for a valid config, Verify accepts:
// the sender's and the receiver's view of every wire format agree.
func FuzzSignRoundTrip(f *testing.F) {
	f.Add("s3cret", []byte(`{"a":1}`), "msg_1", int64(1700000000))
	f.Add("Zoë 🏠", []byte{}, "", int64(0))
	f.Add("a:b:c", []byte("\x00\r\n"), "msg.with.dots", int64(-1))
	f.Fuzz(func(t *testing.T, secret string, payload []byte, msgID string, unix int64) {
		when := time.Unix(unix%(1<<40), 0)
		if unix < 0 {
			if _, _, err := Sign(Config{Method: StandardWebhooks, Secrets: secrets(whsec1)}, payload, "m", when); err == nil {
				t.Fatalf("Sign accepted a time before 1970")
			}
			when = time.Unix(-unix%(1<<40), 0)
		}
		cfgs := []Config{
			{Method: Basic, Username: "u", Password: NewSecret(secret)},
			{Method: Token, Token: NewSecret(secret), TokenSecret: NewSecret(secret + "2")},
			{Method: Signature, Secrets: secrets(secret)},
			{Method: Signature, Encoding: "hex", Prefix: "sha256=", Secrets: secrets(secret)},
			{Method: StandardWebhooks, Secrets: secrets("whsec_" + base64.StdEncoding.EncodeToString([]byte(secret)))},
			{Method: APIKey, Query: "k", Keys: secrets(secret)},
			{Method: APIKey, Header: "X-K", Keys: secrets(secret)},
			{Method: Bearer, Tokens: secrets(secret)},
		}
		for _, cfg := range cfgs {
			v, err := New(cfg)
			if err != nil {
				if _, _, serr := Sign(cfg, payload, msgID, when); serr == nil {
					t.Fatalf("%s: Sign accepted a config New rejects", cfg.Method)
				}
				continue
			}
			h, q, err := Sign(cfg, payload, msgID, when)
			if err != nil && cfg.Method == StandardWebhooks && unsendable(msgID) != "" {
				continue // an id that cannot travel in a header is refused, not signed
			}
			if err != nil {
				t.Fatalf("%s: Sign: %v", cfg.Method, err)
			}
			if err := v.Verify(&Request{Header: h, Query: q, Body: payload, Now: when}); err != nil {
				t.Fatalf("%s: Verify of Sign's output: %v", cfg.Method, err)
			}
		}
	})
}
