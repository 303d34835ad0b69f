package saga

import "testing"

func TestCredentialHeadersAreDecidedFromTheTemplates(t *testing.T) {
	s := mustParse(t, "creds", `
name: creds
steps:
  - name: call
    http:
      url: http://api.example.com/x
      headers:
        Authorization: "Basic ${ toBase64(secret('user') + ':' + secret('pw')) }"
        X-Sig: "${ hmac_sha256(secret('key'), raw) }"
        Cookie: "session=abc"
        X-Trace: "${ run.id }"
  - name: whole
    http:
      url: http://api.example.com/y
      headers: "${ {'X-Api-Key': secret('k')} }"
  - name: plain
    http:
      url: http://api.example.com/z
      headers: "${ {'X-Trace': run.id} }"
`)
	cases := []struct {
		step, header string
		want         bool
	}{
		{"call", "Authorization", true},
		{"call", "x-sig", true},
		{"call", "Cookie", true},
		{"call", "X-Trace", false},
		{"call", "Proxy-Authorization", true},
		{"whole", "X-Api-Key", true},
		{"whole", "X-Anything", true},
		{"plain", "X-Trace", false},
	}
	for _, c := range cases {
		var a *httpAction
		for _, st := range s.Steps {
			if st.Name == c.step {
				a = st.Action.http
			}
		}
		if got := a.credentials.isCredential(c.header); got != c.want {
			t.Errorf("step %s header %s: credential = %v, want %v", c.step, c.header, got, c.want)
		}
	}
}
