package saga

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

// encodedForms is every form of s the redactor must catch.
func encodedForms(s string) map[string]string {
	return map[string]string{
		"plain":            s,
		"base64":           base64.StdEncoding.EncodeToString([]byte(s)),
		"base64 url":       base64.URLEncoding.EncodeToString([]byte(s)),
		"base64 raw":       base64.RawStdEncoding.EncodeToString([]byte(s)),
		"base64 raw url":   base64.RawURLEncoding.EncodeToString([]byte(s)),
		"hex":              hex.EncodeToString([]byte(s)),
		"hex upper":        strings.ToUpper(hex.EncodeToString([]byte(s))),
		"query escaped":    url.QueryEscape(s),
		"path escaped":     url.PathEscape(s),
		"escaped segment":  escapeSegment(s),
		"query in the url": "?k=" + url.QueryEscape(s),
	}
}

func TestTheRedactorCatchesEncodedFormsOfEverySecret(t *testing.T) {
	// A secret whose encodings all differ from it: URL-special bytes, and bytes that make
	// base64's two alphabets differ.
	const sec = "pa ss/wö?rd+1~>>?"
	rs := newRunState(map[string]security.Secret{"k": security.NewSecret(sec)})
	if _, err := rs.reveal("k"); err != nil {
		t.Fatal(err)
	}
	for name, form := range encodedForms(sec) {
		t.Run("the "+name+" form is replaced", func(t *testing.T) {
			in := map[string]any{"say": "before " + form + " after", form: []any{form}}
			out := toJSON(rs.redact(in))
			if strings.Contains(out, strings.Trim(form, "?k=")) {
				t.Errorf("redacted %s still holds %q", out, form)
			}
			if got := rs.redactString("x" + form + "y"); got != "x"+redacted+"y" && !strings.Contains(got, redacted) {
				t.Errorf("redactString gave %q", got)
			}
		})
	}
	t.Run("text without a secret is returned as it is", func(t *testing.T) {
		in := map[string]any{"a": "nothing here"}
		if out := rs.redact(in); toJSON(out) != toJSON(in) {
			t.Errorf("changed to %v", out)
		}
	})
}

// echoHeaders is a careless downstream that answers with the headers it received, and
// remembers them so the test can check the real values were sent.
type echoHeaders struct {
	mu   sync.Mutex
	seen []http.Header
	srv  *httptest.Server
}

func newEchoHeaders(t *testing.T) *echoHeaders {
	e := &echoHeaders{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Clone())
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"headers": r.Header})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func TestCredentialHeadersAreRecordedAsRedacted(t *testing.T) {
	const user, pw, key = "svc-user-Q7", "pw-Z9!q/+x", "key-4f9a-Z9"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
	secrets := map[string]security.Secret{
		"user": security.NewSecret(user), "pw": security.NewSecret(pw), "key": security.NewSecret(key),
	}
	down := newEchoHeaders(t)
	s := mustParse(t, "creds", `
name: creds
steps:
  - name: call
    http:
      url: ${ settings.base }/x
      headers:
        Authorization: "Basic ${ toBase64(secret('user') + ':' + secret('pw')) }"
        Proxy-Authorization: "Bearer proxy-token-constant"
        Cookie: "session=cookie-value-constant"
        X-Sig: "${ hmac_sha256(secret('key'), raw) }"
        X-Trace: "trace ${ run.id }"
  - name: whole
    http:
      url: ${ settings.base }/y
      headers: "${ {'X-Api-Key': secret('key')} }"
`)
	inv := invocation(s, map[string]any{"a": 1})
	inv.Secrets = secrets
	inv.Settings = map[string]any{"base": down.srv.URL}
	hidden := map[string]string{
		"user": user, "password": pw, "key": key, "base64 of user:password": basic,
		"proxy token": "proxy-token-constant", "cookie": "cookie-value-constant",
	}

	t.Run("the downstream receives the real headers", func(t *testing.T) {
		e, _, _ := testEngine(t)
		res := e.Run(context.Background(), inv)
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		down.mu.Lock()
		defer down.mu.Unlock()
		if got := down.seen[0].Get("Authorization"); got != "Basic "+basic {
			t.Errorf("Authorization sent as %q", got)
		}
		if got := down.seen[1].Get("X-Api-Key"); got != key {
			t.Errorf("X-Api-Key sent as %q", got)
		}

		in := res.Steps[0].Input.(map[string]any)["headers"].(map[string]string)
		for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Sig"} {
			if in[h] != security.Redacted {
				t.Errorf("recorded %s = %q, want %s", h, in[h], security.Redacted)
			}
		}
		if in["X-Trace"] != "trace run-1" {
			t.Errorf("recorded X-Trace = %q: headers without credentials stay readable", in["X-Trace"])
		}
		if got := res.Steps[1].Input.(map[string]any)["headers"].(map[string]string)["X-Api-Key"]; got != security.Redacted {
			t.Errorf("a header from a whole-map expression that calls secret() recorded as %q", got)
		}
		// The echoing downstream's answer holds the header values: they are scrubbed too.
		recorded, err := res.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		for what, v := range hidden {
			if strings.Contains(string(recorded), v) {
				t.Errorf("the run's result holds the %s: %s", what, recorded)
			}
		}
	})

	t.Run("a plan shows the headers redacted", func(t *testing.T) {
		pr, err := Plan(s, inv)
		if err != nil {
			t.Fatal(err)
		}
		out := toJSON(pr)
		for what, v := range hidden {
			if strings.Contains(out, v) {
				t.Errorf("the plan holds the %s: %s", what, out)
			}
		}
		h := pr.Steps[0].Input.(map[string]any)["headers"].(map[string]string)
		if h["Authorization"] != security.Redacted || h["X-Sig"] != security.Redacted || h["X-Trace"] != "trace run-1" {
			t.Errorf("plan headers: %v", h)
		}
	})
}
