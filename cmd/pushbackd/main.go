// Command pushbackd receives pushbacks, verifies their senders and runs sagas.
// This file only dispatches sub-commands; the work is in the packages.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: pushbackd <command> [flags] [args]

commands:
  serve    [configs/pushbackd.yaml | -config ...] [-listen ADDR] [-admin-listen ADDR]   run the gateway
  validate [configs/pushbackd.yaml | -config ...]   check a config; exit 1 with file:line:col errors
  sign     -secret-env NAME [body | -file body] [-preset P]  print the signature header value(s) for a body
  curl     PARTNER[/SITE]/ENDPOINT -file BODY       print a ready curl command for an endpoint
  plan     SAGA -file request.json                  show which steps a saga would run, calling nothing
  runs     list|show ID|replay ID [filters] [-json]  run history, through the admin API
  test     [SAGA...] [-json] [-saga draft.yaml]      run saga tests (sagas_dir/tests/SAGA.yaml), offline
  store    copy -from bbolt -to postgres [-dsn DSN]  copy a stopped instance's bbolt file into Postgres

Flags may come before or after the arguments. "pushbackd <command> -h" lists a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: tests call it with their own streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) int{
		"serve":    cmdServe,
		"validate": cmdValidate,
		"sign":     cmdSign,
		"curl":     cmdCurl,
		"plan":     cmdPlan,
		"runs":     cmdRuns,
		"test":     cmdTest,
		"store":    cmdStore,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "pushbackd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:], stdin, stdout, stderr)
}
