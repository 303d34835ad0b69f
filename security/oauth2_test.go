package security

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func oauth2Config() Config {
	return Config{Method: OAuth2, Secrets: secrets("client-secret", "rotated-in"), SecretIDs: []string{"maxwell", "maxwell"}}
}

func TestOAuth2ConfigIsBounded(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"a token_ttl over 24h is refused", func() Config { c := oauth2Config(); c.TokenTTL = 25 * time.Hour; return c }(), "token_ttl must be between 1s and 24h0m0s"},
		{"a negative token_ttl is refused", func() Config { c := oauth2Config(); c.TokenTTL = -time.Second; return c }(), "token_ttl must be between"},
		{"a client without an id is refused", Config{Method: OAuth2, Secrets: secrets("s")}, "clients[0] needs an id"},
		{"a client id with a space is refused", Config{Method: OAuth2, Secrets: secrets("s"), SecretIDs: []string{"a b"}}, "id must be 1 to 64"},
		{"a client id over 64 bytes is refused", Config{Method: OAuth2, Secrets: secrets("s"), SecretIDs: []string{strings.Repeat("a", 65)}}, "id must be 1 to 64"},
		{"no clients is refused", Config{Method: OAuth2}, "clients is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ...%s...", err, tt.want)
			}
		})
	}
}

func TestOAuth2IssuedTokensVerify(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c, err := Compile(oauth2Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, ttl, ok := c.IssueToken("acme", "maxwell", "rotated-in", now)
	if !ok || ttl != DefaultTokenTTL {
		t.Fatalf("IssueToken: ok %v ttl %v", ok, ttl)
	}
	verify := func(partner, tok string, at time.Time) *Failure {
		err := c.Verify(&Request{Header: http.Header{"Authorization": {"Bearer " + tok}}, Partner: partner, Now: at})
		var f *Failure
		if err != nil && !errors.As(err, &f) {
			t.Fatalf("not a Failure: %v", err)
		}
		return f
	}
	tests := []struct {
		name    string
		partner string
		token   string
		at      time.Time
		reason  Reason
	}{
		{"a fresh token for its partner verifies", "acme", tok, now, ""},
		{"a token one second before expiry verifies", "acme", tok, now.Add(time.Hour - time.Second), ""},
		{"a token at its expiry is expired", "acme", tok, now.Add(time.Hour), ReasonExpired},
		{"a token for another partner is a mismatch", "other", tok, now, ReasonMismatch},
		{"a request without a partner is a mismatch", "", tok, now, ReasonMismatch},
		{"a token with another prefix is malformed", "acme", "x" + tok, now, ReasonMalformed},
		{"a token without its signature is malformed", "acme", tok[:strings.IndexByte(tok, '.')], now, ReasonMalformed},
		{"a token over 512 bytes is malformed", "acme", tok + strings.Repeat("A", 512), now, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := verify(tt.partner, tt.token, tt.at)
			switch {
			case tt.reason == "" && f != nil:
				t.Fatalf("refused: %v", f)
			case tt.reason != "" && (f == nil || f.Reason != tt.reason):
				t.Fatalf("got %v, want reason %s", f, tt.reason)
			}
		})
	}
	t.Run("a wrong secret gets no token", func(t *testing.T) {
		if _, _, ok := c.IssueToken("acme", "maxwell", "client-secre", now); ok {
			t.Fatal("issued")
		}
	})
	t.Run("a token whose expiry was edited is a mismatch", func(t *testing.T) {
		forged := mintOAuth2([]byte("not-the-derived-key"), "acme", "maxwell", now.Add(time.Hour))
		if f := verify("acme", forged, now); f == nil || f.Reason != ReasonMismatch {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("sign points at the token endpoint instead of minting", func(t *testing.T) {
		if _, _, err := Sign(oauth2Config(), nil, "", now); err == nil || !strings.Contains(err.Error(), "/oauth/") {
			t.Fatalf("err %v", err)
		}
	})
}

// FuzzOAuth2Token feeds the token parser arbitrary input: it must not panic, and whatever
// it accepts must be within its bounds.
func FuzzOAuth2Token(f *testing.F) {
	f.Add(mintOAuth2([]byte("k"), "acme", "maxwell", time.Unix(1_800_000_000, 0)))
	f.Add("pbo2_.")
	f.Add("pbo2_YQphCjEKMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := parseOAuth2Token(tok)
		if err != nil {
			return
		}
		if len(tok) > maxOAuth2Token || !clientID(got.client) || got.partner == "" || got.expires.Unix() <= 0 {
			t.Fatalf("accepted %q as %+v", tok, got)
		}
	})
}
