package security

import (
	"maps"
	"net/http"
	"strings"
	"testing"
)

// redactHeadersByMask is RedactHeaders as first written (a pass over the copy per name):
// the reference the one-pass version must agree with.
func redactHeadersByMask(c Config, h http.Header) map[string][]string {
	out := maps.Clone(map[string][]string(h))
	if out == nil {
		out = map[string][]string{}
	}
	mask := func(name string) {
		for k, v := range out {
			if strings.EqualFold(k, name) {
				m := make([]string, len(v))
				for i := range m {
					m[i] = Redacted
				}
				out[k] = m
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

func TestRedactHeadersMasksWhatEverySpellingCarries(t *testing.T) {
	h := http.Header{
		"Authorization": {"Bearer x"}, "proxy-authorization": {"Basic y"}, "Cookie": {"a=b", "c=d"},
		"Http_authorization": {"z"}, "Elli-Signature": {"sig"}, "HTTP_ELLI_SIGNATURE": {"cgi"},
		"http_elli_signature": {"cgi2"}, "HTTP_ELLI-SIGNATURE": {"not cgi"}, "Http_": {"short"},
		"X-Api-Key": {"k"}, "HTTP_X_API_KEY": {"k2"}, "Content-Type": {"text/plain"}, "X-Other": {"1", "2"},
		"X-Api-\u212aey": {"kelvin"}, "HTTP_X_API_\u212aEY": {"kelvin cgi"}, "\u017fet-Cookie": {"long s"},
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"a signature endpoint masks its signature header and its CGI spelling", Config{Method: Signature, Secrets: secrets(sigKey1)}},
		{"an api key endpoint masks its key header in every spelling", Config{Method: APIKey, Header: "X-Api-Key", Secrets: secrets("k")}},
		{"a bearer endpoint masks the Authorization family", bearerConfig()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := tc.cfg.RedactHeaders(h), redactHeadersByMask(tc.cfg, h)
			for k := range maps.Keys(want) {
				if strings.Join(got[k], "|") != strings.Join(want[k], "|") {
					t.Errorf("%s: got %q, want %q", k, got[k], want[k])
				}
			}
			if len(got) != len(want) {
				t.Errorf("got %d headers, want %d", len(got), len(want))
			}
			if got["Content-Type"][0] != "text/plain" || got["Authorization"][0] != Redacted {
				t.Errorf("Content-Type %q, Authorization %q", got["Content-Type"], got["Authorization"])
			}
		})
	}
}

// Every accepted request's headers are redacted for the record: that costs the copy and
// the masked values, no more.
func TestRedactHeadersAllocatesOnlyTheCopy(t *testing.T) {
	cfg := Config{Method: Signature, Secrets: secrets(sigKey1)}
	h := http.Header{"Elli-Signature": {"sig"}, "Content-Type": {"text/plain"}, "User-Agent": {"x"}, "Accept": {"*/*"}}
	if n := testing.AllocsPerRun(100, func() { cfg.RedactHeaders(h) }); n > 2+raceAllocs {
		t.Errorf("%v allocations, want at most %v (the map and the masked signature)", n, 2+raceAllocs)
	}
}
