package config_test

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
)

// The JSON Schemas in configs/schema exist for editors (yaml-language-server); the loaders
// stay the source of truth. These tests keep the two from drifting apart: every shipped
// config must pass its schema, files the loader accepts must pass it, and structurally bad
// files must be refused by both.

const schemaDir = "../configs/schema"

// schemaKind is which of the three config file kinds a file is.
type schemaKind string

const (
	kindServer  schemaKind = "pushbackd"
	kindPartner schemaKind = "partner"
	kindSaga    schemaKind = "saga"
)

func (k schemaKind) schemaFile() string { return string(k) + ".schema.json" }

// kindOf tells a file's kind from where it lives (configs/partners/x.yaml) or, for test
// fixtures, from its double extension (x.partner.yaml).
func kindOf(t *testing.T, path string) schemaKind {
	t.Helper()
	base := filepath.Base(path)
	switch {
	case base == "pushbackd.yaml" || strings.HasSuffix(base, ".pushbackd.yaml"):
		return kindServer
	case filepath.Base(filepath.Dir(path)) == "partners" || strings.HasSuffix(base, ".partner.yaml"):
		return kindPartner
	case filepath.Base(filepath.Dir(path)) == "sagas" || strings.HasSuffix(base, ".saga.yaml"):
		return kindSaga
	}
	t.Fatalf("%s: cannot tell which schema applies", path)
	return ""
}

// compileSchemas compiles the three schemas once per test; each test gets its own, so no
// state is shared between tests.
func compileSchemas(t *testing.T) map[schemaKind]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	// Draft 2020-12 leaves format as an annotation; assert it anyway so a "format" added to
	// a schema later is actually checked here rather than silently ignored.
	c.AssertFormat()
	out := map[schemaKind]*jsonschema.Schema{}
	for _, k := range []schemaKind{kindServer, kindPartner, kindSaga} {
		s, err := c.Compile(filepath.Join(schemaDir, k.schemaFile()))
		if err != nil {
			t.Fatalf("compile %s: %v", k.schemaFile(), err)
		}
		out[k] = s
	}
	return out
}

// yamlInstance reads a YAML file as the JSON-shaped value a schema validator expects.
func yamlInstance(t *testing.T, path string) any {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return jsonShape(v)
}

// jsonShape turns any map[any]any the YAML library may produce (a mapping with non-string
// keys) into map[string]any, the only object shape the validator understands; without this
// such a mapping would be judged "not an object" and hide the real result.
func jsonShape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonShape(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonShape(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = jsonShape(e)
		}
		return x
	}
	return v
}

func shippedConfigs(t *testing.T) []string {
	t.Helper()
	files := []string{"../configs/pushbackd.yaml", "../configs/instances.pushbackd.yaml"}
	for _, dir := range []string{"partners", "sagas"} {
		m, err := filepath.Glob(filepath.Join("../configs", dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no shipped files in configs/%s", dir)
		}
		files = append(files, m...)
	}
	return files
}

func TestEveryShippedConfigFileMatchesItsSchema(t *testing.T) {
	schemas := compileSchemas(t)
	for _, f := range shippedConfigs(t) {
		t.Run(strings.TrimPrefix(f, "../"), func(t *testing.T) {
			if err := schemas[kindOf(t, f)].Validate(yamlInstance(t, f)); err != nil {
				t.Errorf("%s does not match %s:\n%v", f, kindOf(t, f).schemaFile(), err)
			}
		})
	}
}

func TestEveryShippedConfigFileNamesItsSchemaOnTheFirstLine(t *testing.T) {
	for _, f := range shippedConfigs(t) {
		t.Run(strings.TrimPrefix(f, "../"), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			first, _ := bufio.NewReader(fh).ReadString('\n')
			const prefix = "# yaml-language-server: $schema="
			if !strings.HasPrefix(first, prefix) {
				t.Fatalf("first line is %q, want a %q modeline", first, prefix)
			}
			ref := strings.TrimSpace(strings.TrimPrefix(first, prefix))
			if got, want := filepath.Base(ref), kindOf(t, f).schemaFile(); got != want {
				t.Errorf("modeline names %s, want %s", got, want)
			}
			// The path is relative to the YAML file, as yaml-language-server resolves it.
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), ref)); err != nil {
				t.Errorf("modeline points at a missing schema: %v", err)
			}
		})
	}
}

