package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
)

// Two partners configure the same client id and secret, so a token of one tried at the
// other proves the partner is bound into the token, not only the secret.
const oauth2Partners = `id: maxwell
endpoints:
  - name: events
    saga: echo
    mode: sync
    security:
      method: oauth2
      clients:
        - {id: maxwell, secret: {value: "s3cret:with+special&chars"}}
        - {id: rotating, secret: {value: "old-secret"}}
        - {id: rotating, secret: {value: "new-secret"}}
      token_ttl: 10m
sites:
  - id: west
    endpoints:
      - name: orders
        saga: echo
        mode: sync
        security:
          method: oauth2
          clients:
            - {id: west-client, secret: {value: "west-secret"}}
`

const oauth2OtherPartner = `id: other
endpoints:
  - name: events
    saga: echo
    mode: sync
    security:
      method: oauth2
      clients:
        - {id: maxwell, secret: {value: "s3cret:with+special&chars"}}
`

// oauth2Gateway is a real gateway on loopback whose clock the test moves and whose config
// the test can replace (to rotate a secret).
type oauth2Gateway struct {
	srv   *httptest.Server
	now   atomic.Int64 // unix nanoseconds
	cfg   atomic.Pointer[config.Config]
	obs   *reasonLog
	dir   string
	limit *security.ClientLimiter
}

func (g *oauth2Gateway) Current() *config.Config { return g.cfg.Load() }

func (g *oauth2Gateway) load(t *testing.T, maxwell string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, "partners", "maxwell.yaml"), []byte(maxwell), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(g.dir, "pushbackd.yaml"))
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	g.cfg.Store(cfg)
}

func startOAuth2Gateway(t *testing.T, budget int) *oauth2Gateway {
	t.Helper()
	g := &oauth2Gateway{dir: t.TempDir(), obs: &reasonLog{}}
	g.now.Store(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())
	if err := os.CopyFS(g.dir, os.DirFS("testdata/config")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "partners", "other.yaml"), []byte(oauth2OtherPartner), 0o600); err != nil {
		t.Fatal(err)
	}
	g.load(t, oauth2Partners)
	clock := func() time.Time { return time.Unix(0, g.now.Load()).UTC() }
	g.limit = security.NewClientLimiter(budget, time.Minute, 100, clock)
	gw := New(Options{Config: g, Runs: &fakeRuns{result: saga.Result{Status: "succeeded"}}, Logger: zaptest.NewLogger(t),
		Observer: g.obs, ClientLimiter: g.limit, Now: clock})
	g.srv = httptest.NewServer(gw)
	t.Cleanup(g.srv.Close)
	return g
}

type tokenReply struct {
	code   int
	header http.Header
	body   map[string]any
}

// tokenRequest posts form to the token endpoint by hand, with Basic credentials when
// basic is not nil.
func (g *oauth2Gateway) tokenRequest(t *testing.T, partner, contentType, form string, basic *[2]string) tokenReply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.srv.URL+"/oauth/"+partner+"/token", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if basic != nil {
		// RFC 6749 §2.3.1: id and secret are each form-encoded before Basic encoding.
		raw := url.QueryEscape(basic[0]) + ":" + url.QueryEscape(basic[1])
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(raw)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := tokenReply{code: resp.StatusCode, header: resp.Header}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out.body); err != nil {
		t.Fatalf("token answer is not JSON: %q", b)
	}
	return out
}

func (g *oauth2Gateway) token(t *testing.T, partner, id, secret string) string {
	t.Helper()
	r := g.tokenRequest(t, partner, "application/x-www-form-urlencoded", "grant_type=client_credentials", &[2]string{id, secret})
	tok, _ := r.body["access_token"].(string)
	if r.code != 200 || tok == "" {
		t.Fatalf("token request: %d %v", r.code, r.body)
	}
	return tok
}

