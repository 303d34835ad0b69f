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
// validHeaderValue: as single sees it, v arrives intact and non-empty.
func validHeaderValue(v string) bool { return v != "" && unsendable(v) == "" }

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
			{Preset: "stripe", Secrets: secrets(secret)},
			{Preset: "slack", Secrets: secrets(secret)},
			{Preset: "snapdocs", Secrets: secrets(secret)},
			{Preset: "encompass", Secrets: secrets(secret, secret+"2"), SecretIDs: []string{msgID, ""}},
			{Method: Signature, TimestampHeader: "X-T", Signed: "{body}" + msgID + "{timestamp}", Secrets: secrets(secret)},
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
			if cfg.Preset == "encompass" && !validHeaderValue(msgID) {
				continue // an id HTTP could not carry: the round trip is not over HTTP here
			}
			if err != nil {
				t.Fatalf("%s: Sign: %v", cfg.Method, err)
			}
			r := &Request{Header: h, Query: q, Body: payload, Now: when}
			if err := v.Verify(r); err != nil {
				t.Fatalf("%s %s: Verify of Sign's output: %v", cfg.Method, cfg.Preset, err)
			}
			if id, remember := v.MessageID(r); Timestamped(cfg) != (id != "" && remember > 0) {
				t.Fatalf("%s %s: message id %q for %v, timestamped %v", cfg.Method, cfg.Preset, id, remember, Timestamped(cfg))
			}
		}
	})
}

// FuzzTimestampedSignatureHeaders feeds arbitrary signature, timestamp and key-id headers
// to the timestamped and keyed presets. Verify must not panic, must answer nil or a
// *Failure of a known reason naming the signature method, must never quote what was sent,
// and a correct Stripe signature must still verify wherever junk parts surround it.
func FuzzTimestampedSignatureHeaders(f *testing.F) {
	now := testNow.Unix()
	good := stripeHeader(stripeKey, now, body)
	f.Add(good, "", "", "", []byte(nil))
	f.Add("t=1,v1=,v1=zz,,=,t=", strconv.FormatInt(now, 10), "2021-12-17T19:08:59Z", "sub-a", []byte("x"))
	f.Add("v0="+strings.Repeat("a", 64), "99999999999999999999", "2021-13-45T99:99:99Z", "", []byte(","))
	f.Add(strings.Repeat("v1=00,", 20), "-1", "", "sub-a\x00", []byte("t=1"))
	f.Add("t = 1 , v1 = x", "1e9", "0000-01-01T00:00:00Z", " ", []byte("=="))

	cfgs := []Config{
		stripeConfig(),
		{Preset: "slack", Secrets: secrets(slackKey)},
		{Preset: "snapdocs", Secrets: secrets(snapdocsKey)},
		{Preset: "encompass", Secrets: secrets(sigKey1, sigKey2), SecretIDs: []string{"sub-a", ""}},
	}
	var verifiers []Verifier
	for _, c := range cfgs {
		v, err := New(c)
		if err != nil {
			f.Fatal(err)
		}
		verifiers = append(verifiers, v)
	}
	stripe := verifiers[0]
	known := Reasons()
	f.Fuzz(func(t *testing.T, sig, ts, iso, keyID string, junk []byte) {
		h := http.Header{}
		for _, name := range []string{"Stripe-Signature", "X-Slack-Signature", "X-Authorization-Signature", "Elli-Signature"} {
			h[name] = []string{sig}
		}
		h["X-Slack-Request-Timestamp"] = []string{ts}
		h["X-Authorization-Timestamp"] = []string{iso}
		h["Elli-Subscriptionid"] = []string{keyID}
		req := &Request{Header: h, Body: body, Now: testNow}
		for _, v := range verifiers {
			err := v.Verify(req)
			if err == nil {
				continue
			}
			fl, ok := err.(*Failure)
			if !ok || !slices.Contains(known, fl.Reason) || fl.Method != Signature || fl.Detail == "" {
				t.Fatalf("bad failure %T %v", err, err)
			}
			for _, s := range []string{sig, ts, iso, keyID, stripeKey, slackKey, snapdocsKey, sigKey1} {
				if len(strings.TrimSpace(s)) >= 12 && strings.Contains(fl.Error(), strings.TrimSpace(s)) {
					t.Fatalf("failure %q quotes %q", fl.Error(), s)
				}
			}
			_, _ = v.MessageID(req) // must not panic either
		}
		// Junk parts without a t around a good header: still exactly that message.
		j := strings.ReplaceAll(strings.ReplaceAll(string(junk), "t=", "x="), "\x00", "")
		for _, hv := range []string{good + "," + j, j + "," + good} {
			if strings.Count(hv, "v1=") > maxSignatureParts || strings.Contains(j, "t ") || strings.Contains(j, "t\t") {
				continue
			}
			r := &Request{Header: http.Header{"Stripe-Signature": {hv}}, Body: body, Now: testNow}
			if err := stripe.Verify(r); err != nil {
				if reasonOf(err) == ReasonMalformed && (strings.ContainsAny(j, "\r\n") || strings.Contains(j, "t")) {
					continue // a second, different t part or one HTTP could not carry
				}
				t.Fatalf("a good signature among junk %q: %v", hv, err)
			}
		}
	})
}

// FuzzParseSigned: a signed template either parses into pieces that spell it back, or is
// refused with a message; it never panics.
func FuzzParseSigned(f *testing.F) {
	for _, s := range []string{DefaultSigned, "v0:{timestamp}:{body}", "{body}", "{", "}", "{}", "{{body}}", "{timestamp}{timestamp}", "a{body}b{timestamp}c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		pieces, err := parseSigned(tmpl)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		var back strings.Builder
		for _, p := range pieces {
			switch p.kind {
			case pieceText:
				back.WriteString(p.text)
			case pieceTimestamp:
				back.WriteString("{timestamp}")
			case pieceBody:
				back.WriteString("{body}")
			}
		}
		if back.String() != tmpl {
			t.Fatalf("%q parsed into pieces that spell %q", tmpl, back.String())
		}
	})
}
