package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/postgres"
)

const storeUsage = `usage: pushbackd store copy -from bbolt -to postgres [-config F | -from-file P] [-dsn DSN]

Copies runs, idempotency and message keys, kv entries and saga versions from a stopped
instance's bbolt file (<data_dir>/pushbackd.db of -config, or -from-file) into Postgres
(-dsn, else the PUSHBACKD_POSTGRES_DSN environment variable, else store.dsn of -config when
its store.driver is postgres). Records Postgres holds already
are left as they are, so running it again adds nothing, and finishes a copy that was
interrupted.
`

// dsnEnv is where the copy takes the Postgres DSN from when -dsn is not given: a DSN may
// hold a password, which a command line shows to every user of the machine (ps).
const dsnEnv = "PUSHBACKD_POSTGRES_DSN"

func cmdStore(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "copy" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, storeUsage)
			return 0
		}
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	fs := newFlags("store copy", stderr)
	from := fs.String("from", "", "the store to copy from: bbolt")
	to := fs.String("to", "", "the store to copy into: postgres")
	cfgPath := fs.String("config", defaultConfig, "pushbackd.yaml of the stopped instance: its data_dir holds the bbolt file")
	fromFile := fs.String("from-file", "", "the bbolt file itself (default <data_dir>/pushbackd.db of -config)")
	dsn := fs.String("dsn", "", "Postgres DSN, postgres:// URL or key=value (default $"+dsnEnv+")")
	every := fs.Duration("progress", 2*time.Second, "how often to print progress on stderr; 0 prints after every batch")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(stderr, "pushbackd store copy: unexpected arguments %q\n", pos)
		return 2
	case *from != "bbolt" || *to != "postgres":
		fmt.Fprintf(stderr, "pushbackd store copy: only -from bbolt -to postgres is supported, not -from %q -to %q\n", *from, *to)
		return 2
	case *every < 0:
		fmt.Fprintf(stderr, "pushbackd store copy: -progress must not be negative\n")
		return 2
	}
	// The config names the bbolt file (its data_dir) and, once it is switched to
	// store.driver postgres, the DSN too; -from-file and -dsn (or the environment) need none.
	var server *config.Server
	if *fromFile == "" || (*dsn == "" && os.Getenv(dsnEnv) == "") {
		s, err := config.LoadServer(*cfgPath)
		if err != nil && *fromFile == "" {
			fmt.Fprintf(stderr, "pushbackd store copy: cannot read %s for data_dir (or give -from-file):\n", *cfgPath)
			printConfigErrors(stderr, err)
			return 1
		}
		if err == nil {
			server = &s
		}
	}
	if *dsn == "" {
		*dsn = os.Getenv(dsnEnv)
	}
	if *dsn == "" && server != nil && server.Store.Driver == config.StorePostgres {
		*dsn = string(server.Store.DSN.Secret.Reveal())
	}
	if *dsn == "" {
		fmt.Fprintf(stderr, "pushbackd store copy: no Postgres to copy into: set %s, give -dsn, or set store.dsn in %s\n", dsnEnv, *cfgPath)
		return 2
	}
	path := *fromFile
	if path == "" {
		path = filepath.Join(server.DataDir, "pushbackd.db")
	}
	if err := copyStore(ctx, path, *dsn, *every, stderr); err != nil {
		fmt.Fprintf(stderr, "pushbackd store copy: %v\n", err)
		return 1
	}
	return 0
}

// copyStore copies the bbolt file at path into the Postgres at dsn.
func copyStore(ctx context.Context, path, dsn string, every time.Duration, stderr io.Writer) error {
	// bolt.Open creates a missing file: a mistyped path must not copy an empty store and
	// report success.
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("the bbolt file: %w", err)
	}
	src, err := bolt.Open(path, bolt.Options{Timeout: 200 * time.Millisecond})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%s: %w: stop that instance first; the copy must read a file nobody writes", path, err)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		return err
	}
	defer dst.Close()
	fmt.Fprintf(stderr, "copying %s into postgres\n", path)
	last := time.Now()
	st, err := store.Copy(ctx, src, dst, func(st store.CopyStats) {
		if time.Since(last) >= every {
			fmt.Fprintf(stderr, "progress: %s\n", st)
			last = time.Now()
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %s; run the same command again to finish", st)
		}
		return fmt.Errorf("%w (copied so far: %s; run the same command again to finish)", err, st)
	}
	added := 0
	for _, k := range st.Kinds {
		added += k.Added
	}
	fmt.Fprintf(stderr, "done: %s\n", st)
	if added == 0 {
		fmt.Fprintf(stderr, "0 new records: postgres held everything already\n")
	} else {
		fmt.Fprintf(stderr, "%d new records\n", added)
	}
	return nil
}
