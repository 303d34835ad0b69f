package config

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

const okSaga = `name: echo
steps:
  - name: answer
    respond: {status: 200}
`

// writeConfig lays out a config directory from file name -> content.
func writeConfig(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if _, ok := files["pushbackd.yaml"]; !ok {
		files["pushbackd.yaml"] = "listen: 127.0.0.1:0\n"
	}
	if _, ok := files["sagas/echo.yaml"]; !ok {
		files["sagas/echo.yaml"] = okSaga
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "partners"), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "pushbackd.yaml")
}

func TestTheShippedDemoConfigIsValid(t *testing.T) {
	cfg, err := Load("../configs/pushbackd.yaml")
	if err != nil {
		t.Fatalf("demo config: %v", err)
	}
	seen := map[security.Method]bool{}
	for _, p := range cfg.Partners {
		for _, e := range p.Endpoints {
			seen[e.Security.Method] = true
		}
		for _, s := range p.Sites {
			for _, e := range s.Endpoints {
				seen[e.Security.Method] = true
			}
		}
	}
	for _, m := range security.Methods() {
		if !seen[m] {
			t.Errorf("the demo has no endpoint for method %s", m)
		}
	}
	if len(cfg.Partners) != 1 || len(cfg.Partners[0].Sites) != 1 {
		t.Errorf("the demo should have one partner with one site")
	}
}

func TestDefaultsApplyWhenKeysAreAbsent(t *testing.T) {
	path := writeConfig(t, map[string]string{"pushbackd.yaml": "# all defaults\n", "partners/a.yaml": "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n"})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if s.Listen != "127.0.0.1:8080" || s.Limits.MaxBodyBytes != 1<<20 || s.Limits.SyncTimeout != 25*time.Second || s.History.Retention != 720*time.Hour || s.Log.Format != "json" {
		t.Errorf("defaults not applied: %+v", s)
	}
	route, ok := cfg.Lookup("a", "", "e")
	if !ok || route.Endpoint.Mode != ModeAsync || route.Endpoint.AcceptStatus != 200 {
		t.Errorf("endpoint defaults not applied: %+v", route.Endpoint)
	}
}