// TestSharedDefinitionsAreIdenticalInEverySchema: each schema is self-contained so an editor
// can use it alone, which copies a few definitions; this keeps the copies equal.
func TestSharedDefinitionsAreIdenticalInEverySchema(t *testing.T) {
	defs := map[schemaKind]map[string]any{}
	for _, k := range []schemaKind{kindServer, kindPartner, kindSaga} {
		f, err := os.Open(filepath.Join(schemaDir, k.schemaFile()))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", k.schemaFile(), err)
		}
		d, _ := doc.(map[string]any)["$defs"].(map[string]any)
		defs[k] = d
	}
	for _, shared := range []struct {
		name  string
		kinds []schemaKind
	}{
		{"duration", []schemaKind{kindServer, kindPartner, kindSaga}},
		{"positiveDuration", []schemaKind{kindServer, kindSaga}},
		{"secretRef", []schemaKind{kindServer, kindPartner}},
	} {
		first := defs[shared.kinds[0]][shared.name]
		if first == nil {
			t.Errorf("%s has no $defs/%s", shared.kinds[0].schemaFile(), shared.name)
			continue
		}
		for _, k := range shared.kinds[1:] {
			if !reflect.DeepEqual(first, defs[k][shared.name]) {
				t.Errorf("$defs/%s differs between %s and %s", shared.name, shared.kinds[0].schemaFile(), k.schemaFile())
			}
		}
	}
}

// minimalSaga and minimalPartner complete a config directory around the file under test.
const (
	minimalSaga = `name: echo
steps:
  - name: answer
    respond: {status: 200}
`
	minimalPartner = `id: minimal
endpoints:
  - name: hook
    saga: echo
    security: {method: bearer, tokens: [{value: t}]}
`
)

// loadFixture runs the real loader on fixture: a saga goes through saga.Parse, a partner or
// a pushbackd.yaml through config.Load on a temporary config directory that holds it and
// otherwise only valid files. The fixture's name (up to the first dot) becomes its file
// name, because the loader requires ids and saga names to match file names.
func loadFixture(t *testing.T, fixture string) error {
	t.Helper()
	src, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	stem, _, _ := strings.Cut(filepath.Base(fixture), ".")
	kind := kindOf(t, fixture)
	if kind == kindSaga {
		if _, errs := saga.Parse(filepath.Join("sagas", stem+".yaml"), src); len(errs) > 0 {
			return errs
		}
		return nil
	}
	dir := t.TempDir()
	files := map[string]string{
		"pushbackd.yaml":        "",
		"sagas/echo.yaml":       minimalSaga,
		"partners/minimal.yaml": minimalPartner,
	}
	// Payload schemas beside a fixture go beside the partner file, where it names them.
	jsons, _ := filepath.Glob(filepath.Join(filepath.Dir(fixture), "*.json"))
	for _, j := range jsons {
		b, err := os.ReadFile(j)
		if err != nil {
			t.Fatal(err)
		}
		files["partners/"+filepath.Base(j)] = string(b)
	}
	if kind == kindServer {
		files["pushbackd.yaml"] = string(src)
		// Certificates beside a server fixture go beside pushbackd.yaml, where tls names them.
		pems, _ := filepath.Glob(filepath.Join(filepath.Dir(fixture), stem+".*.pem"))
		for _, p := range pems {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Base(p)] = string(b)
		}
	} else {
		delete(files, "partners/minimal.yaml")
		files["partners/"+stem+".yaml"] = string(src)
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
	_, err = config.Load(filepath.Join(dir, "pushbackd.yaml"))
	return err
}

