package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store/postgres"
)

func TestValidateReportsThePostgresSchemaVersion(t *testing.T) {
	c, err := pgtest.Start()
	if err != nil {
		(&pgtest.Env{Err: err}).Need(t)
	}
	t.Cleanup(c.Stop)
	const password = "hunter2-validate"
	config := func(t *testing.T, dsn string) string {
		dir := t.TempDir()
		mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), fmt.Sprintf("admin: {token: {value: %s}}\nstore:\n  driver: postgres\n  dsn: {value: %q}\n", strings.Repeat("a", 32), dsn+" password="+password))
		mustWrite(t, filepath.Join(dir, "sagas/echo.yaml"), "name: echo\nsteps:\n  - {name: a, respond: {status: 200}}\n")
		mustWrite(t, filepath.Join(dir, "partners/a.yaml"), "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n")
		return filepath.Join(dir, "pushbackd.yaml")
	}
	want := postgres.SchemaVersion()
	fresh := c.NewDatabase(t, "")
	migrated := c.NewDatabase(t, "")
	s, err := postgres.Open(context.Background(), migrated, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	tests := []struct {
		name, dsn, out, errOut string
	}{
		{"a database never migrated is at 0 and stays so", fresh, fmt.Sprintf("schema version %d; the database is at version 0 (serve migrates it to %d at start)", want, want), ""},
		{"a migrated database is up to date", migrated, fmt.Sprintf("schema version %d; the database is at version %d (up to date)", want, want), ""},
		{"a server that does not answer is a warning, not a failure", "host=" + t.TempDir() + " dbname=nowhere", fmt.Sprintf("store: postgres, schema version %d (serve migrates", want), "warning: store: cannot read the database's schema version"},
		{"a pool setting is the pool's, not a server parameter", migrated + " pool_max_conns=5", fmt.Sprintf("the database is at version %d (up to date)", want), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // twice: validate must not have migrated in between
				code, out, errOut := runCLI(t, "", "validate", config(t, tc.dsn))
				if code != 0 || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.errOut) {
					t.Fatalf("exit %d\nout %q\nerr %q\nwant %q / %q", code, out, errOut, tc.out, tc.errOut)
				}
				if strings.Contains(out+errOut, password) {
					t.Errorf("validate shows the DSN's password:\n%s%s", out, errOut)
				}
			}
		})
	}
}

// A DSN serve would refuse at start fails validate too, without the password.
func TestValidateRefusesADSNServeWouldRefuse(t *testing.T) {
	const password = "hunter2-validate"
	for _, dsn := range []string{
		"postgres://pushbackd:" + password + "@localhost:5x/pushbackd",
		"host=/tmp port=abc dbname=x password=" + password,
		"host=/tmp dbname=x pool_max_conns=abc password=" + password,
	} {
		t.Run(dsn[:20], func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), fmt.Sprintf("admin: {token: {value: %s}}\nstore:\n  driver: postgres\n  dsn: {value: %q}\n", strings.Repeat("a", 32), dsn))
			mustWrite(t, filepath.Join(dir, "sagas/echo.yaml"), "name: echo\nsteps:\n  - {name: a, respond: {status: 200}}\n")
			mustWrite(t, filepath.Join(dir, "partners/a.yaml"), "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n")
			code, out, errOut := runCLI(t, "", "validate", filepath.Join(dir, "pushbackd.yaml"))
			if code != 1 || !strings.Contains(errOut, "store.dsn: postgres dsn:") || strings.Contains(out, "valid") {
				t.Fatalf("exit %d\nout %q\nerr %q; want exit 1 naming store.dsn", code, out, errOut)
			}
			if strings.Contains(out+errOut, password) {
				t.Errorf("validate shows the DSN's password:\n%s%s", out, errOut)
			}
		})
	}
}