func TestKVLimitsDefaultAndMayBeSet(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       saga.KVLimits
	}{
		{"absent keys take the defaults", "# defaults\n", saga.KVLimits{MaxKeyBytes: 512, MaxValueBytes: 64 << 10, MaxEntries: 100_000}},
		{"set keys apply", "limits: {kv_max_key_bytes: 128, kv_max_value_bytes: 4096, kv_max_entries_per_partner: 50}\n", saga.KVLimits{MaxKeyBytes: 128, MaxValueBytes: 4096, MaxEntries: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": tc.yaml}))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Server.Limits.KVLimits(); got != tc.want {
				t.Fatalf("KVLimits() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSitesInheritPartnerEndpointsUnlessTheyDefineTheirOwn(t *testing.T) {
	path := writeConfig(t, map[string]string{"partners/acme.yaml": `id: acme
settings: {a: partner, b: partner}
endpoints:
  - {name: shared, saga: echo, security: {method: bearer, tokens: [{value: p}]}}
  - {name: mine, saga: echo, security: {method: bearer, tokens: [{value: p}]}}
sites:
  - id: retail
    settings: {b: site}
    endpoints:
      - {name: mine, saga: echo, security: {method: bearer, tokens: [{value: s}]}}
`})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	partnerMine, _ := cfg.Lookup("acme", "", "mine")
	shared, ok := cfg.Lookup("acme", "retail", "shared")
	if !ok || shared.Site.ID != "retail" || shared.Endpoint != findEndpoint(partnerMine.Partner.Endpoints, partnerMine.Partner.endpoints, "shared") {
		t.Errorf("the site does not inherit the partner's endpoint: %+v", shared)
	}
	siteMine, _ := cfg.Lookup("acme", "retail", "mine")
	if siteMine.Endpoint == partnerMine.Endpoint {
		t.Error("the site's own endpoint does not win over the partner's")
	}
	if s := shared.Settings(); s["a"] != "partner" || s["b"] != "site" {
		t.Errorf("site settings = %v", s)
	}
	if s := partnerMine.Settings(); s["b"] != "partner" {
		t.Errorf("partner settings = %v", s)
	}
	for _, miss := range [][3]string{{"nobody", "", "mine"}, {"acme", "wholesale", "mine"}, {"acme", "", "nothing"}, {"acme", "retail", "nothing"}} {
		if _, ok := cfg.Lookup(miss[0], miss[1], miss[2]); ok {
			t.Errorf("lookup %v found something", miss)
		}
	}
}

func TestSecretReferencesResolve(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_TOKEN", "from-env")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.txt"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, map[string]string{"partners/a.yaml": fmt.Sprintf(`id: a
secrets:
  env: {env: PUSHBACKD_TEST_TOKEN}
  file: {file: %s}
  literal: {value: from-value}
endpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{env: PUSHBACKD_TEST_TOKEN}]}}]
`, filepath.Join(dir, "key.txt"))})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	route, _ := cfg.Lookup("a", "", "e")
	got := map[string]string{}
	for k, v := range route.Secrets() {
		got[k] = string(v.Reveal())
	}
	if got["env"] != "from-env" || got["file"] != "from-file" || got["literal"] != "from-value" {
		t.Errorf("secrets = %v", got)
	}
	if s := fmt.Sprintf("%+v %v", cfg.Partners[0], route.Endpoint.Security); strings.Contains(s, "from-") {
		t.Errorf("printing the config leaks a secret: %s", s)
	}
}

func TestBadConfigsReportFileLineColumnAndMessage(t *testing.T) {
	endpoint := func(security string) string {
		return "id: acme\nendpoints:\n  - name: e\n    saga: echo\n    security: " + security + "\n"
	}
	cases := []struct {
		name  string
		files map[string]string
		file  string
		line  int
		col   int
		msg   string
	}{
		{"an unknown key in pushbackd.yaml", map[string]string{"pushbackd.yaml": "listen: 127.0.0.1:0\nlimts: {}\n"}, "pushbackd.yaml", 2, 1, `unknown key "limts"`},
		{"a bad duration", map[string]string{"pushbackd.yaml": "limits:\n  sync_timeout: 5 seconds\n"}, "pushbackd.yaml", 2, 17, `invalid duration "5 seconds"`},
		{"a listen address without a port", map[string]string{"pushbackd.yaml": "listen: localhost\n"}, "pushbackd.yaml", 1, 9, "is not host:port"},
		{"an unknown log format", map[string]string{"pushbackd.yaml": "log: {format: xml}\n"}, "pushbackd.yaml", 1, 15, "log.format must be json or console"},
		{"a kv key limit of zero", map[string]string{"pushbackd.yaml": "limits:\n  kv_max_key_bytes: 0\n"}, "pushbackd.yaml", 2, 21, "limits.kv_max_key_bytes must be between 1 and 16384, not 0"},
		{"a kv value limit past what a step should write", map[string]string{"pushbackd.yaml": "limits:\n  kv_max_value_bytes: 1000000000\n"}, "pushbackd.yaml", 2, 23, "limits.kv_max_value_bytes must be between 1 and 16777216, not 1000000000"},
		{"a lease shorter than a second", map[string]string{"pushbackd.yaml": "limits:\n  lease_ttl: 500ms\n"}, "pushbackd.yaml", 2, 14, "limits.lease_ttl must be between 1s and 1h0m0s, not 500ms"},
		{"a lease longer than an hour", map[string]string{"pushbackd.yaml": "limits:\n  lease_ttl: 2h\n"}, "pushbackd.yaml", 2, 14, "limits.lease_ttl must be between 1s and 1h0m0s, not 2h0m0s"},
		{"a history output cut below 1 KiB", map[string]string{"pushbackd.yaml": "history:\n  max_output_bytes: 100\n"}, "pushbackd.yaml", 2, 21, "history.max_output_bytes must be between 1024 and 1048576, not 100"},
		{"a history output cut past a downstream answer's limit", map[string]string{"pushbackd.yaml": "history: {max_output_bytes: 2000000}\n"}, "pushbackd.yaml", 1, 29, "history.max_output_bytes must be between 1024 and 1048576, not 2000000"},
		{"a replay rate of zero", map[string]string{"pushbackd.yaml": "limits:\n  replay_rate: 0\n"}, "pushbackd.yaml", 2, 16, "limits.replay_rate must be between 1 and 10000 runs per second, not 0"},
		{"a replay rate past any pacing", map[string]string{"pushbackd.yaml": "limits:\n  replay_rate: 100000\n"}, "pushbackd.yaml", 2, 16, "limits.replay_rate must be between 1 and 10000 runs per second, not 100000"},
		{"a negative kv entry cap", map[string]string{"pushbackd.yaml": "limits: {kv_max_entries_per_partner: -1}\n"}, "pushbackd.yaml", 1, 38, "limits.kv_max_entries_per_partner must be between 1 and"},
		{"a partner id that is not its file name", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "id: acme", "id: other", 1)}, "partners/acme.yaml", 1, 1, `must match its file name "acme"`},
		{"an upper-case endpoint name", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "name: e", "name: Encompass", 1)}, "partners/acme.yaml", 3, 5, `endpoint name "Encompass" must match`},
		{"an endpoint without security", map[string]string{"partners/acme.yaml": "id: acme\nendpoints:\n  - name: e\n    saga: echo\n"}, "partners/acme.yaml", 3, 5, "has no security method"},
		{"an unknown security method", map[string]string{"partners/acme.yaml": endpoint("{method: hmac}")}, "partners/acme.yaml", 5, 24, `unknown security method "hmac"`},
		{"a key of another method", map[string]string{"partners/acme.yaml": endpoint("{method: signature, secrets: [{value: k}], password: {value: p}}")}, "partners/acme.yaml", 5, 58, `key "password" does not apply to method signature`},
		{"a basic endpoint without a password", map[string]string{"partners/acme.yaml": endpoint("{method: basic, username: u}")}, "partners/acme.yaml", 5, 15, "needs a password"},
		{"an api key with both header and query", map[string]string{"partners/acme.yaml": endpoint("{method: api_key, header: X-Key, query: key, keys: [{value: k}]}")}, "partners/acme.yaml", 5, 55, "exactly one of header or query"},
		{"a secret given as a bare string", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [plain-text]}")}, "partners/acme.yaml", 5, 41, "not a bare string"},
		{"a secret reference with two sources", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{env: A, value: b}]}")}, "partners/acme.yaml", 5, 41, "exactly one of env, file or value"},
		{"a secret from an unset environment variable", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{env: PUSHBACKD_TEST_SURELY_UNSET}]}")}, "partners/acme.yaml", 5, 41, "environment variable PUSHBACKD_TEST_SURELY_UNSET is not set"},
		{"a secret from a missing file", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{file: nope.txt}]}")}, "partners/acme.yaml", 5, 41, "cannot read secret file nope.txt"},
		{"a standard-webhooks secret that is not whsec base64 is reported at the secret", map[string]string{"partners/acme.yaml": endpoint("{method: standard_webhooks, secrets: [{value: 'whsec_!!'}]}")}, "partners/acme.yaml", 5, 53, "security: secrets[0]: not a whsec_<base64> secret"},
		{"an allow_ips entry that is not an address is reported at the entry", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{value: t}], allow_ips: [10.0.0.0/33]}")}, "partners/acme.yaml", 5, 66, `"10.0.0.0/33" is not an IP address or CIDR range`},
		{"an unknown preset is reported at its name", map[string]string{"partners/acme.yaml": endpoint("{preset: paypal, secrets: [{value: k}]}")}, "partners/acme.yaml", 5, 24, `unknown security preset "paypal" (known: encompass, snapdocs, github, stripe, slack, shopify, standard_webhooks)`},
		{"a preset beside a method is refused", map[string]string{"partners/acme.yaml": endpoint("{method: signature, preset: github, secrets: [{value: k}]}")}, "partners/acme.yaml", 5, 43, "method and preset are mutually exclusive"},
		{"a key of another method under a preset is refused", map[string]string{"partners/acme.yaml": endpoint("{preset: github, secrets: [{value: k}], username: u}")}, "partners/acme.yaml", 5, 55, `key "username" does not apply to method signature`},
		{"a key no method takes lists the method's keys", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{value: t}], tokenz: []}")}, "partners/acme.yaml", 5, 54, `unknown key "tokenz" (method bearer takes: tokens, allow_ips)`},
		{"a signed template without the body is reported at signed", map[string]string{"partners/acme.yaml": endpoint("{method: signature, timestamp_header: X-Ts, signed: 'v0:{timestamp}', secrets: [{value: k}]}")}, "partners/acme.yaml", 5, 67, "security: signed must contain {body}"},
		{"a tolerance on a signature without a timestamp is reported at tolerance", map[string]string{"partners/acme.yaml": endpoint("{method: signature, tolerance: 5m, secrets: [{value: k}]}")}, "partners/acme.yaml", 5, 46, "security: tolerance applies only to timestamped signatures"},
		{"a secret id without key_id_header is reported at the secret", map[string]string{"partners/acme.yaml": endpoint("{method: signature, secrets: [{value: k}, {id: sub-1, value: k2}]}")}, "partners/acme.yaml", 5, 57, "security: secrets[1] has an id, which needs key_id_header"},
		{"an id on a bearer token is refused", map[string]string{"partners/acme.yaml": endpoint("{method: bearer, tokens: [{id: a, value: t}]}")}, "partners/acme.yaml", 5, 42, `unknown key "id"`},
		{"an empty secret id is refused", map[string]string{"partners/acme.yaml": endpoint("{preset: encompass, secrets: [{id: '', value: k}]}")}, "partners/acme.yaml", 5, 50, "id: the key id is empty"},
		{"a saga that does not exist", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "saga: echo", "saga: nope", 1)}, "partners/acme.yaml", 3, 5, `saga "nope" not found in sagas_dir (known: echo)`},
		{"an endpoint defined twice", map[string]string{"partners/acme.yaml": "id: acme\nendpoints:\n  - {name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}\n  - {name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}\n"}, "partners/acme.yaml", 4, 5, `endpoint "e" appears twice`},
		{"a mode that does not exist", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "saga: echo", "saga: echo\n    mode: later", 1)}, "partners/acme.yaml", 3, 5, `mode must be async or sync, not "later"`},
		{"an accept_status that is not 2xx", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "saga: echo", "saga: echo\n    accept_status: 302", 1)}, "partners/acme.yaml", 3, 5, "accept_status must be a 2xx status"},
		{"an idempotency_key that does not compile", map[string]string{"partners/acme.yaml": strings.Replace(endpoint("{method: bearer, tokens: [{value: t}]}"), "saga: echo", "saga: echo\n    idempotency_key: ${ bdy.eventId }", 1)}, "partners/acme.yaml", 3, 5, `endpoint "e": idempotency_key: unknown name bdy`},
		{"an egress pattern with a path", map[string]string{"pushbackd.yaml": "egress: {allow: [crm.example.com/tasks]}\n"}, "pushbackd.yaml", 1, 18, `egress pattern "crm.example.com/tasks"`},
		{"a YAML syntax error", map[string]string{"partners/acme.yaml": "id: acme\nendpoints: [\n"}, "partners/acme.yaml", 2, 0, ""},
		{"an empty partner file", map[string]string{"partners/acme.yaml": "\n"}, "partners/acme.yaml", 1, 1, "file is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.files)
			_, err := Load(path)
			if err == nil {
				t.Fatal("the config loaded")
			}
			errs := yamlconf.AsErrors(err)
			want := filepath.Join(filepath.Dir(path), tc.file)
			for _, e := range errs {
				if e.File == want && e.Line == tc.line && (tc.col == 0 || e.Column == tc.col) && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("want %s:%d:%d: ...%s...; got\n%v", tc.file, tc.line, tc.col, tc.msg, err)
		})
	}
}

