package security

import (
	"crypto/ecdsa"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksServer is an identity provider's JWKS endpoint over TLS that counts its fetches and
// serves whatever document it is given.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	doc     string
	status  int
}

func newJWKSServer(t *testing.T, doc string) *jwksServer {
	s := &jwksServer{doc: doc, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		doc, status := s.doc, s.status
		s.mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			t.Error("the fetch forwarded an Authorization header")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(doc string, status int) {
	s.mu.Lock()
	s.doc, s.status = doc, status
	s.mu.Unlock()
}

func (s *jwksServer) config(path string) Config {
	return Config{Method: JWT, JWKSURL: s.URL + path, Egress: s.Client().Transport,
		Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
}

func TestJWTFetchesItsJWKSURLAndRefreshesItAtABoundedRate(t *testing.T) {
	f := newJWTFixture(t)
	srv := newJWKSServer(t, jwksDoc(t, map[string]any{"k1": &f.ec.PublicKey}))
	v, err := New(srv.config("/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	at := testNow
	verify := func(key *ecdsa.PrivateKey, kid string, now time.Time) error {
		tok := joseToken(t, jose.ES256, key, kid, goodClaims(now))
		return v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: now})
	}
	step := func(name string, key *ecdsa.PrivateKey, kid string, now time.Time, want Reason, fetches int32) {
		t.Run(name, func(t *testing.T) {
			assertJWTVerdict(t, verify(key, kid, now), want)
			if got := srv.fetches.Load(); got != fetches {
				t.Errorf("%d fetches so far, want %d", got, fetches)
			}
		})
	}
	step("the first token fetches the document and is accepted", f.ec, "k1", at, "", 1)
	step("the next token uses the cached keys", f.ec, "k1", at.Add(time.Second), "", 1)
	step("a token without kid uses the cached keys", f.ec, "", at.Add(time.Second), "", 1)
	// The provider rotates: k2 is published.
	srv.serve(jwksDoc(t, map[string]any{"k1": &f.ec.PublicKey, "k2": &f.ec2.PublicKey}), http.StatusOK)
	step("an unknown kid within 30s of the last fetch fetches nothing and is refused", f.ec2, "k2", at.Add(10*time.Second), ReasonMismatch, 1)
	t.Run("a flood of unknown kids within 30s fetches nothing", func(t *testing.T) {
		for i := range 50 {
			assertJWTVerdict(t, verify(f.ec2, "nope-"+strings.Repeat("x", i), at.Add(20*time.Second)), ReasonMismatch)
		}
		if got := srv.fetches.Load(); got != 1 {
			t.Errorf("%d fetches, want 1", got)
		}
	})
	step("an unknown kid 30s after the last fetch refetches and is accepted", f.ec2, "k2", at.Add(31*time.Second), "", 2)
	step("an unknown kid refetches at most once per 30s", f.ec2, "k9", at.Add(40*time.Second), ReasonMismatch, 2)
	srv.serve("oops", http.StatusInternalServerError)
	step("a failed refetch keeps the keys it had", f.ec, "k1-gone", at.Add(80*time.Second), ReasonMismatch, 3)
	step("and the kept keys still verify", f.ec2, "k2", at.Add(81*time.Second), "", 3)
}

func TestJWTRefusesWhatAJWKSURLAnswersBeyondItsBounds(t *testing.T) {
	f := newJWTFixture(t)
	tok := joseToken(t, jose.ES256, f.ec, "k1", goodClaims(testNow))
	good := jwksDoc(t, map[string]any{"k1": &f.ec.PublicKey})
	for _, tc := range []struct {
		name   string
		doc    string
		status int
		path   string
		want   string
	}{
		{"a document over 64 KiB", `{"keys":[],"pad":"` + strings.Repeat("a", 70<<10) + `"}`, 200, "/jwks", "more than"},
		{"a status other than 200", good, 404, "/jwks", "status 404"},
		{"a redirect, which is not followed", good, 302, "/jwks", "status 302"},
		{"a document that is not JSON", "<html>", 200, "/jwks", "parse JWKS"},
		{"a document holding a private key", jwksDoc(t, map[string]any{"k1": f.ec}), 200, "/jwks", "private key"},
	} {
		t.Run(tc.name+" gives no keys", func(t *testing.T) {
			srv := newJWKSServer(t, tc.doc)
			srv.serve(tc.doc, tc.status)
			v, err := New(srv.config(tc.path))
			if err != nil {
				t.Fatal(err)
			}
			err = v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: testNow})
			assertJWTVerdict(t, err, ReasonMismatch)
			if err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("detail %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestJWTRefusesABadJWKSURLAtLoad(t *testing.T) {
	srv := newJWKSServer(t, "{}")
	for _, tc := range []struct{ name, url, want string }{
		{"plain http", "http://idp.example.com/jwks", "must be https"},
		{"a relative URL", "/jwks", "not an absolute URL"},
		{"credentials in the URL", "https://u:p@idp.example.com/jwks", "credentials"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			cfg := srv.config("")
			cfg.JWKSURL = tc.url
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
