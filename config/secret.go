package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// SecretRef is where a secret comes from: `{env: NAME}`, `{file: path}` or `{value: literal}`.
// The value is read when the config loads, so a missing variable is a load error, not a 401
// at three in the morning.
type SecretRef struct {
	Pos  yamlconf.Pos
	Env  string
	File string
	// A literal {value: ...} goes straight into Secret: no plain string field holds it, so
	// printing a config struct cannot leak it.
	literal bool
	set     bool

	// Secret is the resolved value; zero until Resolve succeeds.
	Secret security.Secret
}

// IsSet reports whether the YAML gave a reference at all.
func (r SecretRef) IsSet() bool { return r.set }

// Source describes the reference without its value, for messages and the admin API.
func (r SecretRef) Source() string {
	switch {
	case r.Env != "":
		return "env:" + r.Env
	case r.File != "":
		return "file:" + r.File
	case r.literal:
		return "value"
	}
	return ""
}

// UnmarshalYAMLNode accepts exactly one of env, file or value.
func (r *SecretRef) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	r.Pos = yamlconf.PosOf(n)
	if yamlconf.IsNull(n) {
		return
	}
	if _, isScalar := d.Scalar(n); isScalar {
		d.Errorf(n, "a secret must be a reference like {env: NAME}, {file: path} or {value: literal}, not a bare string")
		return
	}
	var raw struct {
		Env   *string `yaml:"env"`
		File  *string `yaml:"file"`
		Value *string `yaml:"value"`
	}
	before := len(d.Errors())
	d.Decode(n, &raw)
	if len(d.Errors()) > before {
		return
	}
	count := 0
	for _, p := range []*string{raw.Env, raw.File, raw.Value} {
		if p != nil {
			count++
		}
	}
	if count != 1 {
		d.Errorf(n, "a secret reference needs exactly one of env, file or value")
		return
	}
	r.set = true
	switch {
	case raw.Env != nil:
		r.Env = *raw.Env
		if r.Env == "" {
			d.Errorf(n, "env: the variable name is empty")
		}
	case raw.File != nil:
		r.File = *raw.File
		if r.File == "" {
			d.Errorf(n, "file: the path is empty")
		}
	default:
		r.literal = true
		r.Secret = security.NewSecret(*raw.Value)
		if *raw.Value == "" {
			d.Errorf(n, "value: the secret is empty")
		}
	}
}

// resolve reads the secret. baseDir anchors relative file paths. Errors never contain the
// secret, only where it was looked for.
func (r *SecretRef) resolve(d *yamlconf.Decoder, baseDir string) {
	if !r.set {
		return
	}
	switch {
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			d.ErrorAt(r.Pos, "environment variable %s is not set", r.Env)
			return
		}
		r.Secret = security.NewSecret(v)
	case r.File != "":
		path := r.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		b, err := readSecretFile(path)
		if err != nil {
			d.ErrorAt(r.Pos, "cannot read secret file %s: %v", r.File, unwrapPathError(err))
			return
		}
		if len(b) > maxSecretFileBytes {
			d.ErrorAt(r.Pos, "secret file %s is over the limit of %d bytes (64 KiB): point at the secret itself, not a bundle", r.File, maxSecretFileBytes)
			return
		}
		// Editors and `echo x > file` add a trailing newline nobody means as part of a key.
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			d.ErrorAt(r.Pos, "secret file %s is empty", r.File)
			return
		}
		r.Secret = security.NewSecret(v)
	}
}

// maxSecretFileBytes bounds a {file:} secret: keys, tokens and PEM certificates are a few
// KiB; a path at a device that never ends (/dev/zero) must not be read whole.
const maxSecretFileBytes = 64 << 10

// readSecretFile reads at most one byte past maxSecretFileBytes, so the caller can tell a
// file over the limit without reading it whole.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
