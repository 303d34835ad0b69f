package config

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/yamlconf"
)

func TestStoreSettingsAreValidated(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_DSN", "postgres://pushbackd:hunter2-secret@db.internal/pushbackd")
	t.Setenv("PUSHBACKD_TEST_ADMIN_TOKEN", strings.Repeat("k", 32))
	const token = "admin:\n  token: {env: PUSHBACKD_TEST_ADMIN_TOKEN}\n"
	bad := []struct {
		name      string
		yaml      string
		line, col int
		msg       string
	}{
		{"an unknown driver", "store:\n  driver: sqlite\n", 2, 11, `store.driver must be bbolt or postgres, not "sqlite"`},
		{"postgres without a dsn", token + "store:\n  driver: postgres\n", 4, 11, "store.dsn is required with driver postgres"},
		{"a dsn from an unset variable", token + "store:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_UNSET_DSN}\n", 5, 8, "environment variable PUSHBACKD_TEST_UNSET_DSN is not set"},
		{"postgres without admin.token", "store:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_DSN}\n", 2, 11, "admin.token must be set in the config with driver postgres"},
		{"postgres with admin.token from an unset variable", "admin:\n  token: {env: PUSHBACKD_TEST_UNSET_TOKEN}\nstore:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_DSN}\n", 2, 10, "environment variable PUSHBACKD_TEST_UNSET_TOKEN is not set: with driver postgres the admin token is not generated"},
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
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("an error shows the dsn's password: %v", err)
			}
		})
	}
	t.Run("postgres without a dsn and without admin.token reports both at once", func(t *testing.T) {
		_, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "store:\n  driver: postgres\n"}))
		for _, want := range []string{"store.dsn is required with driver postgres", "admin.token must be set in the config with driver postgres"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want %q among the errors", err, want)
			}
		}
	})
	t.Run("no store section is the bbolt store", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "listen: 127.0.0.1:0\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Server.Store.Driver != StoreBolt || cfg.Server.Store.DSN.IsSet() {
			t.Errorf("store = %+v", cfg.Server.Store)
		}
	})
	t.Run("a dsn beside driver bbolt is ignored, not resolved, as DESIGN's defaults block shows it", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": "store:\n  driver: bbolt\n  dsn: {env: PUSHBACKD_TEST_UNSET_DSN}\n"}))
		if err != nil {
			t.Fatalf("a bbolt config with an unset dsn variable: %v", err)
		}
		if cfg.Server.Store.Driver != StoreBolt || len(cfg.Server.Store.DSN.Secret.Reveal()) != 0 {
			t.Fatalf("store %+v: want bbolt with the dsn unresolved", cfg.Server.Store)
		}
	})

	t.Run("postgres with a dsn and an admin token loads, the dsn resolved", func(t *testing.T) {
		cfg, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": token + "store:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_DSN}\n"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Server.Store.DSN.Secret.Reveal(); cfg.Server.Store.Driver != StorePostgres || !strings.Contains(string(got), "hunter2") {
			t.Errorf("store = %q %q", cfg.Server.Store.Driver, got)
		}
	})
}

// Each mistake in a postgres config is reported once, where it is written, and no other
// message stands beside it to send the operator looking for the wrong problem.
func TestAPostgresConfigMistakeIsReportedOnceAndOnlyThere(t *testing.T) {
	t.Setenv("PUSHBACKD_TEST_DSN", "postgres://pushbackd:hunter2-secret@db.internal/pushbackd")
	t.Setenv("PUSHBACKD_TEST_ADMIN_TOKEN", strings.Repeat("k", 32))
	const token = "admin:\n  token: {env: PUSHBACKD_TEST_ADMIN_TOKEN}\n"
	for _, tc := range []struct {
		name      string
		yaml      string
		line, col int
		msg       string
	}{
		{"an admin token from an unset variable is reported as the unset variable", "admin:\n  token: {env: PUSHBACKD_TEST_UNSET_TOKEN}\nstore:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_DSN}\n",
			2, 10, "environment variable PUSHBACKD_TEST_UNSET_TOKEN is not set"},
		{"an admin token from a missing file is reported as the file", "admin:\n  token: {file: no-such-token}\nstore:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_DSN}\n",
			2, 10, "cannot read secret file no-such-token"},
		{"a bare-string dsn is reported as not a reference, not as missing", token + "store:\n  driver: postgres\n  dsn: \"postgres://pushbackd:hunter2-secret@db.internal/pushbackd\"\n",
			5, 8, "a secret must be a reference"},
		{"a dsn from an unset variable is reported as the unset variable", token + "store:\n  driver: postgres\n  dsn: {env: PUSHBACKD_TEST_UNSET_DSN}\n",
			5, 8, "environment variable PUSHBACKD_TEST_UNSET_DSN is not set"},
		{"a null dsn is reported as missing", token + "store:\n  driver: postgres\n  dsn:\n",
			4, 11, "store.dsn is required with driver postgres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, map[string]string{"pushbackd.yaml": tc.yaml}))
			var errs yamlconf.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want yamlconf.Errors", err)
			}
			if len(errs) != 1 || errs[0].Line != tc.line || errs[0].Column != tc.col || !strings.Contains(errs[0].Message, tc.msg) {
				t.Fatalf("errors %v\nwant only %d:%d %q", errs, tc.line, tc.col, tc.msg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("an error shows the dsn's password: %v", err)
			}
		})
	}
}
