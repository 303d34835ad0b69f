package config

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// securitySpec is a security block as written. It lives while its file loads: build
// resolves its secrets, compiles it and keeps in Security only what verification needs.
// Which keys a method takes, and what each holds, come from the security package's table:
// nothing here names a method.
type securitySpec struct {
	Pos      yamlconf.Pos
	node     *ast.MappingNode // the block, for positioning errors found at build (alive until the file is done)
	cfg      security.Config  // what was written but secrets and allow_ips
	keys     []security.Key   // the method's keys
	set      []string         // the keys written
	secrets  []pendingSecrets
	allowIPs []string
	allowAt  ast.Node

	// invalid is set when the block has no usable method (not a mapping, no or an unknown
	// method or preset): build skips it, its errors already told.
	invalid bool
	// told are the keys whose problems are already reported (a value that did not decode, a
	// secret that did not resolve, a required key that is missing): build still checks
	// the rest of the block, so every problem is told at once (DESIGN §3), but drops the
	// method's own complaints about these keys, which would only repeat them.
	told []string
}

// pendingSecrets are a secret key's references, resolved by build.
type pendingSecrets struct {
	key  security.Key
	refs []SecretRef
	ids  []string // for keys whose secrets may carry ids; nil otherwise
}

// keyedSecretRef is a secret reference that may carry an id: {id: sub-1, env: NAME}.
type keyedSecretRef struct {
	ID string
	SecretRef
}

// UnmarshalYAMLNode takes `id` out and decodes the rest as a SecretRef.
func (r *keyedSecretRef) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	var m *ast.MappingNode
	switch t := d.Resolve(n).(type) {
	case *ast.MappingNode:
		m = t
	case *ast.MappingValueNode:
		m = &ast.MappingNode{BaseNode: t.BaseNode, Start: t.Start, Values: []*ast.MappingValueNode{t}}
	}
	if m == nil {
		r.SecretRef.UnmarshalYAMLNode(d, n)
		return
	}
	rest := make([]*ast.MappingValueNode, 0, len(m.Values))
	for _, mv := range m.Values {
		if d.KeyName(mv) != "id" {
			rest = append(rest, mv)
			continue
		}
		d.Decode(mv.Value, &r.ID)
		if r.ID == "" {
			d.Errorf(mv.Value, "id: the key id is empty")
		}
	}
	if len(rest) == len(m.Values) {
		r.SecretRef.UnmarshalYAMLNode(d, n)
		return
	}
	r.SecretRef.UnmarshalYAMLNode(d, &ast.MappingNode{BaseNode: m.BaseNode, Start: m.Start, IsFlowStyle: m.IsFlowStyle, Values: rest})
	r.SecretRef.Pos = yamlconf.PosOf(n)
}

// UnmarshalYAMLNode decodes the block as written, for build to turn into what is kept.
func (s *Security) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	s.spec = &securitySpec{}
	s.spec.UnmarshalYAMLNode(d, n)
	s.Method = s.spec.cfg.Method
}

// UnmarshalYAMLNode reads `method` or `preset` first, so that the other keys can be checked
// against the method's, and decodes each by the kind of value the method's table says it
// holds.
func (s *securitySpec) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	s.Pos = yamlconf.PosOf(n)
	s.invalid = true // until the method is known; build then skips it, its errors already told
	m := d.Mapping(n, "a security block like {method: basic, ...}")
	if m == nil {
		return
	}
	s.node, s.Pos = m, yamlconf.PosOf(m)
	var methodNode, presetNode ast.Node
	for _, mv := range m.Values {
		switch d.KeyName(mv) {
		case "method":
			methodNode = mv.Value
		case "preset":
			presetNode = mv.Value
		}
	}
	var method security.Method
	switch {
	case methodNode == nil && presetNode == nil:
		d.Errorf(m, "security needs a method (%s) or a preset (%s)", methodList(), presetList())
		return
	case methodNode != nil && presetNode != nil:
		d.Errorf(presetNode, "method and preset are mutually exclusive: a preset names its method")
		return
	case presetNode != nil:
		name, _ := d.Scalar(presetNode)
		pm, ok := security.PresetMethod(name)
		if !ok {
			d.Errorf(presetNode, "unknown security preset %q (known: %s)", name, presetList())
			return
		}
		s.cfg.Preset, method = name, pm
	default:
		name, _ := d.Scalar(methodNode)
		if i := slices.Index(methods, security.Method(name)); i >= 0 {
			method = methods[i] // the constant, not the file's copy of the word
		} else {
			d.Errorf(methodNode, "unknown security method %q (known: %s)", name, methodList())
			return
		}
	}
	s.cfg.Method = method
	s.invalid = false
	s.keys, _ = security.MethodKeys(method)
	for _, mv := range m.Values {
		name := d.KeyName(mv)
		switch name {
		case "method", "preset":
			continue
		case "allow_ips":
			d.Decode(mv.Value, &s.allowIPs)
			s.allowAt = mv.Value
			continue
		}
		i := slices.IndexFunc(s.keys, func(k security.Key) bool { return k.Name == name })
		if i < 0 {
			if security.IsKey(name) {
				d.Errorf(mv.Key, "key %q does not apply to method %s (it takes: %s)", name, method, keyNames(s.keys))
			} else {
				d.Errorf(mv.Key, "unknown key %q (method %s takes: %s, allow_ips)", name, method, keyNames(s.keys))
			}
			continue
		}
		if slices.Contains(s.set, name) {
			d.Errorf(mv.Key, "key %q appears twice", name)
			continue
		}
		s.set = append(s.set, name)
		before := len(d.Errors())
		s.decodeKey(d, s.keys[i], mv.Value)
		if len(d.Errors()) > before {
			s.told = append(s.told, name)
		}
	}
}

