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

// usage lists every command form; README.md's "Command line" block holds the same forms
// (TestHelpListsEveryCommandFormTheReadmeDoes keeps the two equal).
const usage = `usage: pushbackd <command> [flags] [args]

commands:
  pushbackd serve    [configs/pushbackd.yaml | -config ...] [-exit-with-parent] [-listen ADDR] [-admin-listen ADDR]
                                                            run the gateway
  pushbackd validate [configs/pushbackd.yaml | -config ...]  exit 1 and file:line:col errors on a bad config
  pushbackd sign     -secret-env NAME [body | -file body] [-encoding base64|hex] [-prefix sha256=]
                                                            prints the signature header value
  pushbackd sign     -secret-env NAME [body | -file body] -preset P | -method M [keys...] [-timestamp T]
                                                            prints every header the method sends, "Name: value" a line
  pushbackd curl     PARTNER[/SITE]/ENDPOINT -file BODY [-config ...] [-url http://host:port] [-jwt-key key.pem]
                                                            prints a curl command with the right auth headers
  pushbackd plan     SAGA [-file request.json] [-saga draft.yaml] [-config ...]
                                                            the saga's plan, calling nothing
  pushbackd runs     list|show ID|replay ID|replay [filters] [-yes]|retry ID|cancel ID [-json]
                                                            run history, replays (one or by filter), retries, cancels,
                                                            through the admin API ("pushbackd runs -h" for the filters)
  pushbackd test     [SAGA...] [-json] [-saga draft.yaml] [-file tests.yaml] [-config ...]
                                                            run saga tests offline (see Testing sagas)
  pushbackd store    copy -from bbolt -to postgres [-config ... | -from-file P] [-dsn DSN] [-progress 2s]
                                                            copy a stopped instance's data into Postgres (see Moving from bbolt to Postgres)

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
