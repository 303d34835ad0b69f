package security

import (
	"net/http"
	"net/url"
	"strings"
)

// Redacted replaces a credential wherever a request is recorded.
const Redacted = "<redacted>"

// alwaysRedacted are headers that carry credentials whatever an endpoint's method.
var alwaysRedacted = []string{"Authorization", "Proxy-Authorization", "Cookie", "HTTP_AUTHORIZATION"}

// RedactHeaders copies h with every credential-bearing header's value replaced: the
// Authorization family always, and the headers this endpoint's method reads (token and
// secret headers with their CGI spellings, the signature header, webhook-signature, the
// api key header). A signature is not a reusable secret, but it is a credential for its one
// body, and run history is not the place for it.
func (c Config) RedactHeaders(h http.Header) map[string][]string {
	creds := c.credentialHeaders()
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if redactedHeader(k, creds) {
			masked := make([]string, len(v))
			for i := range masked {
				masked[i] = Redacted
			}
			v = masked
		}
		out[k] = v
	}
	return out
}

// redactedHeader reports whether header k, in any spelling, is one of alwaysRedacted or
// one of creds or its CGI spelling. It runs for every header of every accepted request, so
// it builds a CGI spelling only for a header that starts like one.
func redactedHeader(k string, creds credentialHeaders) bool {
	for _, name := range alwaysRedacted {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	// Only ASCII folds to "HTTP_" (no other rune folds to h, t, p or _), so this prefix test
	// is exactly the first five characters of EqualFold(k, cgiName(name)).
	cgi := len(k) > len("HTTP_") && strings.EqualFold(k[:len("HTTP_")], "HTTP_")
	for _, name := range creds {
		if name != "" && (strings.EqualFold(k, name) || cgi && strings.EqualFold(k, cgiName(name))) {
			return true
		}
	}
	return false
}

// RedactQuery returns the raw query with the api_key parameter's values replaced.
func (c Config) RedactQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	_, name := c.credentials()
	if name == "" || len(q[name]) == 0 {
		return q.Encode()
	}
	masked := make(url.Values, len(q))
	for k, v := range q {
		masked[k] = v
	}
	masked[name] = []string{Redacted}
	return masked.Encode()
}

func (c Config) credentialHeaders() credentialHeaders {
	h, _ := c.credentials()
	return h
}

// credentials asks c's method where its credentials travel.
func (c Config) credentials() (headers credentialHeaders, query string) {
	var p problems
	c = withPreset(c, &p)
	if m := lookup(c.Method); m != nil {
		return m.credentials(c)
	}
	return credentialHeaders{}, ""
}