func TestPresetsLoadAsTheirMethodWithTheirSettings(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_SUB_B", "key-of-sub-b")
	path := writeConfig(t, map[string]string{"partners/acme.yaml": `id: acme
endpoints:
  - {name: stripe, saga: echo, security: {preset: stripe, secrets: [{value: whsec_abc}]}}
  - {name: slack, saga: echo, security: {preset: slack, tolerance: 1m, secrets: [{value: s}]}}
  - name: encompass
    saga: echo
    security:
      preset: encompass
      secrets:
        - {id: sub-a, value: key-of-sub-a}
        - {id: sub-b, env: PUSHBACKD_TEST_SUB_B}
        - {value: any-subscription}
  - {name: snapdocs, saga: echo, security: {preset: snapdocs, signed: "{timestamp}{body}", secrets: [{value: s}]}}
`})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		endpoint string
		check    func(security.Config) bool
	}{
		{"stripe", func(c security.Config) bool {
			return c.Header == "Stripe-Signature" && c.TimestampPart == "t" && c.SignaturePart == "v1" && c.Encoding == "hex"
		}},
		{"slack", func(c security.Config) bool {
			return c.Tolerance == time.Minute && c.TimestampHeader == "X-Slack-Request-Timestamp" && c.Signed == "v0:{timestamp}:{body}"
		}},
		{"encompass", func(c security.Config) bool {
			return c.KeyIDHeader == "Elli-SubscriptionId" && fmt.Sprint(c.SecretIDs) == "[sub-a sub-b ]" &&
				len(c.Secrets) == 3 && string(c.Secrets[1].Reveal()) == "key-of-sub-b"
		}},
		{"snapdocs", func(c security.Config) bool {
			return c.Signed == "{timestamp}{body}" && c.TimestampFormat == "rfc3339" && c.Header == "X-Authorization-Signature"
		}},
	} {
		t.Run("preset "+tc.endpoint+" loads with its settings and the endpoint's overrides", func(t *testing.T) {
			route, ok := cfg.Lookup("acme", "", tc.endpoint)
			if !ok {
				t.Fatal("no endpoint")
			}
			sec := route.Endpoint.Security.Resolved()
			if route.Endpoint.Verifier().Method() != security.Signature || sec.Preset != tc.endpoint || !tc.check(sec) {
				t.Fatalf("loaded as %s: %+v", route.Endpoint.Verifier().Method(), sec)
			}
		})
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	path := writeConfig(t, map[string]string{
		"pushbackd.yaml": "listen: nope\nlog: {level: loud}\n",
		"partners/a.yaml": "id: a\nendpoints:\n  - {name: e, saga: missing, security: {method: bearer, tokens: [{value: t}]}}\n" +
			"  - {name: f, saga: echo, security: {method: basic, username: u}}\n",
		"partners/b.yaml": "id: b\nendpoints: [{name: e, saga: echo, colour: red, security: {method: bearer, tokens: [{value: t}]}}]\n",
	})
	_, err := Load(path)
	errs := yamlconf.AsErrors(err)
	if len(errs) != 5 {
		t.Fatalf("want 5 errors, got %d:\n%v", len(errs), err)
	}
	for i := 1; i < len(errs); i++ {
		a, b := errs[i-1], errs[i]
		if a.File > b.File || (a.File == b.File && a.Line > b.Line) {
			t.Errorf("errors not sorted: %v before %v", a, b)
		}
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, ".yaml:") {
			t.Errorf("line without file:line:col: %q", line)
		}
	}
}

