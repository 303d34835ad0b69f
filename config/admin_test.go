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
	t.Run("no admin.token at all is fine: one is generated at start", func(t *testing.T) {
		if _, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "admin: {listen: 127.0.0.1:0}\n"})); err != nil {
			t.Fatal(err)
		}
	})
}
