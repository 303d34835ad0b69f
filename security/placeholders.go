package security

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Placeholder is one header or query parameter a sender sets for an endpoint's security
// method, with a placeholder ($SIGNATURE, $TOKEN) where its value goes.
type Placeholder struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Query bool   `json:"query,omitempty"` // a query parameter, not a header
}

// Placeholders returns what a request to an endpoint secured by cfg carries, for a
// command shape people copy: the header (and query parameter) names come from signing an
// empty body with cfg itself, so they are exactly what pushbackd sign sets; every value is
// replaced by a placeholder, so no secret, token or signature leaves here. Methods that
// cannot sign here (jwt, oauth2: the token comes from elsewhere) name their bearer header.
// Signed reports whether the values are computed per request (pushbackd sign prints them).
func Placeholders(cfg Config) (out []Placeholder, signed bool) {
	var p problems
	cfg = withPreset(cfg, &p)
	switch cfg.Method {
	case JWT, OAuth2, Bearer:
		return []Placeholder{{Name: "Authorization", Value: "Bearer $TOKEN"}}, false
	case Basic:
		return []Placeholder{{Name: "Authorization", Value: "Basic $CREDENTIALS"}}, false
	}
	// aws_sigv4 signs the request's host, path and query too: any URL names its headers.
	h, q, err := SignFor(cfg, &url.URL{Scheme: "https", Host: "pushbackd.example", Path: "/"}, nil, "", time.Unix(0, 0))
	if err != nil {
		// Names only, from the configuration, when signing is not possible here.
		for _, n := range HeaderNames(cfg) {
			out = append(out, Placeholder{Name: n, Value: placeholder(n)})
		}
		return out, true
	}
	// The spellings the configuration uses, not http.Header's canonical ones.
	spelled := map[string]string{}
	for _, n := range HeaderNames(cfg) {
		spelled[http.CanonicalHeaderKey(n)] = n
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		name := k
		if s, ok := spelled[k]; ok {
			name = s
		}
		out = append(out, Placeholder{Name: name, Value: placeholder(name)})
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		out = append(out, Placeholder{Name: k, Value: placeholder(k), Query: true})
	}
	return out, cfg.Method != APIKey && cfg.Method != Token
}

// placeholder is a shell variable named after the header: X-Hub-Signature-256 becomes
// $X_HUB_SIGNATURE_256.
func placeholder(name string) string {
	return "$" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}
