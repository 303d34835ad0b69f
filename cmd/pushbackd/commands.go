package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushbackd/pushbackd/app"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

const defaultConfig = "configs/pushbackd.yaml"

// parseArgs lets flags come before or after positional arguments, which Go's flag package
// alone does not: it stops at the first positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// configArg takes the config path from a lone positional argument, as "validate FILE" and
// "serve FILE" read naturally; -config says the same. Anything else is refused: a stray word
// silently ignored once validated the default config instead of the one the user named.
func configArg(fs *flag.FlagSet, cfgPath *string, pos []string, stderr io.Writer) bool {
	switch {
	case len(pos) == 0:
		return true
	case len(pos) > 1:
		fmt.Fprintf(stderr, "%s: too many arguments %q: give one config file, e.g. %s configs/pushbackd.yaml\n", fs.Name(), pos, fs.Name())
		return false
	case flagSet(fs, "config") && *cfgPath != pos[0]:
		fmt.Fprintf(stderr, "%s: two config files, -config %s and %s: give one\n", fs.Name(), *cfgPath, pos[0])
		return false
	}
	*cfgPath = pos[0]
	return true
}

// flagSet reports whether the command line set the named flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pushbackd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// printConfigErrors writes one file:line:col line per problem.
func printConfigErrors(w io.Writer, err error) {
	for _, e := range yamlconf.AsErrors(err) {
		fmt.Fprintln(w, e.Error())
	}
}

func cmdServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml (or give it as the argument)")
	listen := fs.String("listen", "", "pushback listener address, overriding the config's listen (a second instance on one machine)")
	adminListen := fs.String("admin-listen", "", "admin listener address, overriding the config's admin.listen")
	withParentFlag := fs.Bool("exit-with-parent", underGoRun(), "stop (gracefully) when the process that started serve exits; default on under go run, so that killing go run stops the server")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if !configArg(fs, cfgPath, pos, stderr) {
		return 2
	}
	if *withParentFlag {
		var stop context.CancelFunc
		ctx, stop = withParent(ctx, os.Getppid, 250*time.Millisecond, func() {
			fmt.Fprintln(stderr, "pushbackd: the process that started serve has exited; stopping")
		})
		defer stop()
	}
	tuneProcs(os.Getenv, runtime.NumCPU())
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	var cfgHeap configHeap
	go tuneGC(gcCtx, os.Getenv, &cfgHeap)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = app.Run(ctx, app.Options{ConfigPath: *cfgPath, Listen: *listen, AdminListen: *adminListen, ConfigApplied: cfgHeap.measure}, hup)
	if err != nil {
		var ye yamlconf.Errors
		if errors.As(err, &ye) {
			fmt.Fprintf(stderr, "pushbackd: the configuration is invalid; not starting:\n")
			printConfigErrors(stderr, err)
		} else {
			fmt.Fprintf(stderr, "pushbackd: %v\n", err)
		}
		return 1
	}
	return 0
}

func cmdValidate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml (or give it as the argument)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if !configArg(fs, cfgPath, pos, stderr) {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printConfigErrors(stderr, err)
		fmt.Fprintf(stderr, "%d problem(s) found\n", len(yamlconf.AsErrors(err)))
		return 1
	}
	endpoints := 0
	for _, p := range cfg.Partners {
		endpoints += len(p.Endpoints)
		for _, s := range p.Sites {
			endpoints += len(s.Endpoints)
		}
	}
	// Warnings do not fail validation: the config loads, but a saga using the setting will
	// fail when it runs.
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "%s:%d:%d: warning: %s\n", w.File, w.Line, w.Column, w.Message)
	}
	warned := ""
	if n := len(cfg.Warnings); n > 0 {
		warned = fmt.Sprintf(", %d warning(s)", n)
	}
	// A DSN serve would refuse at start is a problem here too; a database that does not
	// answer is not (serve waits for it), and reportStore says so.
	if err := checkStoreDSN(cfg); err != nil {
		fmt.Fprintf(stderr, "%s: store.dsn: %v\n1 problem(s) found\n", cfg.File, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d partners, %d endpoints, %d sagas)%s\n", *cfgPath, len(cfg.Partners), endpoints, len(cfg.Sagas), warned)
	reportStore(ctx, cfg, stdout, stderr)
	return 0
}