func TestDuplicatePartnerIDsAcrossFilesAreRejected(t *testing.T) {
	// a.yml and a.yaml both say id: a; only one may own it.
	p := "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n"
	path := writeConfig(t, map[string]string{"partners/a.yaml": p, "partners/a.yml": p})
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), `partner "a" is already defined`) {
		t.Fatalf("got %v", err)
	}
}

// A null list item used to reach validation as a nil pointer and crash the loader.
func TestNullListItemsAreErrorsNotCrashes(t *testing.T) {
	for _, body := range []string{
		"id: p\nendpoints: [null, {name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"id: p\nsites: [null]\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"id: p\nsites: [{id: s, endpoints: [~]}]\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n",
	} {
		_, err := Load(writeConfig(t, map[string]string{"partners/p.yaml": body}))
		if err == nil || !strings.Contains(err.Error(), "p.yaml:") || !strings.Contains(err.Error(), "expected a mapping, got nothing (null)") {
			t.Errorf("%q: err = %v", body, err)
		}
	}
}

// Lookups scan short lists and use a map past indexMin; both must find the same routes,
// with a site's own endpoint winning over the partner's.
func TestLookupShortAndLongLists(t *testing.T) {
	for _, n := range []int{1, indexMin, indexMin + 1, 3 * indexMin} {
		var b strings.Builder
		ep := func(indent, name, token string) {
			fmt.Fprintf(&b, "%s- {name: %s, saga: echo, security: {method: bearer, tokens: [{value: %s}]}}\n", indent, name, token)
		}
		b.WriteString("id: p\nendpoints:\n")
		for i := range n {
			ep("  ", fmt.Sprintf("e%d", i), "partner")
		}
		b.WriteString("sites:\n")
		for s := range n {
			fmt.Fprintf(&b, "  - id: s%d\n    endpoints:\n", s)
			for i := range n {
				ep("      ", fmt.Sprintf("x%d", i), fmt.Sprintf("s%d-x%d", s, i))
			}
			ep("      ", "e0", fmt.Sprintf("s%d-e0", s))
		}
		cfg, err := Load(writeConfig(t, map[string]string{"partners/p.yaml": b.String()}))
		if err != nil {
			t.Fatal(err)
		}
		token := func(r Route) string { return string(r.Endpoint.Security.Resolved().Tokens[0].Reveal()) }
		for i := range n {
			if r, ok := cfg.Lookup("p", "", fmt.Sprintf("e%d", i)); !ok || token(r) != "partner" || r.Site != nil {
				t.Fatalf("n=%d: partner e%d: %+v %v", n, i, r, ok)
			}
		}
		for s := range n {
			site := fmt.Sprintf("s%d", s)
			if r, ok := cfg.Lookup("p", site, "e0"); !ok || token(r) != site+"-e0" || r.Site.ID != site {
				t.Fatalf("n=%d: %s/e0 = %+v %v, want the site's own", n, site, r, ok)
			}
			for i := range n {
				if r, ok := cfg.Lookup("p", site, fmt.Sprintf("x%d", i)); !ok || token(r) != fmt.Sprintf("%s-x%d", site, i) {
					t.Fatalf("n=%d: %s/x%d = %+v %v", n, site, i, r, ok)
				}
				if r, ok := cfg.Lookup("p", site, fmt.Sprintf("e%d", i)); !ok || (i > 0 && token(r) != "partner") {
					t.Fatalf("n=%d: %s/e%d = %+v %v, want the partner's", n, site, i, r, ok)
				}
			}
			if cfg.Partner("p").Site(site) == nil {
				t.Fatalf("n=%d: no site %s", n, site)
			}
		}
		for _, miss := range [][2]string{{"", "x0"}, {"s0", "nope"}, {"nope", "e0"}} {
			if _, ok := cfg.Lookup("p", miss[0], miss[1]); ok {
				t.Errorf("n=%d: lookup %v found something", n, miss)
			}
		}
		if cfg.Partner("p").Site("nope") != nil {
			t.Errorf("n=%d: site nope found", n)
		}
	}
}

