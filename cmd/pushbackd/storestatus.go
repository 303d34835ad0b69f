package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/store/postgres"
)

// validateStoreTimeout bounds validate's look at the database: it reports, it does not wait.
const validateStoreTimeout = 5 * time.Second

// checkStoreDSN refuses a Postgres DSN that serve would refuse at start.
func checkStoreDSN(cfg *config.Config) error {
	if cfg.Server.Store.Driver != config.StorePostgres {
		return nil
	}
	return postgres.CheckDSN(string(cfg.Server.Store.DSN.Secret.Reveal()))
}

// reportStore tells what validate knows of a Postgres store: the schema version this
// binary migrates to and, when the server answers, the version the database is at. It
// only reads (validate never migrates); a database it cannot reach is a warning, since
// serve waits for it.
func reportStore(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) {
	if cfg.Server.Store.Driver != config.StorePostgres {
		return
	}
	want := postgres.SchemaVersion()
	ctx, cancel := context.WithTimeout(ctx, validateStoreTimeout)
	defer cancel()
	have, err := postgres.DatabaseVersion(ctx, string(cfg.Server.Store.DSN.Secret.Reveal()))
	if err != nil {
		fmt.Fprintf(stdout, "store: postgres, schema version %d (serve migrates the database to it at start)\n", want)
		fmt.Fprintf(stderr, "warning: store: cannot read the database's schema version: %v (serve retries until the database answers)\n", err)
		return
	}
	var state string
	switch {
	case have == want:
		state = "up to date"
	case have < want:
		state = fmt.Sprintf("serve migrates it to %d at start", want)
	default:
		state = fmt.Sprintf("newer than this binary's %d: run a newer pushbackd", want)
	}
	fmt.Fprintf(stdout, "store: postgres, schema version %d; the database is at version %d (%s)\n", want, have, state)
}