// loadFor loads the config for a command that needs one part of it (a partner, a saga),
// which needs says is there. Problems in other files are printed as warnings and the
// command goes on; problems in the main file, or a part that is missing (perhaps because
// its own file is broken), stop it with every problem printed.
func loadFor(stderr io.Writer, path string, needs func(*config.Config) bool) (*config.Config, bool) {
	cfg, errs := config.LoadPartial(path)
	if len(errs) == 0 {
		return cfg, true
	}
	if cfg == nil || !needs(cfg) || slices.ContainsFunc(errs, func(e yamlconf.Error) bool { return e.File == cfg.File }) {
		printConfigErrors(stderr, errs)
		return nil, false
	}
	for _, e := range errs {
		fmt.Fprintf(stderr, "%s:%d:%d: warning: %s (not needed by this command; validate before serving)\n", e.File, e.Line, e.Column, e.Message)
	}
	return cfg, true
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "" || file == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(file)
}

func cmdSign(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("sign", stderr)
	secretEnv := fs.String("secret-env", "", "environment variable holding the shared secret")
	secretFile := fs.String("secret-file", "", "file holding the shared secret (instead of -secret-env)")
	file := fs.String("file", "", "body to sign, or give it as the argument (default: standard input)")
	method := fs.String("method", "", "signature, standard_webhooks or aws_sigv4 (default signature)")
	target := fs.String("url", "", "aws_sigv4: the URL the request goes to (its host, path and query are signed)")
	region := fs.String("region", "", "aws_sigv4: the region")
	service := fs.String("service", "", "aws_sigv4: the service")
	preset := fs.String("preset", "", "a provider's settings: "+strings.Join(security.Presets(), ", "))
	encoding := fs.String("encoding", "", "base64 or hex (default base64, or the preset's)")
	prefix := fs.String("prefix", "", `text before the signature, e.g. "sha256="`)
	header := fs.String("header", "", "signature header (default Pushback-Signature, or the preset's)")
	tsHeader := fs.String("timestamp-header", "", "timestamped: the header carrying the timestamp")
	tsPart := fs.String("timestamp-part", "", "timestamped: the signature header's timestamp part, e.g. t")
	sigPart := fs.String("signature-part", "", "the signature header's signature part, e.g. v1")
	signed := fs.String("signed", "", `timestamped: what is signed, e.g. "v0:{timestamp}:{body}"`)
	tsFormat := fs.String("timestamp-format", "", "timestamped: unix or rfc3339")
	keyIDHeader := fs.String("key-id-header", "", "header naming the key (the encompass preset's is Elli-SubscriptionId)")
	keyID := fs.String("key-id", "", "the key's id, sent in the key id header; aws_sigv4: the access key id")
	msgID := fs.String("msg-id", "", "standard_webhooks: the message id (default: a random msg_...)")
	at := fs.String("timestamp", "", "the signing time: unix seconds or RFC 3339 (default: now)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	switch {
	case len(pos) > 1 || len(pos) == 1 && *file != "":
		// A stray word once made sign read standard input and sign an empty body.
		if *file != "" {
			pos = append(pos, *file)
		}
		fmt.Fprintf(stderr, "pushbackd sign: one body to sign, not %q: give it as -file FILE or as the argument\n", pos)
		return 2
	case len(pos) == 1:
		*file = pos[0]
	}
	var secret string
	switch {
	case *secretEnv != "" && *secretFile == "":
		secret = os.Getenv(*secretEnv)
		if secret == "" {
			fmt.Fprintf(stderr, "pushbackd sign: environment variable %s is not set\n", *secretEnv)
			return 1
		}
	case *secretFile != "" && *secretEnv == "":
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintf(stderr, "pushbackd sign: %v\n", err)
			return 1
		}
		secret = strings.TrimRight(string(b), "\r\n")
	default:
		// Never a -secret flag: a secret on the command line ends up in shell history and ps.
		fmt.Fprintln(stderr, "pushbackd sign: give exactly one of -secret-env NAME or -secret-file PATH")
		return 2
	}
	now := time.Now()
	if *at != "" {
		t, err := parseSigningTime(*at)
		if err != nil {
			fmt.Fprintf(stderr, "pushbackd sign: -timestamp: %v\n", err)
			return 2
		}
		now = t
	}
	body, err := readInput(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd sign: %v\n", err)
		return 1
	}
	cfg := security.Config{Method: security.Method(*method), Preset: *preset, Header: *header, Encoding: *encoding, Prefix: *prefix,
		TimestampHeader: *tsHeader, TimestampPart: *tsPart, SignaturePart: *sigPart, Signed: *signed, TimestampFormat: *tsFormat,
		KeyIDHeader: *keyIDHeader, Region: *region, Service: *service, Secrets: []security.Secret{security.NewSecret(secret)}}
	if *keyID != "" {
		cfg.SecretIDs = []string{*keyID}
	}
	legacy := *preset == "" && *method == "" && *header == "" && *tsHeader == "" && *tsPart == "" && *sigPart == "" &&
		*signed == "" && *keyIDHeader == "" && *keyID == "" && *target == ""
	if legacy {
		// As before presets: the signature method's value alone, for `-H "X-Sig: $(...)"`.
		if *encoding == "" {
			*encoding = "base64"
		}
		if *encoding != "base64" && *encoding != "hex" {
			fmt.Fprintf(stderr, "pushbackd sign: -encoding must be base64 or hex, not %q\n", *encoding)
			return 2
		}
		fmt.Fprintln(stdout, security.SignatureValue([]byte(secret), body, *encoding, *prefix))
		return 0
	}
	if cfg.Method == "" && cfg.Preset == "" {
		cfg.Method = security.Signature
	}
	var u *neturl.URL
	if *target != "" {
		if u, err = neturl.Parse(*target); err != nil || u.Host == "" {
			fmt.Fprintf(stderr, "pushbackd sign: -url must be an absolute URL like https://host/pushback/partner/endpoint\n")
			return 2
		}
	}
	h, _, err := security.SignFor(cfg, u, body, *msgID, now)
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd sign: %v\n", err)
		return 2
	}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		fmt.Fprintf(stdout, "%s: %s\n", spelled(name, security.HeaderNames(cfg)), h.Get(name))
	}
	return 0
}

