package security

import (
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Keys from a jwks_url expire: after jwks_max_age the next token fetches the document
// again, so a key the provider withdrew stops verifying even when every token names a kid
// the cache still holds. An outage of the JWKS endpoint keeps the old keys for a grace
// period instead of refusing every token.
func TestJWTKeysFromAJWKSURLExpireAfterTheirMaxAge(t *testing.T) {
	f := newJWTFixture(t)
	srv := newJWKSServer(t, jwksDoc(t, map[string]any{"k1": &f.ec.PublicKey, "k2": &f.ec2.PublicKey}))
	cfg := srv.config("/jwks.json")
	cfg.JWKSMaxAge = 10 * time.Minute
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := testNow
	steps := []struct {
		name    string
		serve   string // "" keeps what the server serves
		status  int
		key     string // k1 or k2
		after   time.Duration
		want    Reason
		fetches int32
	}{
		{"the first token fetches the document and is accepted", "", 0, "k1", 0, "", 1},
		{"a token within the max age uses the cached keys", "", 0, "k1", 9 * time.Minute, "", 1},
		// The provider withdraws k1; the cache still holds it.
		{"the withdrawn key still verifies within the max age", "k2 only", 200, "k1", 9*time.Minute + 30*time.Second, "", 1},
		{"past the max age the next token refetches and the withdrawn key is refused", "", 0, "k1", 10*time.Minute + time.Second, ReasonMismatch, 2},
		{"the key still published verifies with the refetched keys", "", 0, "k2", 10*time.Minute + 2*time.Second, "", 2},
		// The JWKS endpoint goes down.
		{"past the max age during an outage the old keys still verify", "down", 500, "k2", 21 * time.Minute, "", 3},
		{"a failed refresh is retried at most once per 30s", "", 0, "k2", 21*time.Minute + 10*time.Second, "", 3},
		{"within the grace period the old keys keep verifying", "", 0, "k2", 20 * time.Hour, "", 4},
		{"past the grace period the old keys are no longer used", "", 0, "k2", 10*time.Minute + 25*time.Hour, ReasonMismatch, 5},
		{"when the endpoint is back its keys verify again", "k2 only", 200, "k2", 10*time.Minute + 25*time.Hour + time.Minute, "", 6},
	}
	keys := map[string]any{"k1": f.ec, "k2": f.ec2}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			switch st.serve {
			case "k2 only":
				srv.serve(jwksDoc(t, map[string]any{"k2": &f.ec2.PublicKey}), st.status)
			case "down":
				srv.serve("down", st.status)
			}
			now := at.Add(st.after)
			tok := joseToken(t, jose.ES256, keys[st.key], st.key, goodClaims(now))
			assertJWTVerdict(t, v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: now}), st.want)
			if got := srv.fetches.Load(); got != st.fetches {
				t.Errorf("%d fetches so far, want %d", got, st.fetches)
			}
		})
	}
}

func TestJWTMaxAgeIsBounded(t *testing.T) {
	srv := newJWKSServer(t, "{}")
	for _, tc := range []struct {
		name   string
		url    bool
		maxAge time.Duration
		want   string
	}{
		{"a max age under a minute is refused", true, time.Second, "jwks_max_age must be between"},
		{"a max age over a day is refused", true, 48 * time.Hour, "jwks_max_age must be between"},
		{"a max age without jwks_url is refused", false, time.Hour, "only with jwks_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.config("/jwks")
			if !tc.url {
				cfg.JWKSURL, cfg.Keys = "", []Secret{NewSecret(pubPEM(t, &newJWTFixture(t).ec.PublicKey))}
			}
			cfg.JWKSMaxAge = tc.maxAge
			_, err := New(cfg)
			assertConfigError(t, err, "jwks_max_age", tc.want)
		})
	}
}

// assertConfigError checks that err holds a ConfigError on key saying want.
func assertConfigError(t *testing.T, err error, key, want string) {
	t.Helper()
	for _, e := range unjoin(err) {
		var ce *ConfigError
		if errors.As(e, &ce) && ce.Key == key && strings.Contains(ce.Msg, want) {
			return
		}
	}
	t.Errorf("got %v, want %q on key %q", err, want, key)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
