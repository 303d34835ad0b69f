package config

import (
	"slices"
	"strings"

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

// UnmarshalYAMLNode reads `method` first so that keys can be checked against it.
func (s *Security) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	type plain Security // no UnmarshalYAMLNode: decodes field by field
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

// build checks what each method requires, resolves the secrets and returns the verifier.
func (s *Security) build(d *yamlconf.Decoder, dir string) security.Verifier {
	if s.invalid {
		return nil
	}
	before := len(d.Errors())
	need := func(ok bool, what string) {
		if !ok {
			d.ErrorAt(s.Pos, "security method %s needs %s", s.Method, what)
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
	switch s.Method {
	case security.Basic:
		need(s.Username != "", "a username")
		need(s.Password.IsSet(), "a password (a secret reference)")
		s.Password.resolve(d, dir)
	case security.Token:
		need(s.Token.IsSet(), "a token (a secret reference)")
		need(s.Secret.IsSet(), "a secret (a secret reference)")
		s.Token.resolve(d, dir)
		s.Secret.resolve(d, dir)
	case security.Signature, security.StandardWebhooks:
		need(len(s.Secrets) > 0, "secrets: a list of at least one secret reference")
		s.secrets = resolveAll(s.Secrets)
	case security.APIKey:
		need((s.Header == "") != (s.Query == ""), "exactly one of header or query")
		need(len(s.Keys) > 0, "keys: a list of at least one secret reference")
		s.secrets = resolveAll(s.Keys)
	case security.Bearer:
		need(len(s.Tokens) > 0, "tokens: a list of at least one secret reference")
		s.secrets = resolveAll(s.Tokens)
	}
	if len(s.AllowIPs) > 0 {
		s.allow = parsePrefixes(d, nil, s.Pos, s.AllowIPs)
	}
	if len(d.Errors()) > before {
		return nil
	}
	v, err := security.New(s.config())
	if err != nil {
		d.ErrorAt(s.Pos, "security: %v", err)
		return nil
	}
	s.built = true
	return v
}

// config is the security.Config the block describes, from the fields as decoded and the
// secrets build resolved.
func (s *Security) config() security.Config {
	c := security.Config{
		Method:       s.Method,
		Username:     s.Username,
		TokenHeader:  s.TokenHeader,
		SecretHeader: s.SecretHeader,
		Header:       s.Header,
		Encoding:     s.Encoding,
		Prefix:       s.Prefix,
		Tolerance:    s.Tolerance,
		Query:        s.Query,
		AllowIPs:     s.allow,
	}
	switch s.Method {
	case security.Basic:
		c.Password = s.Password.Secret
	case security.Token:
		c.Token, c.TokenSecret = s.Token.Secret, s.Secret.Secret
	case security.Signature, security.StandardWebhooks:
		c.Secrets = s.secrets
	case security.APIKey:
		c.Keys = s.secrets
	case security.Bearer:
		c.Tokens = s.secrets
	}
	return c
}
