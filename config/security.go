package config

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// methodKeys lists the keys each method takes besides `method` and `allow_ips`. A key of
// another method is an error: `password:` under a signature endpoint is a mistake that would
// otherwise silently leave the endpoint checked by something the admin did not mean.
var methodKeys = map[security.Method][]string{
	security.Basic:            {"username", "password"},
	security.Token:            {"token", "secret", "token_header", "secret_header"},
	security.Signature:        {"header", "secrets", "encoding", "prefix"},
	security.StandardWebhooks: {"secrets", "tolerance"},
	security.APIKey:           {"header", "query", "keys"},
	security.Bearer:           {"tokens"},
}

// securitySpec is a security block as written. It lives while its file loads: build
// checks it, resolves its secrets and keeps in Security only what verification needs.
type securitySpec struct {
	Pos          yamlconf.Pos
	Method       security.Method `yaml:"method"`
	Username     string          `yaml:"username"`
	Password     SecretRef       `yaml:"password"`
	Token        SecretRef       `yaml:"token"`
	Secret       SecretRef       `yaml:"secret"`
	TokenHeader  string          `yaml:"token_header"`
	SecretHeader string          `yaml:"secret_header"`
	Header       string          `yaml:"header"`
	Secrets      []SecretRef     `yaml:"secrets"`
	Encoding     string          `yaml:"encoding"`
	Prefix       string          `yaml:"prefix"`
	Tolerance    time.Duration   `yaml:"tolerance"`
	Query        string          `yaml:"query"`
	Keys         []SecretRef     `yaml:"keys"`
	Tokens       []SecretRef     `yaml:"tokens"`
	AllowIPs     []string        `yaml:"allow_ips"`

	invalid bool // did not decode cleanly; build skips it, its errors already told
}

// UnmarshalYAMLNode decodes the block as written, for build to turn into what is kept.
func (s *Security) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	s.spec = &securitySpec{}
	s.spec.UnmarshalYAMLNode(d, n)
	s.Method = s.spec.Method
}

// UnmarshalYAMLNode reads `method` first so that keys can be checked against it.
func (s *securitySpec) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	type plain securitySpec // no UnmarshalYAMLNode: decodes field by field
	s.Pos = yamlconf.PosOf(n)
	s.invalid = true // until decoded cleanly; build then skips it, its errors already told
	before := len(d.Errors())
	m := d.Mapping(n, "a security block like {method: basic, ...}")
	if m == nil {
		return
	}
	var methodNode ast.Node
	for _, mv := range m.Values {
		if d.KeyName(mv) == "method" {
			methodNode = mv.Value
		}
	}
	if methodNode == nil {
		d.Errorf(m, "security needs a method (%s)", methodList())
		return
	}
	name, _ := d.Scalar(methodNode)
	method := security.Method(name)
	allowed, known := methodKeys[method]
	if !known {
		d.Errorf(methodNode, "unknown security method %q (known: %s)", name, methodList())
		return
	}
	// Keys of another method are reported here and left out of the decode; the filtered
	// copy is made only when there is one to leave out, which a valid file never has.
	var kept []*ast.MappingValueNode
	for i, mv := range m.Values {
		key := d.KeyName(mv)
		if key != "method" && key != "allow_ips" && !slices.Contains(allowed, key) && isSecurityKey(key) {
			d.Errorf(mv.Key, "key %q does not apply to method %s (it takes: %s)", key, method, strings.Join(allowed, ", "))
			if kept == nil {
				kept = append(make([]*ast.MappingValueNode, 0, len(m.Values)), m.Values[:i]...)
			}
			continue
		}
		if kept != nil {
			kept = append(kept, mv)
		}
	}
	body := m
	if kept != nil {
		body = &ast.MappingNode{BaseNode: m.BaseNode, Start: m.Start, Values: kept}
	}
	d.Decode(body, (*plain)(s))
	s.Pos = yamlconf.PosOf(m)
	s.invalid = len(d.Errors()) > before
}

func isSecurityKey(key string) bool {
	for _, keys := range methodKeys {
		if slices.Contains(keys, key) {
			return true
		}
	}
	return false
}

