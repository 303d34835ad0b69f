package security

import (
	"context"
	"errors"
	"fmt"
	"io"
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
)

// remoteJWKS is one endpoint's keys from its jwks_url: fetched on the first request,
// kept, and fetched again when a token names a kid it lacks, at most once per
// jwksRefreshInterval. A failed fetch keeps the keys it had.
type remoteJWKS struct {
	url    string
	client *http.Client

	keys atomic.Pointer[[]jwtKey]
	mu   sync.Mutex // held across a fetch: requests needing one wait for it, not fetch again
	last time.Time  // start of the last fetch, under mu
}

func newRemoteJWKS(raw string, rt http.RoundTripper, p *problems) *remoteJWKS {
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
	return &remoteJWKS{url: u.String(), client: &http.Client{
		Transport: rt,
		Timeout:   jwksFetchTimeout,
		// A redirect could lead anywhere: the provider's document is at the URL configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// lookup returns the keys, fetching them first when none has kid (any key will do when
// kid is "") and the last fetch is old enough. now is the request's clock.
func (r *remoteJWKS) lookup(kid string, now time.Time) ([]jwtKey, error) {
	if ks := r.keys.Load(); ks != nil && hasKid(*ks, kid) {
		return *ks, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Another request may have fetched while this one waited.
	ks := r.keys.Load()
	if ks != nil && hasKid(*ks, kid) {
		return *ks, nil
	}
	if !r.last.IsZero() && now.Sub(r.last) < jwksRefreshInterval && now.Sub(r.last) > -jwksRefreshInterval {
		if ks == nil {
			return nil, errors.New("jwks_url: no keys (the last fetch failed; next try after 30s)")
		}
		return *ks, nil
	}
	r.last = now
	fresh, err := r.fetch()
	if err != nil {
		if ks != nil {
			return *ks, fmt.Errorf("jwks_url refresh failed, kept the keys it had: %w", err)
		}
		return nil, err
	}
	r.keys.Store(&fresh)
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