// instanceLocations lists where in the instance each error of the tree points, as JSON
// pointers, so a test can check the schema refused the file for the intended reason.
func instanceLocations(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		out = append(out, "/"+strings.Join(e.InstanceLocation, "/"))
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

func TestFilesTheLoaderAcceptsMatchTheSchema(t *testing.T) {
	// everything.partner.yaml reads a secret from the environment, as production configs do.
	t.Setenv("PUSHBACKD_SCHEMA_TEST_SECRET", "from-env")
	schemas := compileSchemas(t)
	files, err := filepath.Glob("testdata/schema/good/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := loadFixture(t, f); err != nil {
				t.Fatalf("the loader refuses a fixture meant to be valid:\n%v", err)
			}
			if err := schemas[kindOf(t, f)].Validate(yamlInstance(t, f)); err != nil {
				t.Errorf("the loader accepts %s but the schema refuses it:\n%v", f, err)
			}
		})
	}
}

// Besides the fixtures, every pushbackd.yaml in the repository that the loader accepts (the
// shipped one, test configs) and every pushbackd.yaml example in the README must pass the
// schema: an editor that flags a documented key as unknown teaches users the docs are wrong.
func TestServerConfigsTheLoaderAcceptsAndTheReadmeShowsMatchTheSchema(t *testing.T) {
	schema := compileSchemas(t)[kindServer]
	var files []string
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "..") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (d.Name() == "pushbackd.yaml" || strings.HasSuffix(d.Name(), ".pushbackd.yaml")) &&
			!strings.Contains(filepath.ToSlash(p), "/bad/") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil || len(files) < 2 {
		t.Fatalf("found %v: %v", files, err)
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(filepath.ToSlash(f), "../"), func(t *testing.T) {
			if _, err := config.LoadServer(f); err != nil {
				t.Skipf("the loader refuses it (not a file to check here): %v", err)
			}
			if err := schema.Validate(yamlInstance(t, f)); err != nil {
				t.Errorf("the loader accepts %s but the schema refuses it:\n%v", f, err)
			}
		})
	}

	blocks := readmeServerBlocks(t)
	if len(blocks) == 0 {
		t.Fatal("the README shows no pushbackd.yaml example")
	}
	for _, b := range blocks {
		t.Run(fmt.Sprintf("README.md line %d", b.line), func(t *testing.T) {
			var v any
			if err := yaml.Unmarshal([]byte(b.text), &v); err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(jsonShape(v)); err != nil {
				t.Errorf("README.md:%d shows a pushbackd.yaml the schema refuses:\n%v", b.line, err)
			}
		})
	}
}

type readmeBlock struct {
	line int
	text string
}