// spelled is the header name key (canonical, as http.Header keeps it) as the configuration
// spells it — Elli-SubscriptionId, not Elli-Subscriptionid — so what is printed matches the
// provider's documentation; a name not configured stays canonical.
func spelled(key string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
	}
	return key
}

// parseSigningTime reads unix seconds or an RFC 3339 time.
func parseSigningTime(s string) (time.Time, error) {
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither unix seconds nor an RFC 3339 time", s)
	}
	return t, nil
}

func cmdCurl(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("curl", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml")
	file := fs.String("file", "", "body file to send (required)")
	contentType := fs.String("content-type", "", "Content-Type (default: from the file extension)")
	base := fs.String("url", "", "base URL (default: http://<listen> from the config)")
	jwtKey := fs.String("jwt-key", "", "jwt endpoints: private key PEM to sign a short-lived token with the endpoint's issuer and audience")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || *file == "" {
		fmt.Fprintln(stderr, "usage: pushbackd curl PARTNER[/SITE]/ENDPOINT -file BODY [-config ...]")
		return 2
	}
	parts := strings.Split(pos[0], "/")
	var partner, site, endpoint string
	switch len(parts) {
	case 2:
		partner, endpoint = parts[0], parts[1]
	case 3:
		partner, site, endpoint = parts[0], parts[1], parts[2]
	default:
		fmt.Fprintf(stderr, "pushbackd curl: %q is not PARTNER/ENDPOINT or PARTNER/SITE/ENDPOINT\n", pos[0])
		return 2
	}
	cfg, ok := loadFor(stderr, *cfgPath, func(cfg *config.Config) bool {
		_, ok := cfg.Lookup(partner, site, endpoint)
		return ok
	})
	if !ok {
		return 1
	}
	route, ok := cfg.Lookup(partner, site, endpoint)
	if !ok {
		fmt.Fprintf(stderr, "pushbackd curl: no endpoint %s in %s\n", pos[0], *cfgPath)
		return 1
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd curl: %v\n", err)
		return 1
	}
	if *base == "" {
		*base = "http://" + dialable(cfg.Server.Listen)
	}
	target := strings.TrimRight(*base, "/") + "/pushback/" + pos[0]
	targetURL, err := neturl.Parse(target)
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd curl: -url: %v\n", err)
		return 2
	}
	var headers http.Header
	var query neturl.Values
	oauth2Header := ""
	// A jwt endpoint with secrets (HS256...) signs its token itself, like any HMAC method,
	// unless -jwt-key names a private key to sign with instead.
	if sec := route.Endpoint.Security.Resolved(); sec.Method == security.JWT && (*jwtKey != "" || len(sec.Secrets) == 0) {
		// pushbackd holds only the identity provider's public keys: the token must be
		// signed with a private key the operator has (a test key of the partner's IdP).
		if *jwtKey == "" {
			fmt.Fprintln(stderr, "pushbackd curl: endpoint uses jwt: pass -jwt-key FILE, a private key PEM whose public half is in the endpoint's keys")
			return 2
		}
		pemBytes, rerr := os.ReadFile(*jwtKey)
		if rerr != nil {
			fmt.Fprintf(stderr, "pushbackd curl: %v\n", rerr)
			return 1
		}
		tok, serr := security.SignJWT(sec, pemBytes, time.Now())
		err = serr
		headers = http.Header{"Authorization": {"Bearer " + tok}}
	} else if sec.Method == security.OAuth2 {
		// The sender first gets a token from the token endpoint with the first client's
		// credentials (client_secret_basic: id and secret form-encoded, RFC 6749 §2.3.1),
		// then sends it; the script keeps it in a shell variable.
		tokenURL := strings.TrimRight(*base, "/") + "/oauth/" + partner + "/token"
		cred := neturl.QueryEscape(sec.SecretIDs[0]) + ":" + neturl.QueryEscape(string(sec.Secrets[0].Reveal()))
		fmt.Fprintln(stdout, "ACCESS_TOKEN=$(curl -sS -X POST "+shellQuote(tokenURL)+" -u "+shellQuote(cred)+
			" -d grant_type=client_credentials | sed -n 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/p')")
		oauth2Header = `-H "Authorization: Bearer $ACCESS_TOKEN"`
	} else {
		headers, query, err = security.SignFor(sec, targetURL, body, "", time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd curl: %v\n", err)
		return 1
	}
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	if *contentType == "" {
		*contentType = contentTypeFor(*file)
	}
	lines := []string{"curl -sS -X POST " + shellQuote(target)}
	lines = append(lines, "-H "+shellQuote("Content-Type: "+*contentType))
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range headers {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range headers[name] {
			lines = append(lines, "-H "+shellQuote(spelled(name, security.HeaderNames(route.Endpoint.Security.Resolved()))+": "+v))
		}
	}
	if oauth2Header != "" {
		lines = append(lines, oauth2Header)
	}
	lines = append(lines, "--data-binary "+shellQuote("@"+*file))
	fmt.Fprintln(stdout, strings.Join(lines, " \\\n  "))
	if sec := route.Endpoint.Security.Resolved(); security.Timestamped(sec) {
		tol := sec.Tolerance
		if tol == 0 {
			tol = security.DefaultTolerance
		}
		fmt.Fprintf(stderr, "note: the command is signed with the time now: it is accepted for the endpoint's tolerance (%s), and once: a replay within %s is answered as a duplicate\n", tol, 2*tol)
	}
	return 0
}

// dialable turns a listen address into one a client can connect to.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func contentTypeFor(file string) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".json":
		return "application/json"
	case ".xml":
		return "application/xml"
	case ".form":
		return "application/x-www-form-urlencoded"
	}
	return "text/plain"
}