func (g *oauth2Gateway) push(t *testing.T, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL+path, strings.NewReader(`{"event":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const form = "application/x-www-form-urlencoded"

func TestOAuth2TokenEndpointAnswersAsRFC6749Says(t *testing.T) {
	g := startOAuth2Gateway(t, 1000)
	secret := "s3cret:with+special&chars"
	post := "grant_type=client_credentials&client_id=maxwell&client_secret=" + url.QueryEscape(secret)
	tests := []struct {
		name        string
		partner     string
		contentType string
		form        string
		basic       *[2]string
		code        int
		errCode     string
	}{
		{"client_secret_basic with the right secret gets a token", "maxwell", form, "grant_type=client_credentials", &[2]string{"maxwell", secret}, 200, ""},
		{"client_secret_post with the right secret gets a token", "maxwell", form, post, nil, 200, ""},
		{"a client of a site's endpoint gets a token from its partner's endpoint", "maxwell", form, "grant_type=client_credentials", &[2]string{"west-client", "west-secret"}, 200, ""},
		{"either secret of a client being rotated gets a token", "maxwell", form, "grant_type=client_credentials", &[2]string{"rotating", "old-secret"}, 200, ""},
		{"a wrong secret is invalid_client", "maxwell", form, "grant_type=client_credentials", &[2]string{"maxwell", "wrong"}, 401, "invalid_client"},
		{"an unknown client is invalid_client", "maxwell", form, "grant_type=client_credentials", &[2]string{"nobody", secret}, 401, "invalid_client"},
		{"a client of another partner is invalid_client here", "other", form, "grant_type=client_credentials", &[2]string{"west-client", "west-secret"}, 401, "invalid_client"},
		{"no client credentials is invalid_client", "maxwell", form, "grant_type=client_credentials", nil, 401, "invalid_client"},
		{"a grant other than client_credentials is unsupported_grant_type", "maxwell", form, "grant_type=password&username=a&password=b", &[2]string{"maxwell", secret}, 400, "unsupported_grant_type"},
		{"a missing grant_type is invalid_request", "maxwell", form, "", &[2]string{"maxwell", secret}, 400, "invalid_request"},
		{"a repeated parameter is invalid_request", "maxwell", form, "grant_type=client_credentials&grant_type=client_credentials", &[2]string{"maxwell", secret}, 400, "invalid_request"},
		{"credentials both in Authorization and the body are invalid_request", "maxwell", form, post, &[2]string{"maxwell", secret}, 400, "invalid_request"},
		{"a client_id without client_secret is invalid_client", "maxwell", form, "grant_type=client_credentials&client_id=maxwell", nil, 401, "invalid_client"},
		{"a client_id with an empty client_secret is invalid_client", "maxwell", form, "grant_type=client_credentials&client_id=maxwell&client_secret=", nil, 401, "invalid_client"},
		{"Basic with an empty secret is invalid_client", "maxwell", form, "grant_type=client_credentials", &[2]string{"maxwell", ""}, 401, "invalid_client"},
		{"the client_id of the Basic client beside Basic credentials gets a token", "maxwell", form, "grant_type=client_credentials&client_id=maxwell", &[2]string{"maxwell", secret}, 200, ""},
		{"a JSON body is invalid_request", "maxwell", "application/json", `{"grant_type":"client_credentials"}`, &[2]string{"maxwell", secret}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.tokenRequest(t, tt.partner, tt.contentType, tt.form, tt.basic)
			if r.code != tt.code {
				t.Fatalf("status %d, want %d: %v", r.code, tt.code, r.body)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
			}
			if tt.code == 200 {
				if r.body["token_type"] != "Bearer" || r.body["access_token"] == "" {
					t.Errorf("answer %v", r.body)
				}
				return
			}
			if r.body["error"] != tt.errCode {
				t.Errorf("error %v, want %s", r.body["error"], tt.errCode)
			}
			if tt.code == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("WWW-Authenticate %q, want a Basic challenge", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("expires_in is the endpoint's token_ttl", func(t *testing.T) {
		r := g.tokenRequest(t, "maxwell", form, "grant_type=client_credentials", &[2]string{"maxwell", secret})
		if r.body["expires_in"] != float64(600) {
			t.Fatalf("expires_in %v, want 600", r.body["expires_in"])
		}
		r = g.tokenRequest(t, "maxwell", form, "grant_type=client_credentials", &[2]string{"west-client", "west-secret"})
		if r.body["expires_in"] != float64(3600) {
			t.Fatalf("expires_in %v, want the default 3600", r.body["expires_in"])
		}
	})
}

func TestOAuth2TokenRefusalsAreCountedByWhatWasWrong(t *testing.T) {
	g := startOAuth2Gateway(t, 1000)
	tests := []struct {
		name  string
		form  string
		basic *[2]string
		want  security.Reason
	}{
		{"a request with no client credentials is counted as missing", "grant_type=client_credentials", nil, security.ReasonMissing},
		{"a client_id without client_secret is counted as missing", "grant_type=client_credentials&client_id=maxwell", nil, security.ReasonMissing},
		{"a wrong secret is counted as a mismatch", "grant_type=client_credentials", &[2]string{"maxwell", "wrong"}, security.ReasonMismatch},
		{"an unknown client is counted as a mismatch", "grant_type=client_credentials&client_id=nobody&client_secret=x", nil, security.ReasonMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.tokenRequest(t, "maxwell", form, tt.form, tt.basic)
			if r.code != 401 || r.body["error"] != "invalid_client" {
				t.Fatalf("answer %d %v, want 401 invalid_client", r.code, r.body)
			}
			if got := g.obs.last(); got != tt.want {
				t.Fatalf("counted reason %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzClientCredentials feeds arbitrary Authorization values and forms to the token
// request's credential parsing: it must never panic, and what it returns must be what the
// request carried (a Basic id and secret round-trip; a form's come back unchanged).
func FuzzClientCredentials(f *testing.F) {
	basic := func(id, secret string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	}
	f.Add(basic("maxwell", "s3cret:with+special&chars"), "grant_type=client_credentials")
	f.Add("", "grant_type=client_credentials&client_id=maxwell&client_secret=x")
	f.Add("", "client_id=maxwell")
	f.Add("Basic !!!", "")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("no-colon")), "")
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte("%zz:%zz")), "")
	f.Add("Bearer x", "client_id=a&client_secret=b")
	f.Add(basic("a", "b"), "client_id=c")
	f.Fuzz(func(t *testing.T, auth, body string) {
		h := http.Header{}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		vals, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		id, secret, problem := clientCredentials(h, vals)
		if problem != "" {
			if id != "" || secret != "" {
				t.Fatalf("a refused request returned credentials %q %q", id, secret)
			}
			return
		}
		if auth == "" {
			if id != vals.Get("client_id") || secret != vals.Get("client_secret") {
				t.Fatalf("form credentials %q %q came back as %q %q", vals.Get("client_id"), vals.Get("client_secret"), id, secret)
			}
			return
		}
		if got := basic(id, secret); vals.Get("client_id") != "" && vals.Get("client_id") != id {
			t.Fatalf("client_id %q differs from the Basic client %q (%s) yet was accepted", vals.Get("client_id"), id, got)
		}
		if vals.Get("client_secret") != "" {
			t.Fatalf("a client_secret beside Basic was accepted")
		}
	})
}

func TestOAuth2TokensWorkOnlyAtTheirPartnersEndpointsAndOnlyWhileValid(t *testing.T) {
	g := startOAuth2Gateway(t, 1000)
	secret := "s3cret:with+special&chars"
	tok := g.token(t, "maxwell", "maxwell", secret)
	otherTok := g.token(t, "other", "maxwell", secret)
	tests := []struct {
		name  string
		path  string
		token string
		want  int
	}{
		{"a token at its partner's endpoint is accepted", "/pushback/maxwell/events", tok, 200},
		{"a token of another partner with the same client and secret is refused", "/pushback/maxwell/events", otherTok, 401},
		{"a token at another partner's endpoint is refused", "/pushback/other/events", tok, 401},
		{"a token at an endpoint that does not list its client is refused", "/pushback/maxwell/west/orders", tok, 401},
		{"no token is refused", "/pushback/maxwell/events", "", 401},
		{"a token with a flipped signature byte is refused", "/pushback/maxwell/events", tok[:len(tok)-2] + flip(tok[len(tok)-2]) + tok[len(tok)-1:], 401},
		{"a client secret used as a bearer token is refused", "/pushback/maxwell/events", secret, 401},
		{"an overlong token is refused", "/pushback/maxwell/events", tok + strings.Repeat("A", 1000), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := g.push(t, tt.path, tt.token); got != tt.want {
				t.Fatalf("status %d, want %d (reason %q)", got, tt.want, g.obs.last())
			}
		})
	}
	t.Run("a token past its token_ttl is refused as expired", func(t *testing.T) {
		g.now.Add(int64(9 * time.Minute))
		if got := g.push(t, "/pushback/maxwell/events", tok); got != 200 {
			t.Fatalf("at 9 of 10 minutes: status %d", got)
		}
		g.now.Add(int64(time.Minute))
		if got := g.push(t, "/pushback/maxwell/events", tok); got != 401 || g.obs.last() != security.ReasonExpired {
			t.Fatalf("at 10 minutes: status %d reason %q, want 401 expired", got, g.obs.last())
		}
	})
}

func TestOAuth2TokensStopWorkingWhenTheirSecretIsRotatedOut(t *testing.T) {
	g := startOAuth2Gateway(t, 1000)
	oldTok := g.token(t, "maxwell", "rotating", "old-secret")
	newTok := g.token(t, "maxwell", "rotating", "new-secret")
	for _, tok := range []string{oldTok, newTok} {
		if got := g.push(t, "/pushback/maxwell/events", tok); got != 200 {
			t.Fatalf("before rotation: status %d", got)
		}
	}
	g.load(t, strings.Replace(oauth2Partners, `        - {id: rotating, secret: {value: "old-secret"}}`+"\n", "", 1))
	if got := g.push(t, "/pushback/maxwell/events", oldTok); got != 401 {
		t.Errorf("a token of the rotated-out secret: status %d, want 401", got)
	}
	if got := g.push(t, "/pushback/maxwell/events", newTok); got != 200 {
		t.Errorf("a token of the remaining secret: status %d, want 200", got)
	}
	r := g.tokenRequest(t, "maxwell", form, "grant_type=client_credentials", &[2]string{"rotating", "old-secret"})
	if r.code != 401 {
		t.Errorf("the rotated-out secret still gets tokens: %d", r.code)
	}
}

func TestOAuth2WrongClientCredentialsSpendTheClientsBudget(t *testing.T) {
	g := startOAuth2Gateway(t, 3)
	wrong := &[2]string{"maxwell", "wrong"}
	for i := range 2 {
		if r := g.tokenRequest(t, "maxwell", form, "grant_type=client_credentials", wrong); r.code != 401 {
			t.Fatalf("guess %d: status %d", i+1, r.code)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/oauth/maxwell/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", form)
	req.SetBasicAuth("maxwell", "wrong")
	for _, name := range []string{"the guess that spends the budget", "the right secret after it"} {
		t.Run(name+" gets 429 with Retry-After", func(t *testing.T) {
			if name == "the right secret after it" {
				req, _ = http.NewRequest(http.MethodPost, g.srv.URL+"/oauth/maxwell/token", strings.NewReader("grant_type=client_credentials"))
				req.Header.Set("Content-Type", form)
				req.SetBasicAuth("maxwell", "s3cret:with+special&chars")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("status %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		})
	}
	t.Run("the budget is back after the window", func(t *testing.T) {
		g.now.Add(int64(2 * time.Minute))
		g.token(t, "maxwell", "maxwell", "s3cret:with+special&chars")
	})
}

// TestOAuth2TokenFromAnIndependentClient gets a token with golang.org/x/oauth2's
// clientcredentials, in both of its auth styles, and uses it on the pushback endpoint.
func TestOAuth2TokenFromAnIndependentClient(t *testing.T) {
	g := startOAuth2Gateway(t, 1000)
	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{{"client_secret_basic", oauth2.AuthStyleInHeader}, {"client_secret_post", oauth2.AuthStyleInParams}} {
		t.Run("golang.org/x/oauth2 with "+style.name+" gets a token the endpoint accepts", func(t *testing.T) {
			cc := clientcredentials.Config{ClientID: "maxwell", ClientSecret: "s3cret:with+special&chars",
				TokenURL: g.srv.URL + "/oauth/maxwell/token", AuthStyle: style.style}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
				t.Fatalf("token %+v", tok)
			}
			if got := g.push(t, "/pushback/maxwell/events", tok.AccessToken); got != 200 {
				t.Fatalf("status %d", got)
			}
		})
	}
	t.Run("golang.org/x/oauth2 reports invalid_client for a wrong secret", func(t *testing.T) {
		cc := clientcredentials.Config{ClientID: "maxwell", ClientSecret: "wrong", TokenURL: g.srv.URL + "/oauth/maxwell/token", AuthStyle: oauth2.AuthStyleInHeader}
		_, err := cc.Token(context.Background())
		if err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("err %v, want invalid_client", err)
		}
	})
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