// decodeKey decodes one key's value by its kind.
func (s *securitySpec) decodeKey(d *yamlconf.Decoder, k security.Key, v ast.Node) {
	switch k.Kind {
	case security.KeyText, security.KeyHeader, security.KeyEnum:
		var text string
		d.Decode(v, &text)
		k.SetText(&s.cfg, text)
	case security.KeyTexts:
		var list []string
		d.Decode(v, &list)
		k.SetTexts(&s.cfg, list)
	case security.KeyDuration:
		var dur time.Duration
		d.Decode(v, &dur)
		k.SetDuration(&s.cfg, dur)
	case security.KeySecret:
		var ref SecretRef
		d.Decode(v, &ref)
		s.secrets = append(s.secrets, pendingSecrets{key: k, refs: []SecretRef{ref}})
	case security.KeySecrets:
		ps := pendingSecrets{key: k}
		if k.SecretName != "" {
			ps.refs, ps.ids = decodeKeyPairs(d, k, v)
		} else if k.IDs {
			var keyed []keyedSecretRef
			d.Decode(v, &keyed)
			for _, r := range keyed {
				ps.refs, ps.ids = append(ps.refs, r.SecretRef), append(ps.ids, r.ID)
			}
		} else {
			d.Decode(v, &ps.refs)
		}
		s.secrets = append(s.secrets, ps)
	}
}

// decodeKeyPairs decodes a list of {<k.IDName>: id, <k.SecretName>: <secret reference>},
// such as aws_sigv4's credentials, every entry with both keys and no other.
func decodeKeyPairs(d *yamlconf.Decoder, k security.Key, v ast.Node) (refs []SecretRef, ids []string) {
	items, ok := d.Sequence(v)
	if !ok {
		return nil, nil
	}
	what := fmt.Sprintf("{%s: ..., %s: <secret reference>}", k.IDName, k.SecretName)
	for _, it := range items {
		m := d.Mapping(it, what)
		if m == nil {
			continue
		}
		var ref SecretRef
		var id string
		var haveID, haveSecret bool
		for _, mv := range m.Values {
			switch d.KeyName(mv) {
			case k.IDName:
				d.Decode(mv.Value, &id)
				haveID = true
			case k.SecretName:
				d.Decode(mv.Value, &ref)
				haveSecret = true
			default:
				d.Errorf(mv.Key, "unknown key %q in %s (want %s)", d.KeyName(mv), k.Name, what)
			}
		}
		if !haveID || !haveSecret {
			d.Errorf(m, "%s entries need both %s and %s", k.Name, k.IDName, k.SecretName)
		}
		refs, ids = append(refs, ref), append(ids, id)
	}
	return refs, ids
}

func keyNames(keys []security.Key) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// methods are the security.Method constants: a loaded block names its method with one of
// them, not with a copy of the text in the file.
var methods = security.Methods()

// build checks what the method requires, resolves the secrets and compiles the verifier,
// sharing templates through ts. It leaves s with its method and verifier, and drops the
// spec.
func (s *Security) build(d *yamlconf.Decoder, dir string, ts *security.Templates, egress http.RoundTripper) {
	w := s.spec
	s.spec = nil
	if w == nil || w.invalid {
		return
	}
	before := len(d.Errors())
	for _, k := range w.keys {
		if k.Need != "" && !slices.Contains(w.set, k.Name) {
			d.ErrorAt(w.Pos, "security method %s needs %s", w.cfg.Method, k.Need)
			w.told = append(w.told, k.Name)
		}
	}
	for _, ps := range w.secrets {
		if slices.Contains(w.told, ps.key.Name) {
			continue // did not decode: its references are not all there
		}
		list := make([]security.Secret, len(ps.refs))
		resolved := len(d.Errors())
		for i := range ps.refs {
			ps.refs[i].resolve(d, dir)
			list[i] = ps.refs[i].Secret
		}
		if len(d.Errors()) > resolved {
			w.told = append(w.told, ps.key.Name)
		}
		ps.key.SetSecrets(&w.cfg, list, ps.ids)
	}
	if len(w.allowIPs) > 0 {
		w.cfg.AllowIPs = parsePrefixes(d, w.allowAt, w.Pos, w.allowIPs)
	}
	w.cfg.Egress = egress
	// Compile even when something above failed: its checks of the other keys are problems
	// the operator would otherwise meet one run of validate at a time.
	check, err := ts.Compile(w.cfg)
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			pos := w.Pos
			var ce *security.ConfigError
			if errors.As(e, &ce) {
				if slices.Contains(w.told, ce.Key) {
					continue
				}
				pos = w.posOf(d, ce.Key, ce.Index)
			}
			d.ErrorAt(pos, "security: %v", e)
		}
		return
	}
	if len(d.Errors()) > before || len(w.told) > 0 {
		return // keys were left out or unresolved: the check is not what the file says
	}
	s.Method, s.check = check.Method(), check
}

// posOf is where key's value (its index-th item, for a list) is written, or the block's
// position when the key is not written there (a preset's setting, a missing key).
func (w *securitySpec) posOf(d *yamlconf.Decoder, key string, index int) yamlconf.Pos {
	if key == "" || w.node == nil {
		return w.Pos
	}
	for _, mv := range w.node.Values {
		if d.KeyName(mv) != key {
			continue
		}
		return itemPos(d, mv.Value, max(index, 0), yamlconf.PosOf(mv.Value))
	}
	return w.Pos
}

func presetList() string { return strings.Join(security.Presets(), ", ") }
