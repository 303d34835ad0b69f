package security

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on fetching a jwks_url: what the identity provider (or whoever answers for it)
// controls.
const (
	// jwksRefreshInterval is the least time between two fetches of one endpoint's JWKS: a
	// token naming an unknown kid triggers a fetch (the provider rotated its keys), and a
	// flood of such tokens must not become a flood of fetches.
	jwksRefreshInterval = 30 * time.Second
	// jwksFetchTimeout bounds one fetch, which a request waits for.
	jwksFetchTimeout = 5 * time.Second
	// jwksGrace is how long past its max age a document is still used while fetching it
	// fails: an outage of the provider's JWKS endpoint must not turn every token into a
	// 401, but keys nobody could confirm for a day are no longer trusted.
	jwksGrace = 24 * time.Hour
)

// remoteJWKS is one endpoint's keys from its jwks_url: fetched on the first request, kept
// for maxAge, and fetched again by the first token after that or by a token naming a kid
// it lacks, at most once per jwksRefreshInterval. A failed fetch keeps the keys it had for
// jwksGrace past their max age, and is logged.
type remoteJWKS struct {
	url    string
	client *http.Client
	maxAge time.Duration

	keys atomic.Pointer[jwksSnapshot]
	mu   sync.Mutex // held across a fetch: requests needing one wait for it, not fetch again
	last time.Time  // start of the last fetch, under mu
}

// jwksSnapshot is a fetched document's keys and when they were fetched (request clock).
type jwksSnapshot struct {
	keys    []jwtKey
	fetched time.Time
}

// fresh reports whether the keys are within their max age at now.
func (r *remoteJWKS) fresh(s *jwksSnapshot, now time.Time) bool {
	return now.Sub(s.fetched) < r.maxAge
}

// usable reports whether the keys may still be used at now when they cannot be refreshed.
func (r *remoteJWKS) usable(s *jwksSnapshot, now time.Time) bool {
	return now.Sub(s.fetched) < r.maxAge+jwksGrace
}

func newRemoteJWKS(raw string, rt http.RoundTripper, maxAge time.Duration, p *problems) *remoteJWKS {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		p.at("jwks_url", "jwks_url %q is not an absolute URL", raw)
		return nil
	case u.Scheme != "https":
		// Over plain HTTP anyone on the path could hand pushbackd keys of their own.
		p.at("jwks_url", "jwks_url must be https, not %s", u.Scheme)
		return nil
	case u.User != nil:
		p.at("jwks_url", "jwks_url must not carry credentials")
		return nil
	}
	if rt == nil {
		p.at("jwks_url", "jwks_url needs an egress transport (a loader bug: the config loader supplies one)")
		return nil
	}
	return &remoteJWKS{url: u.String(), maxAge: maxAge, client: &http.Client{
		Transport: rt,
		Timeout:   jwksFetchTimeout,
		// A redirect could lead anywhere: the provider's document is at the URL configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// lookup returns the keys, fetching them first when they are older than their max age or
// none has kid (any key will do when kid is "") and the last fetch is old enough. now is
// the request's clock.
func (r *remoteJWKS) lookup(kid string, now time.Time) ([]jwtKey, error) {
	if ks := r.keys.Load(); ks != nil && r.fresh(ks, now) && hasKid(ks.keys, kid) {
		return ks.keys, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Another request may have fetched while this one waited.
	ks := r.keys.Load()
	if ks != nil && r.fresh(ks, now) && hasKid(ks.keys, kid) {
		return ks.keys, nil
	}
	if !r.last.IsZero() && now.Sub(r.last) < jwksRefreshInterval && now.Sub(r.last) > -jwksRefreshInterval {
		if ks == nil || !r.usable(ks, now) {
			return nil, errors.New("jwks_url: no usable keys (the last fetch failed; next try after 30s)")
		}
		return ks.keys, nil
	}
	r.last = now
	fresh, err := r.fetch()
	if err != nil {
		if ks != nil && r.usable(ks, now) {
			slog.Warn("jwks_url refresh failed; verifying with the keys fetched before",
				"url", r.url, "fetched", ks.fetched, "until", ks.fetched.Add(r.maxAge+jwksGrace), "error", err)
			return ks.keys, fmt.Errorf("jwks_url refresh failed, kept the keys it had: %w", err)
		}
		if ks != nil {
			slog.Error("jwks_url refresh failed past the grace period; its keys are no longer used",
				"url", r.url, "fetched", ks.fetched, "error", err)
		}
		return nil, err
	}
	r.keys.Store(&jwksSnapshot{keys: fresh, fetched: now})
	return fresh, nil
}

func hasKid(ks []jwtKey, kid string) bool {
	if kid == "" {
		return len(ks) > 0
	}
	for _, k := range ks {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// fetch reads the document, at most maxJWKSLength bytes, within jwksFetchTimeout. The
// request is not the sender's: no header of its request is forwarded.
func (r *remoteJWKS) fetch() ([]jwtKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks_url fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_url fetch: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSLength+1))
	if err != nil {
		return nil, fmt.Errorf("jwks_url read: %w", err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	if len(keys) > maxJWTKeys {
		return nil, fmt.Errorf("jwks_url: %d keys, more than %d", len(keys), maxJWTKeys)
	}
	return keys, nil
}