// shellQuote single-quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func cmdPlan(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("plan", stderr)
	cfgPath := fs.String("config", defaultConfig, "path to pushbackd.yaml")
	file := fs.String("file", "", "sample request JSON (default: standard input; empty means {})")
	draftPath := fs.String("saga", "", "plan this saga file (a draft, not applied) instead of the configured one")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 && (*draftPath == "" || len(pos) != 0) {
		fmt.Fprintln(stderr, "usage: pushbackd plan SAGA [-file request.json] [-saga draft.yaml] [-config ...]")
		return 2
	}
	cfg, ok := loadFor(stderr, *cfgPath, func(cfg *config.Config) bool { return cfg.Sagas[pos[0]] != nil })
	if !ok {
		return 1
	}
	sample, err := readInput(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd plan: %v\n", err)
		return 1
	}
	var plan *saga.PlanResult
	if *draftPath != "" {
		draft, derr := loadDraft(*draftPath)
		if derr != nil {
			printConfigErrors(stderr, derr)
			return 1
		}
		plan, err = gateway.PlanSagaSample(cfg, draft, sample)
	} else {
		plan, err = gateway.PlanSample(cfg, pos[0], sample)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushbackd plan: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<secret>" reads better than "\u003csecret\u003e"
	if err := enc.Encode(plan); err != nil {
		fmt.Fprintf(stderr, "pushbackd plan: %v\n", err)
		return 1
	}
	return 0
}