// A loaded partner's endpoints live in one array, each pointing at its own security, and
// a caller appending to one endpoint's secrets must not write into the next one's.
func TestPackedEndpointsAreIndependent(t *testing.T) {
	cfg, err := Load(writeScale(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Partner("p00001")
	all := slices.Clone(p.Endpoints)
	for _, s := range p.Sites {
		all = append(all, s.Endpoints...)
	}
	if len(all) != 25 {
		t.Fatalf("%d endpoints", len(all))
	}
	for _, e := range all {
		if e.Security != &e.sec || e.sec.spec != nil || !e.sec.check.Valid() {
			t.Fatalf("%s: security not packed: %+v", e.Name, e.sec)
		}
	}
	first := all[0].Security.Resolved().Secrets
	_ = append(first, security.NewSecret("x"))
	if got := string(all[1].Security.Resolved().Secrets[0].Reveal()); got != "k-p00001-s0-e1" {
		t.Fatalf("neighbour's secret = %q", got)
	}
	_ = append(p.Sites[0].Endpoints, nil)
	if p.Sites[1].Endpoints[0] == nil {
		t.Fatal("appending to one site's endpoints overwrote the next site's")
	}
	// Blocks that differ only in their secrets share the rest.
	if all[0].sec.check.Template() != all[24].sec.check.Template() {
		t.Error("identical security blocks do not share their template")
	}
}

func TestSettingsURLsTheEgressPolicyRefusesAreWarnedAboutWithPositions(t *testing.T) {
	partner := `id: acme
settings:
  crm_url: http://10.0.0.5:9000/api
  public_url: https://crm.example.com/x
  nested: {los: "http://127.0.0.1:8081/metrics", list: ["https://[fd00::5]/", "http://localhost:3000"]}
  meta: http://169.254.169.254/latest
  not_a_url: 10.0.0.5
endpoints:
  - {name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}
sites:
  - id: retail
    settings: {crm_url: "http://192.168.1.10"}
`
	cases := []struct {
		name   string
		server string
		egress string // the partner's own egress block, if any
		want   []string
	}{
		{"every refused URL is named with its line and column under the default policy", "", "", []string{
			"3:12: settings.crm_url: http steps calling http://10.0.0.5:9000 will fail: egress refused: 10.0.0.5 is a private address: add it to egress.allow",
			"5:17: settings.nested.los: http steps calling http://127.0.0.1:8081 will fail: egress refused: 127.0.0.1:8081 is pushbackd's own admin listener: always refused",
			`5:57: settings.nested.list[0]: http steps calling https://[fd00::5] will fail: egress refused: fd00::5 is a unique-local address`,
			"5:79: settings.nested.list[1]: http steps calling http://localhost:3000 will fail: egress refused: localhost (127.0.0.1) is a loopback address",
			"6:9: settings.meta: http steps calling http://169.254.169.254 will fail: egress refused: 169.254.169.254 is a cloud metadata address: always refused",
			"12:25: sites[0].settings.crm_url: http steps calling http://192.168.1.10 will fail: egress refused: 192.168.1.10 is a private address",
		}},
		{"what the server's egress.allow names is not warned about", `egress: {allow: [10.0.0.0/8, 127.0.0.1, "fd00::/8", localhost, 192.168.1.10]}` + "\n", "", []string{
			"5:17: settings.nested.los: http steps calling http://127.0.0.1:8081 will fail: egress refused: 127.0.0.1:8081 is pushbackd's own admin listener",
			"6:9: settings.meta:",
		}},
		{"a partner's list that does not name the address is warned about", `egress: {allow: [10.0.0.0/8, 127.0.0.1, "fd00::/8", localhost, 192.168.1.10]}` + "\n", "egress: {allow: [crm.example.com]}\n", []string{
			"3:12: settings.crm_url: http steps calling http://10.0.0.5:9000 will fail: egress refused: 10.0.0.5:9000 is not in egress.allow of partner acme",
			"5:17: settings.nested.los:",
			"5:57: settings.nested.list[0]:",
			"5:79: settings.nested.list[1]:",
			"6:9: settings.meta:",
			"13:25: sites[0].settings.crm_url:", // a line lower: the egress block is above it
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := partner
			if tc.egress != "" {
				src = strings.Replace(src, "endpoints:", tc.egress+"endpoints:", 1)
			}
			path := writeConfig(t, map[string]string{
				"pushbackd.yaml":     "admin: {listen: 127.0.0.1:8081}\n" + tc.server,
				"partners/acme.yaml": src,
			})
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("a config with refused settings must still load: %v", err)
			}
			file := filepath.Join(filepath.Dir(path), "partners/acme.yaml")
			if len(cfg.Warnings) != len(tc.want) {
				t.Errorf("%d warnings, want %d:\n%v", len(cfg.Warnings), len(tc.want), cfg.Warnings)
			}
			for i, want := range tc.want {
				if i >= len(cfg.Warnings) {
					break
				}
				if got := cfg.Warnings[i].Error(); !strings.HasPrefix(got, file+":"+want) {
					t.Errorf("warning %d:\n got %s\nwant %s:%s...", i, got, file, want)
				}
			}
		})
	}
}

func TestEgressAllowTakesCIDRsWithPorts(t *testing.T) {
	path := writeConfig(t, map[string]string{
		"pushbackd.yaml": `egress: {allow: [crm.example.com, "10.0.0.0/8", "10.0.0.0/8:443", "[fd00::/8]:8443", "fd00::/8", "[::1]"]}` + "\n",
	})
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	path = writeConfig(t, map[string]string{"pushbackd.yaml": "egress:\n  allow:\n    - 10.0.0.0/8\n    - 10.0.0.0/33:443\n"})
	_, err := Load(path)
	errs := yamlconf.AsErrors(err)
	if len(errs) != 1 || errs[0].Line != 4 || errs[0].Column != 7 || !strings.Contains(errs[0].Message, `egress pattern "10.0.0.0/33:443"`) {
		t.Errorf("want one error at 4:7, got %v", err)
	}
}

func TestTheDemoConfigLetsSagasCallThisMachineButNotTheInsideOrItself(t *testing.T) {
	cfg, err := Load("../configs/pushbackd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("the demo config warns: %v", cfg.Warnings)
	}
	lists := cfg.Partner("acme").egress
	own := newEgressCheck(cfg.Server).own
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:9000/tasks", true},
		{"http://localhost:9000/tasks", true},
		{"http://[::1]:9000/tasks", true},
		{"https://crm.example.com/tasks", true},
		{"http://10.0.0.5/", false},
		{"http://169.254.169.254/", false},
		{"http://127.0.0.1:8081/metrics", false}, // the demo's admin listener
		{"http://127.0.0.1:8080/pushback/acme/bearer", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, _ := url.Parse(tc.url)
			if err := saga.CheckEgress(u, lists, own); (err == nil) != tc.ok {
				t.Errorf("allowed %v, want %v: %v", err == nil, tc.ok, err)
			}
		})
	}
}

