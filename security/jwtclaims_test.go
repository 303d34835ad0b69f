package security

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claimsOutcome is what check makes of a token's claims segment: whether it decodes, and
// if so the reason and detail validation gives ("" when valid).
func claimsOutcome(t testing.TB, decode func([]byte) (jwt.Claims, error), payload []byte) string {
	t.Helper()
	claims, err := decode(payload)
	if err != nil {
		return "does not decode"
	}
	now := time.Unix(1_700_000_000, 0)
	v := jwt.NewValidator(jwt.WithIssuer("https://idp.example/"), jwt.WithAudience("pushbackd"),
		jwt.WithLeeway(30*time.Second), jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	if err := v.Validate(claims); err != nil {
		return string(jwtReason(err)) + ": " + jwtDetail(err)
	}
	return ""
}

// Both decode as ParseUnverified does: json.Unmarshal into a copy of the Claims it is given
// (a map copy for MapClaims, an interface for others), while check validates the value it
// passed in, whatever the decoding did to the copy (a JSON null empties the copy only).
func libraryClaims(b []byte) (jwt.Claims, error) {
	c := jwt.MapClaims{}
	cp := c
	err := json.Unmarshal(b, &cp)
	return c, err
}

func ourClaims(b []byte) (jwt.Claims, error) {
	c := &jwtClaims{}
	var cp jwt.Claims = c
	err := json.Unmarshal(b, &cp)
	return c, err
}

var claimsSeeds = []string{
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":1700000600}`,
	`{"iss":"https://idp.example/","aud":["x","pushbackd"],"exp":1700000600.5,"nbf":1699999000,"iat":1699999000}`,
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":1699990000}`,
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":1700000600,"nbf":1700009000}`,
	`{"iss":"https://evil.example/","aud":"pushbackd","exp":1700000600}`,
	`{"iss":"https://idp.example/","aud":"other","exp":1700000600}`,
	`{"iss":"https://idp.example/","aud":"pushbackd"}`,
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":"1700000600"}`,
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":1e400}`,
	`{"iss":"https://idp.example/","aud":"pushbackd","exp":1699990000,"exp":1700000600}`,
	`{"iss":"https://idp.example/","aud":[1,2],"exp":1700000600}`,
	`{"iss":1,"aud":"pushbackd","exp":1700000600}`,
	`null`, `[]`, `"claims"`, `{}`, `{"exp":}`, `{"a":[[[[[[{"b":null}]]]]]]}`, ``, `{"exp":1700000600} x`,
	"{\"iss\":\"https://idp.example/\",\"aud\":\"pushbackd\xff\",\"exp\":1700000600}",
}

// jwtClaims decodes claims with internal/jsondec instead of encoding/json; every payload
// must still get the answer the library's own MapClaims gave it.
func TestJWTClaimsDecodeAsTheLibrarysMapClaims(t *testing.T) {
	for _, p := range claimsSeeds {
		t.Run(p, func(t *testing.T) {
			if got, want := claimsOutcome(t, ourClaims, []byte(p)), claimsOutcome(t, libraryClaims, []byte(p)); got != want {
				t.Errorf("jwtClaims: %q, the library's MapClaims: %q", got, want)
			}
		})
	}
}

func FuzzJWTClaimsMatchMapClaims(f *testing.F) {
	for _, p := range claimsSeeds {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := claimsOutcome(t, ourClaims, p), claimsOutcome(t, libraryClaims, p); got != want {
			t.Errorf("payload %q: jwtClaims %q, the library's MapClaims %q", p, got, want)
		}
	})
}