// readmeServerBlocks are the README's yaml blocks that are pushbackd.yaml (or part of one):
// those whose top-level keys are all keys of config.Server. A partner or saga block has
// keys (id, endpoints, name, steps, security) that are not.
func readmeServerBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	src, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	serverKeys := map[string]bool{}
	st := reflect.TypeFor[config.Server]()
	for i := range st.NumField() {
		if name, _, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ","); name != "" {
			serverKeys[name] = true
		}
	}
	var out []readmeBlock
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```yaml" {
			continue
		}
		start := i + 1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		text := strings.Join(lines[start:i], "\n")
		var m map[string]any
		if yaml.Unmarshal([]byte(text), &m) != nil || len(m) == 0 {
			continue
		}
		server := true
		for k := range m {
			server = server && serverKeys[k]
		}
		if server {
			out = append(out, readmeBlock{start + 1, text})
		}
	}
	return out
}

// Every key the loader decodes in pushbackd.yaml (config.Server's yaml tags, all the way
// down) is a property the schema declares: with additionalProperties false, a key missing
// from the schema is one an editor underlines although the loader takes it.
func TestEveryServerKeyTheLoaderTakesIsInTheSchema(t *testing.T) {
	f, err := os.Open(filepath.Join(schemaDir, kindServer.schemaFile()))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	root := doc.(map[string]any)
	defs, _ := root["$defs"].(map[string]any)
	// properties follows a $ref into $defs, where a shared shape (a secret reference) lives.
	var properties func(node map[string]any) map[string]any
	properties = func(node map[string]any) map[string]any {
		if p, ok := node["properties"].(map[string]any); ok && len(p) > 0 {
			if ref, ok := node["$ref"].(string); ok {
				if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any); ok {
					merged := map[string]any{}
					for k, v := range properties(d) {
						merged[k] = v
					}
					for k, v := range p {
						merged[k] = v
					}
					return merged
				}
			}
			return p
		}
		if ref, ok := node["$ref"].(string); ok {
			if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any); ok {
				return properties(d)
			}
		}
		return nil
	}
	var walk func(path string, typ reflect.Type, node map[string]any)
	walk = func(path string, typ reflect.Type, node map[string]any) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[config.SecretRef]() {
			return
		}
		props := properties(node)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := strings.TrimPrefix(path+"."+name, ".")
			sub, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("the loader takes %s but %s does not declare it", key, kindServer.schemaFile())
				continue
			}
			walk(key, typ.Field(i).Type, sub)
		}
	}
	walk("", reflect.TypeFor[config.Server](), root)
}

func TestStructurallyBadFilesAreRefusedByBothLoaderAndSchema(t *testing.T) {
	schemas := compileSchemas(t)
	tests := []struct {
		name     string
		file     string // in testdata/schema/bad
		loader   string // part of the loader's message
		schemaAt string // JSON pointer where a schema error must point
	}{
		// pushbackd.yaml
		{"an unknown server key is refused", "unknown-key.pushbackd.yaml", `unknown key "listen_addr"`, "/"},
		{"a log format other than json or console is refused", "bad-log-format.pushbackd.yaml", "log.format must be json or console", "/log/format"},
		{"zero workers is refused", "zero-workers.pushbackd.yaml", "limits.workers must be positive", "/limits/workers"},
		{"a zero sync timeout is refused", "zero-sync-timeout.pushbackd.yaml", "limits.sync_timeout must be positive", "/limits/sync_timeout"},
		{"a proxy header without trusted proxies is refused", "proxy-without-trusted.pushbackd.yaml", "proxy.trusted must list", "/proxy"},
		{"a listen address without a port is refused", "listen-without-port.pushbackd.yaml", `"localhost" is not host:port`, "/listen"},
		{"a bare admin token is refused", "bare-admin-token.pushbackd.yaml", "not a bare string", "/admin/token"},
		{"an admin token shorter than 32 characters is refused", "short-admin-token.pushbackd.yaml", "admin.token must be at least 32 characters", "/admin/token/value"},
		{"an admin host with a port is refused", "admin-host-with-port.pushbackd.yaml", `admin.hosts: "admin.example.com:8081" must be a host name`, "/admin/hosts/0"},
		{"an unknown store driver is refused", "unknown-store-driver.pushbackd.yaml", `store.driver must be bbolt or postgres, not "sqlite"`, "/store/driver"},

		// partners/<id>.yaml
		{"an unknown endpoint key is refused", "unknown-key.partner.yaml", `unknown key "retries"`, "/endpoints/0"},
		{"an endpoint without a saga is refused", "missing-saga.partner.yaml", `missing required key "saga"`, "/endpoints/0"},
		{"an endpoint without security is refused", "no-security.partner.yaml", "has no security method", "/endpoints/0"},
		{"a partner without any endpoint is refused", "no-endpoints.partner.yaml", `partner "no-endpoints" has no endpoints`, "/"},
		{"an endpoint name with upper case and _ is refused", "bad-endpoint-name.partner.yaml", `endpoint name "Hook_1" must match`, "/endpoints/0/name"},
		{"a mode other than async or sync is refused", "bad-mode.partner.yaml", "mode must be async or sync", "/endpoints/0/mode"},
		{"an accept_status outside 2xx is refused", "accept-status-not-2xx.partner.yaml", "accept_status must be a 2xx status", "/endpoints/0/accept_status"},
		{"a negative max_in_flight is refused", "negative-max-in-flight.partner.yaml", "max_in_flight must not be negative", "/endpoints/0/max_in_flight"},
		{"an unknown security method is refused", "bad-method.partner.yaml", `unknown security method "hmac"`, "/endpoints/0/security/method"},
		{"a key of another security method is refused", "key-of-other-method.partner.yaml", `key "password" does not apply to method signature`, "/endpoints/0/security"},
		{"basic without a password is refused", "basic-without-password.partner.yaml", "needs a password", "/endpoints/0/security"},
		{"api_key with both header and query is refused", "api-key-header-and-query.partner.yaml", "exactly one of header or query", "/endpoints/0/security"},
		{"a signature encoding other than base64 or hex is refused", "bad-encoding.partner.yaml", "encoding must be base64 or hex", "/endpoints/0/security/encoding"},
		{"a tolerance that is not a Go duration is refused", "bad-tolerance.partner.yaml", `invalid duration "5 minutes"`, "/endpoints/0/security/tolerance"},
		{"an unknown security preset is refused", "unknown-preset.partner.yaml", `unknown security preset "paypal"`, "/endpoints/0/security/preset"},
		{"a preset beside a method is refused", "preset-and-method.partner.yaml", "method and preset are mutually exclusive", "/endpoints/0/security"},
		{"a signed template without {body} is refused", "signed-without-body.partner.yaml", "signed must contain {body}", "/endpoints/0/security/signed"},
		{"an id on a secret that cannot have one is refused", "secret-id-on-bearer.partner.yaml", `unknown key "id"`, "/endpoints/0/security/tokens/0"},
		{"a signature part name with = is refused", "bad-part-name.partner.yaml", `signature_part "v1=" must be a part name`, "/endpoints/0/security/signature_part"},
		{"a key of another method under a preset is refused", "key-of-other-method-under-preset.partner.yaml", `key "username" does not apply to method signature`, "/endpoints/0/security"},
		{"a bare string where a secret reference belongs is refused", "bare-secret.partner.yaml", "not a bare string", "/endpoints/0/security/tokens/0"},
		{"a secret reference with two sources is refused", "two-secret-sources.partner.yaml", "exactly one of env, file or value", "/endpoints/0/security/tokens/0"},
		{"a secret reference with an empty env name is refused", "empty-secret-env.partner.yaml", "the variable name is empty", "/endpoints/0/security/tokens/0/env"},

		// sagas/<name>.yaml
		{"an unknown saga key is refused", "unknown-saga-key.saga.yaml", `unknown key "descripton"`, "/"},
		{"a saga without steps is refused", "missing-steps.saga.yaml", `missing required key "steps"`, "/"},
		{"an empty step list is refused", "empty-steps.saga.yaml", "steps is empty", "/steps"},
		{"a step with two actions is refused", "two-actions.saga.yaml", "a step has exactly one action, this one has set and respond", "/steps/0"},
		{"a step without an action is refused", "no-action.saga.yaml", `step "nothing" has no action`, "/steps/0"},
		{"an unknown step key is refused", "unknown-step-key.saga.yaml", `unknown key "retries" in a step`, "/steps/0"},
		{"a step name with upper case and - is refused", "bad-step-name.saga.yaml", `bad step name "Fetch-Loan"`, "/steps/0/name"},
		{"zero retry attempts are refused", "negative-attempts.saga.yaml", "retry.attempts must be at least 1", "/steps/0/retry/attempts"},
		{"a timeout that is not a Go duration is refused", "bad-duration.saga.yaml", `invalid duration "5 seconds"`, "/steps/0/http/timeout"},
		{"a debounce without wait is refused", "debounce-without-wait.saga.yaml", `missing required key "wait"`, "/debounce"},
		{"an http action without url is refused", "http-without-url.saga.yaml", `missing required key "url"`, "/steps/0/http"},
		{"an unknown http method is refused", "bad-http-method.saga.yaml", `unknown method "FETCH"`, "/steps/0/http/method"},
		{"an http action with two bodies is refused", "two-bodies.saga.yaml", "json and form both set", "/steps/0/http"},
		{"an expected status outside 100-599 is refused", "expect-not-a-status.saga.yaml", "expect: 99 is not an HTTP status", "/steps/0/http/expect/0"},
		{"a set variable name with - is refused", "bad-var-name.saga.yaml", `bad variable name "loan-id"`, "/steps/0/set"},
		{"an unknown kv op is refused", "bad-kv-op.saga.yaml", `unknown op "upsert"`, "/steps/0/kv/op"},
		{"a kv put without a value is refused", "kv-put-without-value.saga.yaml", "op put needs a value", "/steps/0/kv"},
		{"a kv get with a ttl is refused", "kv-get-with-ttl.saga.yaml", "ttl is only for op put", "/steps/0/kv"},
		{"a respond status outside 100-599 is refused", "bad-status.saga.yaml", "999 is not an HTTP status", "/steps/0/respond/status"},
		{"a fail mapping without message is refused", "fail-without-message.saga.yaml", `unknown key "reason"`, "/steps/0/fail"},
		{"an unknown log level is refused", "bad-log-level.saga.yaml", `unknown level "verbose"`, "/steps/0/log/level"},
		{"a compensation that responds is refused", "compensate-responds.saga.yaml", "compensate cannot respond", "/steps/0/compensate"},
		{"an on_failure with two actions is refused", "on-failure-two-actions.saga.yaml", "two actions, log and fail", "/on_failure"},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.file] = true
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata/schema/bad", tc.file)
			err := loadFixture(t, path)
			if err == nil {
				t.Fatalf("the loader accepts %s", tc.file)
			}
			if !strings.Contains(err.Error(), tc.loader) {
				t.Errorf("the loader refuses %s for another reason; want %q in:\n%v", tc.file, tc.loader, err)
			}
			serr := schemas[kindOf(t, path)].Validate(yamlInstance(t, path))
			if serr == nil {
				t.Fatalf("the schema accepts %s", tc.file)
			}
			locs := instanceLocations(serr)
			found := false
			for _, l := range locs {
				found = found || l == tc.schemaAt || strings.HasPrefix(l, strings.TrimSuffix(tc.schemaAt, "/")+"/")
			}
			if !found {
				t.Errorf("the schema refuses %s, but not at %s (errors at %v):\n%v", tc.file, tc.schemaAt, locs, serr)
			}
		})
	}
	// A fixture without a row would never be checked.
	all, _ := filepath.Glob("testdata/schema/bad/*.yaml")
	for _, f := range all {
		if !covered[filepath.Base(f)] {
			t.Errorf("%s has no row in this table", f)
		}
	}
}

// TestPartnerSchemaAgreesWithTheSecurityTable: the schema's security block is written by
// hand for editors; the security package's method table is what the loader obeys. Every
// method's and preset's keys, and which are required, must be the same in both.
func TestPartnerSchemaAgreesWithTheSecurityTable(t *testing.T) {
	f, err := os.Open(filepath.Join(schemaDir, kindPartner.schemaFile()))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	sec := doc.(map[string]any)["$defs"].(map[string]any)["security"].(map[string]any)
	props := sec["properties"].(map[string]any)
	strs := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(string))
		}
		slices.Sort(out)
		return out
	}
	methodNames := []string{}
	for _, m := range security.Methods() {
		methodNames = append(methodNames, string(m))
	}
	slices.Sort(methodNames)
	if got := strs(props["method"].(map[string]any)["enum"]); !slices.Equal(got, methodNames) {
		t.Errorf("method enum %v, the table has %v", got, methodNames)
	}
	presets := slices.Sorted(slices.Values(security.Presets()))
	if got := strs(props["preset"].(map[string]any)["enum"]); !slices.Equal(got, presets) {
		t.Errorf("preset enum %v, the table has %v", got, presets)
	}
	// branch finds the allOf entry whose if names value for field (method or preset).
	branch := func(field, value string) map[string]any {
		for _, b := range sec["allOf"].([]any) {
			cond := b.(map[string]any)["if"].(map[string]any)["properties"].(map[string]any)[field]
			if cond == nil {
				continue
			}
			c := cond.(map[string]any)
			if c["const"] == value || (c["enum"] != nil && slices.Contains(strs(c["enum"]), value)) {
				return b.(map[string]any)["then"].(map[string]any)
			}
		}
		return nil
	}
	check := func(t *testing.T, field, value string, m security.Method) {
		then := branch(field, value)
		if then == nil {
			t.Fatalf("no allOf branch for %s %s", field, value)
		}
		keys, _ := security.MethodKeys(m)
		want, required := []string{field, "allow_ips"}, []string{}
		for _, k := range keys {
			want = append(want, k.Name)
			if props[k.Name] == nil {
				t.Errorf("key %s has no property", k.Name)
			}
			if k.Need != "" {
				required = append(required, k.Name)
			}
		}
		slices.Sort(want)
		slices.Sort(required)
		if got := strs(then["propertyNames"].(map[string]any)["enum"]); !slices.Equal(got, want) {
			t.Errorf("keys %v, the table has %v", got, want)
		}
		if got := strs(then["required"]); !slices.Equal(got, required) {
			t.Errorf("required %v, the table has %v", got, required)
		}
	}
	for _, m := range security.Methods() {
		t.Run("method "+string(m)+" has the table's keys", func(t *testing.T) { check(t, "method", string(m), m) })
	}
	for _, p := range security.Presets() {
		m, _ := security.PresetMethod(p)
		t.Run("preset "+p+" has its method's keys", func(t *testing.T) { check(t, "preset", p, m) })
	}
}

// TestServerSchemaDefaultsAreTheLoadersDefaults: an editor shows the schema's "default" as
// what an unset key means, so each must be config.Defaults()'s value for that key.
func TestServerSchemaDefaultsAreTheLoadersDefaults(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(schemaDir, kindServer.schemaFile()))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := yaml.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	checked := 0
	var walk func(path string, props map[string]any, v reflect.Value)
	walk = func(path string, props map[string]any, v reflect.Value) {
		for key, p := range props {
			prop, _ := p.(map[string]any)
			field, ok := fieldByYAMLKey(v, key)
			if !ok {
				continue // a key the loader keeps elsewhere (tls, secrets)
			}
			if sub, ok := prop["properties"].(map[string]any); ok && field.Kind() == reflect.Struct {
				walk(path+key+".", sub, field)
			}
			want, ok := prop["default"]
			if !ok {
				continue
			}
			checked++
			if got := field.Interface(); !sameDefault(got, want) {
				t.Errorf("%s%s: the schema's default is %v, the loader's %v", path, key, want, got)
			}
		}
	}
	walk("", schema["properties"].(map[string]any), reflect.ValueOf(config.Defaults()))
	if checked < 20 {
		t.Fatalf("checked %d defaults; the walk lost its way", checked)
	}
}

func fieldByYAMLKey(v reflect.Value, key string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func sameDefault(got, want any) bool {
	switch g := got.(type) {
	case time.Duration:
		s, _ := want.(string)
		d, err := time.ParseDuration(s)
		return err == nil && d == g
	case []string:
		w, _ := want.([]any)
		return len(g) == 0 && w != nil && len(w) == 0
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}