func TestASecretFileThatNeverEndsIsRefusedAfterItsLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte("k"), 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"/dev/zero", big} {
		t.Run(file+" is refused with its position", func(t *testing.T) {
			path := writeConfig(t, map[string]string{"partners/a.yaml": fmt.Sprintf(`id: a
secrets:
  key: {file: %s}
endpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]
`, file)})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Load(path)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "a.yaml:3:8: secret file "+file+" is over the limit of 65536 bytes") {
				t.Fatalf("err = %v", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("loading allocated %d bytes", grew)
			}
		})
	}
}

func TestPayloadSchemasCompileAtLoad(t *testing.T) {
	partner := func(schema string) string {
		return "id: acme\nendpoints:\n  - name: e\n    saga: echo\n    schema: " + schema + "\n    security: {method: bearer, tokens: [{value: t}]}\n" +
			"  - {name: f, saga: echo, schema: s.json, security: {method: bearer, tokens: [{value: t}]}}\n"
	}
	t.Run("endpoints naming one file share its compiled schema", func(t *testing.T) {
		path := writeConfig(t, map[string]string{"partners/acme.yaml": partner("s.json"), "partners/s.json": `{"type":"object"}`})
		cfg, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := cfg.Lookup("acme", "", "e")
		f, _ := cfg.Lookup("acme", "", "f")
		if e.Endpoint.PayloadSchema() == nil || e.Endpoint.PayloadSchema() != f.Endpoint.PayloadSchema() || e.Endpoint.PayloadSchema().File() != "s.json" {
			t.Fatalf("schemas %p %p", e.Endpoint.PayloadSchema(), f.Endpoint.PayloadSchema())
		}
		if got := e.Endpoint.PayloadSchema().Check("text"); len(got) != 1 {
			t.Fatalf("a string against an object schema: %v", got)
		}
	})
	for _, tc := range []struct {
		name, schema, file, src string
		col                     int
		msg                     string
	}{
		{"a missing schema file is reported at schema", "gone.json", "", "", 13, `endpoint "e": schema gone.json: `},
		{"a schema that is not JSON is reported with its own line and column", "bad.json", "partners/bad.json", "{\n  \"type\": object\n}", 13, `endpoint "e": schema bad.json:2:11: invalid character 'o'`},
		{"a schema that breaks the metaschema says where", "bad.json", "partners/bad.json", `{"properties": {"a": {"minLength": -1}}}`, 13, "not a valid JSON Schema: at /properties/a/minLength"},
		{"an empty schema path is refused", "''", "", "", 13, "schema: the path is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"partners/acme.yaml": partner(tc.schema), "partners/s.json": `{}`}
			if tc.file != "" {
				files[tc.file] = tc.src
			}
			_, err := Load(writeConfig(t, files))
			for _, e := range yamlconf.AsErrors(err) {
				if strings.HasSuffix(e.File, "acme.yaml") && e.Line == 5 && e.Column == tc.col && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("want acme.yaml:5:%d: ...%s...; got\n%v", tc.col, tc.msg, err)
		})
	}
}
