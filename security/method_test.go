package security

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// Every method is one entry of methodTable; these checks keep each entry whole, so a method
// added later cannot leave out a part the rest of the program relies on.
func TestEveryMethodTableEntryIsComplete(t *testing.T) {
	for _, m := range methodTable {
		t.Run(string(m.name)+" is a complete table entry", func(t *testing.T) {
			if m.prepare == nil || m.credentials == nil {
				t.Fatal("prepare or credentials is missing")
			}
			seenList := false
			var names []string
			for _, k := range m.keys {
				if slices.Contains(names, k.Name) || k.Name == "method" || k.Name == "preset" || k.Name == "allow_ips" {
					t.Errorf("key %q appears twice or shadows a key every method has", k.Name)
				}
				names = append(names, k.Name)
				var cfg Config
				f := cfg.at(k.field)
				var ok bool
				switch k.Kind {
				case KeyText, KeyHeader, KeyEnum:
					_, ok = f.(*string)
				case KeyDuration:
					_, ok = f.(*time.Duration)
				case KeyTexts:
					_, ok = f.(*[]string)
				case KeySecret:
					_, ok = f.(*Secret)
					if seenList {
						t.Errorf("secret key %q comes after the secret list: Check.Config could not split them", k.Name)
					}
				case KeySecrets:
					_, ok = f.(*[]Secret)
					if seenList && m.name != JWT { // jwt's material records the split: see Check.Config
						t.Errorf("a second secret list %q: Check.Config could not split them", k.Name)
					}
					seenList = true
				}
				if !ok {
					t.Errorf("key %q: its field is %T, which does not hold kind %d", k.Name, f, k.Kind)
				}
				if k.Kind == KeyEnum && len(k.Values) == 0 {
					t.Errorf("enum key %q lists no values", k.Name)
				}
				if k.IDs && k.Kind != KeySecrets {
					t.Errorf("key %q has ids but is no secret list", k.Name)
				}
			}
			// jwt needs keys or a jwks_url, which its prepare checks: either way a token
			// must be signed by the partner's identity provider.
			if m.name != JWT && !slices.ContainsFunc(m.keys, func(k Key) bool { return k.secret() && k.Need != "" }) {
				t.Error("no required secret key: the method would accept anyone")
			}
		})
	}
}

func TestEveryPresetOnlyFillsSettingsOfItsMethod(t *testing.T) {
	for _, p := range presetTable {
		t.Run(p.name+" sets only its method's optional settings", func(t *testing.T) {
			m := lookup(p.method)
			if m == nil {
				t.Fatalf("method %q does not exist", p.method)
			}
			set := p.settings
			for _, k := range m.keys {
				if k.isSet(&set) && (k.secret() || k.Need != "") {
					t.Errorf("the preset sets %q, which an endpoint must give itself", k.Name)
				}
				k.copyTo(&set, &Config{})
			}
			set.Method, set.Preset = p.method, ""
			if templateKey(Config{Method: p.method}) != templateKey(set) || set.AllowIPs != nil || set.SecretIDs != nil {
				t.Errorf("the preset sets a field that is not a key of %s: %+v", p.method, set)
			}
		})
	}
}

// Two Configs share a Template only when every key but the secrets agrees: templateKey is
// built from the key table, and this proves it sees every key.
func TestTemplateKeySeesEveryKeyButSecrets(t *testing.T) {
	for _, m := range methodTable {
		base := templateKey(Config{Method: m.name})
		for _, k := range m.keys {
			t.Run(string(m.name)+" tells configs apart by "+k.Name, func(t *testing.T) {
				cfg := Config{Method: m.name}
				switch k.Kind {
				case KeyText, KeyHeader, KeyEnum:
					k.SetText(&cfg, "x-other")
				case KeyDuration:
					k.SetDuration(&cfg, time.Hour)
				default:
					k.SetSecrets(&cfg, secrets("a-secret"), nil)
					if templateKey(cfg) != base {
						t.Fatal("a secret changed the template key: endpoints would not share templates")
					}
					return
				}
				if templateKey(cfg) == base {
					t.Fatal("the key does not change the template key: configs differing in it would share a template")
				}
			})
		}
	}
	if templateKey(Config{Method: Signature, SecretIDs: []string{"a", ""}}) == templateKey(Config{Method: Signature, SecretIDs: []string{"", "a"}}) {
		t.Error("secret ids in another order share a template key")
	}
}

// Each problem names the key it concerns, so the config loader can point at its line.
func TestConfigErrorsNameTheirKey(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		key   string
		index int
	}{
		{"a bad encoding names encoding", Config{Method: Signature, Encoding: "b64", Secrets: secrets("k")}, "encoding", -1},
		{"an empty second secret names secrets[1]", Config{Method: Signature, Secrets: []Secret{NewSecret("k"), {}}}, "secrets", 1},
		{"a signed template without the body names signed", Config{Method: Signature, Secrets: secrets("k"), TimestampHeader: "X-T", Signed: "{timestamp}"}, "signed", -1},
		{"an undecodable whsec secret names its entry", Config{Method: StandardWebhooks, Secrets: secrets(whsec1, "whsec_!!")}, "secrets", 1},
		{"a token with a newline names token", Config{Method: Token, Token: NewSecret("t\n"), TokenSecret: NewSecret("s")}, "token", -1},
		{"an api key with both header and query names query", Config{Method: APIKey, Header: "X-K", Query: "k", Keys: secrets("k")}, "query", -1},
		{"an unknown preset names preset", Config{Preset: "nope"}, "preset", -1},
		{"a bad allow_ips entry names its entry", Config{Method: Bearer, Tokens: secrets("t"), AllowIPs: make([]netip.Prefix, 2)}, "allow_ips", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New = %v, want a *ConfigError", err)
			}
			if ce.Key != tc.key || ce.Index != tc.index {
				t.Fatalf("problem %q names %s[%d], want %s[%d]", ce, ce.Key, ce.Index, tc.key, tc.index)
			}
		})
	}
}
