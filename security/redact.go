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
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[k] = v
	}
	mask := func(name string) {
		for k, v := range out {
			if strings.EqualFold(k, name) {
				masked := make([]string, len(v))
				for i := range masked {
					masked[i] = Redacted
				}
				out[k] = masked
			}
		}
	}
	for _, name := range alwaysRedacted {
		mask(name)
	}
	for _, name := range c.credentialHeaders() {
		if name != "" {
			mask(name)
			mask(cgiName(name))
		}
	}
	return out
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