// securityKey is everything of a security.Config but its secrets, as written: endpoints
// whose blocks agree on it share one template.
type securityKey struct {
	method                                                        security.Method
	username, tokenHeader, secretHeader, header, encoding, prefix string
	query, allowIPs                                               string
	tolerance                                                     time.Duration
}

// securityShare holds the templates handed out so far; one per loading worker.
type securityShare map[securityKey]*security.Template

// methods are the security.Method constants: a loaded block names its method with one of
// them, not with a copy of the text in the file.
var methods = security.Methods()

// build checks what each method requires, resolves the secrets and compiles the verifier.
// It leaves s with its method and verifier, and drops the spec.
func (s *Security) build(d *yamlconf.Decoder, dir string, share securityShare) {
	w := s.spec
	s.spec = nil
	if w == nil || w.invalid {
		return
	}
	before := len(d.Errors())
	need := func(ok bool, what string) {
		if !ok {
			d.ErrorAt(w.Pos, "security method %s needs %s", w.Method, what)
		}
	}
	resolveAll := func(refs []SecretRef) []security.Secret {
		out := make([]security.Secret, 0, len(refs))
		for i := range refs {
			refs[i].resolve(d, dir)
			out = append(out, refs[i].Secret)
		}
		return out
	}
	var secrets []security.Secret
	switch w.Method {
	case security.Basic:
		need(w.Username != "", "a username")
		need(w.Password.IsSet(), "a password (a secret reference)")
		w.Password.resolve(d, dir)
		secrets = []security.Secret{w.Password.Secret}
	case security.Token:
		need(w.Token.IsSet(), "a token (a secret reference)")
		need(w.Secret.IsSet(), "a secret (a secret reference)")
		w.Token.resolve(d, dir)
		w.Secret.resolve(d, dir)
		secrets = []security.Secret{w.Token.Secret, w.Secret.Secret}
	case security.Signature, security.StandardWebhooks:
		need(len(w.Secrets) > 0, "secrets: a list of at least one secret reference")
		secrets = resolveAll(w.Secrets)
	case security.APIKey:
		need((w.Header == "") != (w.Query == ""), "exactly one of header or query")
		need(len(w.Keys) > 0, "keys: a list of at least one secret reference")
		secrets = resolveAll(w.Keys)
	case security.Bearer:
		need(len(w.Tokens) > 0, "tokens: a list of at least one secret reference")
		secrets = resolveAll(w.Tokens)
	}
	var allow []netip.Prefix
	if len(w.AllowIPs) > 0 {
		allow = parsePrefixes(d, nil, w.Pos, w.AllowIPs)
	}
	if len(d.Errors()) > before {
		return
	}
	method := w.Method
	if i := slices.Index(methods, method); i >= 0 {
		method = methods[i]
	}
	key := securityKey{method: method, username: w.Username, tokenHeader: w.TokenHeader, secretHeader: w.SecretHeader,
		header: w.Header, encoding: w.Encoding, prefix: w.Prefix, query: w.Query,
		allowIPs: strings.Join(w.AllowIPs, "\x00"), tolerance: w.Tolerance}
	cfg := security.Config{Method: method, Username: w.Username, TokenHeader: w.TokenHeader, SecretHeader: w.SecretHeader,
		Header: w.Header, Encoding: w.Encoding, Prefix: w.Prefix, Tolerance: w.Tolerance, Query: w.Query, AllowIPs: allow}
	switch method {
	case security.Basic:
		cfg.Password = secrets[0]
	case security.Token:
		cfg.Token, cfg.TokenSecret = secrets[0], secrets[1]
	case security.Signature, security.StandardWebhooks:
		cfg.Secrets = secrets
	case security.APIKey:
		cfg.Keys = secrets
	case security.Bearer:
		cfg.Tokens = secrets
	}
	check, err := security.Compile(cfg, share[key])
	if err != nil {
		d.ErrorAt(w.Pos, "security: %v", err)
		return
	}
	s.Method, s.check = method, check
	share[key] = check.Template()
}
