package config

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/yamlconf"
)

func TestAdminSettingsAreValidated(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_SHORT_ADMIN_TOKEN", "only-twenty-chars-xx")
	t.Setenv("PUSHBACKD_TEST_LONG_ADMIN_TOKEN", strings.Repeat("k", 32))
	bad := []struct {
		name      string
		yaml      string
		line, col int
		msg       string
	}{
		{"a one-character literal admin token", "admin:\n  token: {value: a}\n", 2, 10, "admin.token must be at least 32 characters (this one has 1)"},
		{"a short admin token from the environment", "admin:\n  token: {env: PUSHBACKD_TEST_SHORT_ADMIN_TOKEN}\n", 2, 10, "admin.token must be at least 32 characters (this one has 20)"},
		{"an admin host with a port", "admin:\n  hosts: [admin.example.com:8081]\n", 2, 11, `admin.hosts: "admin.example.com:8081" must be a host name without port`},
		{"an admin host given as a URL", "admin:\n  hosts:\n    - ok.example.com\n    - https://admin.example.com\n", 4, 7, `admin.hosts: "https://admin.example.com" must be a host name`},
		{"an empty admin host", "admin: {hosts: [\"\"]}\n", 1, 17, `admin.hosts: "" must be a host name`},
	}
	for _, tc := range bad {
		t.Run(tc.name+" is refused at its position", func(t *testing.T) {
			_, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": tc.yaml}))
			var errs yamlconf.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want yamlconf.Errors", err)
			}
			if !slices.ContainsFunc(errs, func(e yamlconf.Error) bool {
				return e.Line == tc.line && e.Column == tc.col && strings.Contains(e.Message, tc.msg)
			}) {
				t.Fatalf("errors %v\nwant %d:%d %q", errs, tc.line, tc.col, tc.msg)
			}
			for _, e := range errs {
				if strings.Contains(e.Message, "only-twenty") {
					t.Errorf("an error shows the token: %s", e.Message)
				}
			}
		})
	}
	t.Run("a 32-character token and listed host names load, names lower-cased", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin:\n  token: {env: PUSHBACKD_TEST_LONG_ADMIN_TOKEN}\n  hosts: [Admin.Example.com, admin.example.com., 10.0.0.1]\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Server.Admin.Hosts; !slices.Equal(got, []string{"admin.example.com", "admin.example.com", "10.0.0.1"}) {
			t.Errorf("hosts = %q", got)
		}
	})
	t.Run("without admin.token, PUSHBACKD_ADMIN_TOKEN is the token", func(t *testing.T) {
		t.Setenv(DefaultAdminTokenEnv, strings.Repeat("e", 40))
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin: {listen: 127.0.0.1:0}\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(cfg.Server.Admin.Token.Secret.Reveal()); got != strings.Repeat("e", 40) {
			t.Fatalf("admin token %q, want PUSHBACKD_ADMIN_TOKEN's", got)
		}
	})
	t.Run("without admin.token, a short PUSHBACKD_ADMIN_TOKEN is refused, naming the variable, not showing it", func(t *testing.T) {
		t.Setenv(DefaultAdminTokenEnv, "only-twenty-chars-xx")
		_, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin: {listen: 127.0.0.1:0}\n"}))
		if err == nil || !strings.Contains(err.Error(), "PUSHBACKD_ADMIN_TOKEN") || !strings.Contains(err.Error(), "at least 32 characters (this one has 20)") {
			t.Fatalf("got %v, want the short variable refused", err)
		}
		if strings.Contains(err.Error(), "only-twenty") {
			t.Errorf("the error shows the token: %v", err)
		}
	})
	t.Run("admin.token in the config wins over PUSHBACKD_ADMIN_TOKEN", func(t *testing.T) {
		t.Setenv(DefaultAdminTokenEnv, strings.Repeat("e", 40))
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin:\n  token: {env: PUSHBACKD_TEST_LONG_ADMIN_TOKEN}\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(cfg.Server.Admin.Token.Secret.Reveal()); got != strings.Repeat("k", 32) {
			t.Fatalf("admin token %q, want the config's", got)
		}
	})
	t.Run("with postgres, PUSHBACKD_ADMIN_TOKEN does not stand in for admin.token in the config", func(t *testing.T) {
		t.Setenv(DefaultAdminTokenEnv, strings.Repeat("e", 40))
		_, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "store: {driver: postgres, dsn: {value: \"host=/tmp dbname=x\"}}\n"}))
		if err == nil || !strings.Contains(err.Error(), "admin.token must be set in the config with driver postgres") {
			t.Fatalf("got %v, want admin.token required in the config", err)
		}
	})
	t.Run("no admin.token at all is fine: one is generated at start", func(t *testing.T) {
		t.Setenv(DefaultAdminTokenEnv, "")
		if _, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin: {listen: 127.0.0.1:0}\n"})); err != nil {
			t.Fatal(err)
		}
	})
}
