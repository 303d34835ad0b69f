package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/payload"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// The largest kv limits a config may set: keys stay well within bbolt's 32 KiB, and values
// within what one step should write.
const (
	MaxKVKeyBytes   = 16 << 10
	MaxKVValueBytes = 16 << 20
)

// IDPattern is the shape of partner ids, site ids and endpoint names: they are URL path
// segments, so nothing that needs escaping, no upper case, no dots.
var IDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// MaxReplayRate bounds limits.replay_rate: above it pacing no longer protects anything.
const MaxReplayRate = 10000

// MinLeaseTTL and MaxLeaseTTL bound limits.lease_ttl: below a second the renewals (every
// third of it) would be writes several times a second per instance, and a pause of the
// process would cost it its runs; past an hour a dead instance's runs would wait that long.
const (
	MinLeaseTTL = time.Second
	MaxLeaseTTL = time.Hour
)

// validID is IDPattern.MatchString without the regexp engine: it runs for every partner,
// site and endpoint, hundreds of thousands of times in a large config.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Load reads and validates the configuration whose main file is path. On any problem it
// returns yamlconf.Errors listing all of them, sorted by file and position.
func Load(path string) (*Config, error) {
	return LoadWith(path, nil)
}

// LoadWith is Load as if the files in overlay (path -> content) were on disk, replacing or
// adding to what is. The admin API validates an edited saga this way — exactly as start-up
// would — before anything is written.
func LoadWith(path string, overlay map[string][]byte) (*Config, error) {
	l := &loader{overlay: map[string][]byte{}}
	for p, src := range overlay {
		l.overlay[filepath.Clean(p)] = src
	}
	cfg := l.load(path)
	l.errs.Sort()
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	return cfg, nil
}

// LoadServer reads only the main file's server section: commands that talk to a running
// server need its addresses and data dir, and must work while a partner or saga file is
// broken — which is when an operator reaches for them.
func LoadServer(path string) (Server, error) {
	l := &loader{overlay: map[string][]byte{}, serverOnly: true}
	cfg := l.load(path)
	l.errs.Sort()
	if len(l.errs) > 0 {
		return Server{}, l.errs
	}
	return cfg.Server, nil
}

// LoadPartial is Load for commands that need only part of the configuration: it returns
// what did load — every partner and saga whose file is valid — together with all the
// problems found. The Config is nil only when the main file cannot be read or parsed. It
// must never be served: a partner left out is a partner refused.
//
// A partner whose only problem is a saga it names whose file is broken is kept, without that
// saga, and the problem reported with the others: commands that need the partner (curl)
// never run its saga. A saga named that has no file at all stays the partner's own error.
func LoadPartial(path string) (*Config, yamlconf.Errors) {
	l := &loader{overlay: map[string][]byte{}, partial: true}
	cfg := l.load(path)
	l.errs.Sort()
	return cfg, l.errs
}

type loader struct {
	errs       yamlconf.Errors
	overlay    map[string][]byte
	serverOnly bool // stop after the main file
	partial    bool // LoadPartial: keep partners whose only fault is a saga whose file is broken
	// brokenSagas names the sagas whose files did not load (a saga's name is its file's).
	brokenSagas map[string]bool
}

func (l *loader) readFile(path string) ([]byte, error) {
	if src, ok := l.overlay[filepath.Clean(path)]; ok {
		return src, nil
	}
	return yamlconf.ReadFile(path)
}

// yamlFiles lists dir's *.yaml and *.yml files, sorted, overlay files included.
func (l *loader) yamlFiles(dir string) ([]string, error) {
	files, err := yamlFiles(dir)
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && len(l.overlay) > 0) {
		return nil, err
	}
	for p := range l.overlay {
		if filepath.Dir(p) == filepath.Clean(dir) && !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	slices.Sort(files)
	return files, nil
}

func (l *loader) fileError(file string, err error) {
	l.errs = append(l.errs, yamlconf.Error{File: file, Line: 1, Column: 1, Message: err.Error()})
}

func (l *loader) load(path string) *Config {
	cfg := &Config{File: path, Dir: filepath.Dir(path), Server: Defaults()}
	src, err := l.readFile(path)
	if err != nil {
		l.fileError(path, fmt.Errorf("cannot read config: %w", unwrapPathError(err)))
		return nil
	}
	d := yamlconf.NewDecoder(path)
	node, perrs := yamlconf.Parse(path, src)
	if perrs != nil {
		l.errs = append(l.errs, perrs...)
		return nil
	}
	if node != nil { // an empty pushbackd.yaml means "all defaults"
		d.Decode(node, &cfg.Server)
	}
	l.validateServer(d, node, cfg)
	l.errs = append(l.errs, d.Errors()...)
	if l.serverOnly {
		return cfg
	}

	cfg.Sagas = l.loadSagas(cfg.resolve(cfg.Server.SagasDir))
	cfg.partners = map[string]*Partner{}
	server := saga.EgressPolicy{Allow: cfg.Server.Egress.Allow}
	serverOnly := []saga.EgressPolicy{server} // shared by every partner without egress of its own
	partners, warnings := l.loadPartners(cfg.resolve(cfg.Server.PartnersDir), cfg.Sagas, newEgressCheck(cfg.Server))
	cfg.Warnings = warnings
	for _, p := range partners {
		if len(p.egress) == 0 {
			p.egress = serverOnly
		} else {
			p.egress = append([]saga.EgressPolicy{server}, p.egress...)
		}
		if prev, dup := cfg.partners[p.ID]; dup {
			l.errs = append(l.errs, yamlconf.Error{File: p.File, Line: p.Pos.Line, Column: p.Pos.Column,
				Message: fmt.Sprintf("partner %q is already defined in %s", p.ID, prev.File)})
			continue
		}
		cfg.partners[p.ID] = p
		cfg.Partners = append(cfg.Partners, p)
	}
	slices.SortFunc(cfg.Partners, func(a, b *Partner) int { return strings.Compare(a.ID, b.ID) })
	return cfg
}

// resolve makes a path from pushbackd.yaml relative to that file's directory.
func (c *Config) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// valueNode finds the node under a dotted key path, for positioning validation errors.
func valueNode(d *yamlconf.Decoder, n ast.Node, path ...string) ast.Node {
	for _, key := range path {
		m, ok := d.Resolve(n).(*ast.MappingNode)
		if !ok {
			if mv, ok := d.Resolve(n).(*ast.MappingValueNode); ok {
				m = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}
			} else {
				return n
			}
		}
		found := false
		for _, mv := range m.Values {
			if d.KeyName(mv) == key {
				n, found = mv.Value, true
				break
			}
		}
		if !found {
			return n
		}
	}
	return n
}

func (l *loader) validateServer(d *yamlconf.Decoder, root ast.Node, cfg *Config) {
	s := &cfg.Server
	at := func(path ...string) ast.Node { return valueNode(d, root, path...) }
	checkAddr := func(addr string, path ...string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			d.Errorf(at(path...), "%s: %q is not host:port", strings.Join(path, "."), addr)
		}
	}
	checkAddr(s.Listen, "listen")
	checkAddr(s.Admin.Listen, "admin", "listen")
	if s.Limits.MaxBodyBytes <= 0 {
		d.Errorf(at("limits", "max_body_bytes"), "limits.max_body_bytes must be positive")
	}
	if s.Limits.MaxHeaderBytes <= 0 {
		d.Errorf(at("limits", "max_header_bytes"), "limits.max_header_bytes must be positive")
	}
	for _, k := range []struct {
		name string
		v    int64
	}{{"read_header_timeout", int64(s.Limits.ReadHeaderTimeout)}, {"read_timeout", int64(s.Limits.ReadTimeout)}, {"sync_timeout", int64(s.Limits.SyncTimeout)}} {
		if k.v <= 0 {
			d.Errorf(at("limits", k.name), "limits.%s must be positive", k.name)
		}
	}
	if s.Limits.Workers <= 0 {
		d.Errorf(at("limits", "workers"), "limits.workers must be positive")
	}
	if s.Limits.Queue <= 0 {
		d.Errorf(at("limits", "queue"), "limits.queue must be positive")
	}
	if s.Limits.ReplayRate <= 0 || s.Limits.ReplayRate > MaxReplayRate {
		d.Errorf(at("limits", "replay_rate"), "limits.replay_rate must be between 1 and %d runs per second, not %d", MaxReplayRate, s.Limits.ReplayRate)
	}
	if s.Limits.LeaseTTL < MinLeaseTTL || s.Limits.LeaseTTL > MaxLeaseTTL {
		d.Errorf(at("limits", "lease_ttl"), "limits.lease_ttl must be between %s and %s, not %s", MinLeaseTTL, MaxLeaseTTL, s.Limits.LeaseTTL)
	}
	if af := s.Limits.AuthFailures; af.PerClient < 0 || af.PerEndpoint < 0 || af.Window <= 0 {
		d.Errorf(at("limits", "auth_failures"), "limits.auth_failures: per_client and per_endpoint must not be negative (0 turns one off) and window must be positive")
	}
	for _, k := range []struct {
		name   string
		v, max int
	}{
		{"kv_max_key_bytes", s.Limits.KVMaxKeyBytes, MaxKVKeyBytes},
		{"kv_max_value_bytes", s.Limits.KVMaxValueBytes, MaxKVValueBytes},
		{"kv_max_entries_per_partner", s.Limits.KVMaxEntriesPerPartner, math.MaxInt32},
	} {
		if k.v <= 0 || k.v > k.max {
			d.Errorf(at("limits", k.name), "limits.%s must be between 1 and %d, not %d", k.name, k.max, k.v)
		}
	}
	if s.History.IdempotencyTTL <= 0 {
		d.Errorf(at("history", "idempotency_ttl"), "history.idempotency_ttl must be positive")
	}
	if s.History.PruneInterval <= 0 {
		d.Errorf(at("history", "prune_interval"), "history.prune_interval must be positive")
	}
	if s.History.MaxRuns < 0 {
		d.Errorf(at("history", "max_runs"), "history.max_runs must not be negative")
	}
	if n := s.History.MaxOutputBytes; n < MinOutputBytes || n > MaxOutputBytes {
		d.Errorf(at("history", "max_output_bytes"), "history.max_output_bytes must be between %d and %d, not %d", MinOutputBytes, MaxOutputBytes, n)
	}
	switch s.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		d.Errorf(at("log", "level"), "log.level must be debug, info, warn or error, not %q", s.Log.Level)
	}
	if s.Log.Format != "json" && s.Log.Format != "console" {
		d.Errorf(at("log", "format"), "log.format must be json or console, not %q", s.Log.Format)
	}
	if s.DataDir == "" {
		d.Errorf(at("data_dir"), "data_dir must not be empty")
	}
	validateEgress(d, at("egress", "allow"), s.Egress.Pos, s.Egress.Allow)
	if s.Proxy.Header != "" || len(s.Proxy.Trusted) > 0 {
		if s.Proxy.Header == "" {
			d.Errorf(at("proxy"), "proxy.header is required when proxy.trusted is set")
		}
		if len(s.Proxy.Trusted) == 0 {
			d.Errorf(at("proxy"), "proxy.trusted must list the proxies' addresses (CIDR); the header is believed only from them")
		}
		s.Proxy.TrustedPrefixes = parsePrefixes(d, at("proxy", "trusted"), s.Proxy.Pos, s.Proxy.Trusted)
	}
	for _, t := range []struct {
		tls  *TLS
		name string
	}{{s.TLS, "tls"}, {s.Admin.TLS, "admin.tls"}} {
		if t.tls == nil {
			continue
		}
		t.tls.CertFile, t.tls.KeyFile = cfg.resolve(t.tls.CertFile), cfg.resolve(t.tls.KeyFile)
		if _, err := tls.LoadX509KeyPair(t.tls.CertFile, t.tls.KeyFile); err != nil {
			d.ErrorAt(t.tls.Pos, "%s: %v", t.name, err)
		}
	}
	// The admin token is optional: unset means PUSHBACKD_ADMIN_TOKEN when that is set (as
	// if the config said {env: PUSHBACKD_ADMIN_TOKEN}; not with postgres, whose token must
	// be in the config, see validateStore), else one is generated into data_dir.
	if !s.Admin.Token.IsSet() && s.Store.Driver != StorePostgres {
		if v := os.Getenv(DefaultAdminTokenEnv); v != "" {
			s.Admin.Token.Env, s.Admin.Token.Secret = DefaultAdminTokenEnv, security.NewSecret(v)
			if n := utf8.RuneCountInString(v); n < MinAdminTokenLen {
				d.Errorf(at("admin"), "the admin token from %s (admin.token is not set) must be at least %d characters (this one has %d); make one with `openssl rand -hex 32`", DefaultAdminTokenEnv, MinAdminTokenLen, n)
			}
		}
	}
	if s.Admin.Token.IsSet() {
		if s.Admin.Token.Env != "" {
			if v := os.Getenv(s.Admin.Token.Env); v != "" {
				s.Admin.Token.Secret = security.NewSecret(v)
			}
		} else {
			s.Admin.Token.resolve(d, cfg.Dir)
		}
		if t := s.Admin.Token.Secret; !t.IsZero() {
			if n := utf8.RuneCount(t.Reveal()); n < MinAdminTokenLen {
				d.ErrorAt(s.Admin.Token.Pos, "admin.token must be at least %d characters (this one has %d); make one with `openssl rand -hex 32`", MinAdminTokenLen, n)
			}
		}
	}
	s.Admin.Hosts = adminHosts(d, at("admin", "hosts"), s.Admin.Hosts)
	validateStore(d, at, cfg)
}

// validateStore checks the store section: a known driver, a DSN when it is postgres, and with postgres an admin token in the config, since a token generated into
// one machine's data_dir cannot serve the other instances sharing the database.
func validateStore(d *yamlconf.Decoder, at func(path ...string) ast.Node, cfg *Config) {
	s := &cfg.Server
	switch s.Store.Driver {
	case StoreBolt:
		// A dsn beside driver bbolt is left unresolved and unused, as DESIGN's keys-and-
		// defaults block shows it: switching drivers is then one line, and an unset
		// PUSHBACKD_POSTGRES_DSN does not stop a bbolt instance.
	case StorePostgres:
		// A dsn or token that is there but wrong (a bare string, an unreadable file) was
		// reported where it is written; "is required" beside that would be a second, wrong
		// message.
		if !s.Store.DSN.IsSet() {
			if !reportedAt(d, s.Store.DSN.Pos) {
				d.Errorf(at("store", "driver"), "store.dsn is required with driver postgres: a secret reference such as {env: PUSHBACKD_POSTGRES_DSN}")
			}
		} else {
			s.Store.DSN.resolve(d, cfg.Dir)
		}
		tok := s.Admin.Token
		switch {
		case !tok.Secret.IsZero() || reportedAt(d, tok.Pos):
		case tok.IsSet() && tok.Env != "":
			// Elsewhere an unset variable falls back to a generated token; here it cannot.
			d.ErrorAt(tok.Pos, "environment variable %s is not set: with driver postgres the admin token is not generated, every instance sharing the database must accept the same one", tok.Env)
		default:
			d.Errorf(at("store", "driver"), "admin.token must be set in the config with driver postgres (e.g. {env: PUSHBACKD_ADMIN_TOKEN}): a generated token lives in one machine's data_dir, and every instance sharing the database must accept the same token")
		}
	default:
		d.Errorf(at("store", "driver"), "store.driver must be bbolt or postgres, not %q", s.Store.Driver)
	}
}

// reportedAt says whether an error was already reported at pos (a zero pos: never).
func reportedAt(d *yamlconf.Decoder, pos yamlconf.Pos) bool {
	return pos != (yamlconf.Pos{}) && slices.ContainsFunc(d.Errors(), func(e yamlconf.Error) bool {
		return e.Line == pos.Line && e.Column == pos.Column
	})
}

// adminHosts checks that each admin.hosts entry is a bare host name and returns them in
// the form the Host check compares: lower case, no trailing dot.
func adminHosts(d *yamlconf.Decoder, n ast.Node, hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for i, h := range hosts {
		name := strings.TrimSuffix(strings.ToLower(h), ".")
		if name == "" || strings.ContainsAny(name, ":/[]@ \t") {
			d.ErrorAt(itemPos(d, n, i, yamlconf.PosOf(n)), "admin.hosts: %q must be a host name without port or scheme, like admin.example.com (IP addresses and localhost need no entry)", h)
			continue
		}
		out = append(out, name)
	}
	return out
}

// validateEgress checks allow patterns with the saga engine's own rules, so what loads is
// exactly what the engine can enforce.
func validateEgress(d *yamlconf.Decoder, n ast.Node, fallback yamlconf.Pos, patterns []string) {
	for i, p := range patterns {
		if err := (saga.EgressPolicy{Allow: []string{p}}).Validate(); err != nil {
			d.ErrorAt(itemPos(d, n, i, fallback), "%v", err)
		}
	}
}

// itemPos is the position of the i-th item of the list node n, or fallback when n is not
// at hand.
func itemPos(d *yamlconf.Decoder, n ast.Node, i int, fallback yamlconf.Pos) yamlconf.Pos {
	if n == nil {
		return fallback
	}
	if seq, ok := d.Resolve(n).(*ast.SequenceNode); ok && i < len(seq.Values) {
		return yamlconf.PosOf(seq.Values[i])
	}
	return yamlconf.PosOf(n)
}

// parsePrefixes accepts CIDRs and bare addresses (as a /32 or /128).
func parsePrefixes(d *yamlconf.Decoder, n ast.Node, fallback yamlconf.Pos, list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				d.ErrorAt(itemPos(d, n, i, fallback), "%q is not an IP address or CIDR range", s)
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func yamlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if ext := filepath.Ext(e.Name()); ext == ".yaml" || ext == ".yml" {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	return files, nil
}

func (l *loader) loadSagas(dir string) map[string]*saga.Saga {
	sagas := map[string]*saga.Saga{}
	files, err := l.yamlFiles(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.fileError(dir, fmt.Errorf("cannot read sagas_dir: %w", unwrapPathError(err)))
		}
		return sagas
	}
	l.brokenSagas = map[string]bool{}
	for _, f := range files {
		src, err := l.readFile(f)
		if err != nil {
			l.fileError(f, unwrapPathError(err))
			l.brokenSagas[strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))] = true
			continue
		}
		s, errs := saga.Parse(f, src)
		l.errs = append(l.errs, errs...)
		if len(errs) > 0 {
			l.brokenSagas[strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))] = true
		}
		if s == nil || s.Name == "" {
			continue
		}
		if prev, dup := sagas[s.Name]; dup {
			l.fileError(f, fmt.Errorf("saga %q is already defined in %s", s.Name, prev.File))
			continue
		}
		sagas[s.Name] = s
	}
	return sagas
}

// loadPartners parses, decodes and validates every partner file. Files are independent,
// so they are spread over GOMAXPROCS workers: parsing dominates start-up with thousands of
// partners. Results are gathered by file index, so errors and partners come out in file
// order whatever the scheduling.
func (l *loader) loadPartners(dir string, sagas map[string]*saga.Saga, ec egressCheck) ([]*Partner, yamlconf.Errors) {
	files, err := l.yamlFiles(dir)
	if err != nil {
		l.fileError(dir, fmt.Errorf("cannot read partners_dir: %w", unwrapPathError(err)))
		return nil, nil
	}
	type result struct {
		p     *Partner
		errs  yamlconf.Errors
		warns yamlconf.Errors
	}
	results := make([]result, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Go(func() {
			// One decoder per worker: its type and string caches serve all its files.
			d := yamlconf.NewDecoder("")
			share := &shared{schemas: map[string]schemaResult{}, brokenSagas: l.brokenSagas, partial: l.partial}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				results[i].p, results[i].errs, results[i].warns = l.loadPartner(d, share, files[i], sagas, ec)
			}
		})
	}
	wg.Wait()
	var partners []*Partner
	var warnings yamlconf.Errors
	for _, r := range results {
		l.errs = append(l.errs, r.errs...)
		warnings = append(warnings, r.warns...)
		if r.p != nil {
			partners = append(partners, r.p)
		}
	}
	return partners, warnings
}

// loadPartner reads one partner file with d, returning the partner when it has no errors,
// and the file's warnings. It must not touch the loader's state: workers call it
// concurrently.
func (l *loader) loadPartner(d *yamlconf.Decoder, share *shared, f string, sagas map[string]*saga.Saga, ec egressCheck) (*Partner, yamlconf.Errors, yamlconf.Errors) {
	src, err := l.readFile(f)
	if err != nil {
		return nil, yamlconf.Errors{{File: f, Line: 1, Column: 1, Message: unwrapPathError(err).Error()}}, nil
	}
	node, perrs := yamlconf.Parse(f, src)
	if perrs != nil {
		return nil, perrs, nil
	}
	d.Reset(f)
	p := &Partner{File: f}
	if node == nil {
		d.ErrorAt(yamlconf.Pos{Line: 1, Column: 1}, "file is empty")
	} else {
		d.Decode(node, p)
		share.egress = partnerEgress(p, ec)
		validatePartner(d, p, sagas, filepath.Dir(f), share)
	}
	errs := d.Errors()
	missing := share.missingSagas
	share.missingSagas = nil
	for i := range missing {
		missing[i].File = f
	}
	var warns yamlconf.Errors
	if len(errs) == 0 {
		warns = settingsWarnings(d, node, p, ec)
	}
	// Drop the anchors, and with them the AST, before the next file is read.
	d.Reset("")
	if len(errs) > 0 {
		errs = append(errs, missing...)
		errs.Sort()
		return nil, errs, nil
	}
	pack(p)
	// Partial loading only: the partner loads without the sagas that did not, and the
	// loader still reports each as an error for the caller to weigh.
	return p, missing, warns
}

func validatePartner(d *yamlconf.Decoder, p *Partner, sagas map[string]*saga.Saga, dir string, share *shared) {
	if p.ID != "" {
		if !validID(p.ID) {
			d.ErrorAt(p.Pos, "partner id %q must match %s", p.ID, IDPattern)
		} else if base := strings.TrimSuffix(filepath.Base(p.File), filepath.Ext(p.File)); base != p.ID {
			d.ErrorAt(p.Pos, "partner id %q must match its file name %q", p.ID, base)
		}
	}
	if len(p.Secrets) > 0 {
		p.secrets = make(map[string]security.Secret, len(p.Secrets))
	}
	for _, name := range slices.Sorted(maps.Keys(p.Secrets)) {
		ref := p.Secrets[name]
		ref.resolve(d, dir)
		p.Secrets[name] = ref
		p.secrets[name] = ref.Secret
	}
	if p.Egress != nil {
		validateEgress(d, nil, p.Egress.Pos, p.Egress.Allow)
		p.egress = append(p.egress, saga.EgressPolicy{Allow: p.Egress.Allow, Source: "partner " + p.ID})
	}
	p.Endpoints = slices.DeleteFunc(p.Endpoints, func(e *Endpoint) bool { return e == nil }) // null items, reported by the decoder
	p.Sites = slices.DeleteFunc(p.Sites, func(s *Site) bool { return s == nil })
	validateEndpoints(d, p.Endpoints, sagas, dir, "partner "+p.ID, share)
	var seen map[string]bool // only for long lists: short ones are scanned
	if len(p.Sites) > indexMin {
		seen = make(map[string]bool, len(p.Sites))
	}
	for i, s := range p.Sites {
		if s.ID != "" && !validID(s.ID) {
			d.ErrorAt(s.Pos, "site id %q must match %s", s.ID, IDPattern)
		}
		dup := seen[s.ID]
		if seen != nil {
			seen[s.ID] = true
		} else {
			dup = slices.ContainsFunc(p.Sites[:i], func(o *Site) bool { return o.ID == s.ID })
		}
		if dup {
			d.ErrorAt(s.Pos, "site %q appears twice", s.ID)
			continue
		}
		if len(s.Settings) == 0 && p.Settings != nil {
			// Nothing to overlay: share the partner's map, as partner-scoped routes do,
			// rather than keep a copy per site.
			s.settings = p.Settings
		} else {
			s.settings = make(map[string]any, len(p.Settings)+len(s.Settings))
			maps.Copy(s.settings, p.Settings)
			maps.Copy(s.settings, s.Settings)
		}
		s.Endpoints = slices.DeleteFunc(s.Endpoints, func(e *Endpoint) bool { return e == nil })
		validateEndpoints(d, s.Endpoints, sagas, dir, "site "+s.ID, share)
	}
	if len(p.Endpoints) == 0 && !slices.ContainsFunc(p.Sites, func(s *Site) bool { return len(s.Endpoints) > 0 }) {
		d.ErrorAt(p.Pos, "partner %q has no endpoints", p.ID)
	}
}

// SagaDidNotLoad ends the error of an endpoint whose saga's file has errors of its own: a
// consequence, which the admin API leaves out beside those errors.
const SagaDidNotLoad = "did not load: its file in sagas_dir has errors"

func validateEndpoints(d *yamlconf.Decoder, list []*Endpoint, sagas map[string]*saga.Saga, dir, scope string, share *shared) {
	var seen map[string]bool // only for long lists: short ones are scanned
	if len(list) > indexMin {
		seen = make(map[string]bool, len(list))
	}
	for i, e := range list {
		if e.Name != "" && !validID(e.Name) {
			d.ErrorAt(e.Pos, "endpoint name %q must match %s", e.Name, IDPattern)
		}
		dup := seen[e.Name]
		if seen != nil {
			seen[e.Name] = true
		} else {
			dup = slices.ContainsFunc(list[:i], func(o *Endpoint) bool { return o.Name == e.Name })
		}
		if dup {
			d.ErrorAt(e.Pos, "endpoint %q appears twice in %s", e.Name, scope)
			if e.Security != nil {
				e.Security.spec = nil
			}
			continue
		}
		if e.Saga != "" {
			if s, ok := sagas[e.Saga]; ok {
				e.saga = s
			} else {
				known := "there are none"
				if len(sagas) > 0 {
					known = "known: " + strings.Join(slices.Sorted(maps.Keys(sagas)), ", ")
				}
				msg := fmt.Sprintf("endpoint %q: saga %q not found in sagas_dir (%s)", e.Name, e.Saga, known)
				broken := share.brokenSagas[e.Saga]
				if broken {
					// The file is there; its own errors say what to mend.
					msg = fmt.Sprintf("endpoint %q: saga %q %s", e.Name, e.Saga, SagaDidNotLoad)
				}
				if broken && share.partial {
					share.missingSagas = append(share.missingSagas, yamlconf.Error{Line: e.Pos.Line, Column: e.Pos.Column, Message: msg})
				} else {
					d.ErrorAt(e.Pos, "%s", msg)
				}
			}
		}
		switch e.Mode {
		case "":
			e.Mode = ModeAsync
		case ModeAsync:
			e.Mode = ModeAsync // the constant, not the file's copy of the word
		case ModeSync:
			e.Mode = ModeSync
		default:
			d.ErrorAt(e.Pos, "endpoint %q: mode must be async or sync, not %q", e.Name, e.Mode)
		}
		if e.Mode == ModeSync && e.saga != nil {
			syncWithQueueing(d, e)
		}
		if e.AcceptStatus == 0 {
			e.AcceptStatus = 200
		} else if e.AcceptStatus < 200 || e.AcceptStatus > 299 {
			d.ErrorAt(e.Pos, "endpoint %q: accept_status must be a 2xx status, not %d", e.Name, e.AcceptStatus)
		}
		if e.IdempotencyKey != "" {
			t, errs := saga.CompileKey(e.IdempotencyKey, "idempotency_key")
			for _, err := range errs {
				d.ErrorAt(e.Pos, "endpoint %q: %s", e.Name, err.Message)
			}
			e.idempotency = t
		}
		if e.MaxInFlight < 0 {
			d.ErrorAt(e.Pos, "endpoint %q: max_in_flight must not be negative", e.Name)
		}
		if e.Security == nil {
			d.ErrorAt(e.Pos, "endpoint %q has no security method: every endpoint needs one (%s) or a preset (%s)", e.Name, methodList(), presetList())
			continue
		}
		if e.Schema != nil && e.Schema.Path != "" {
			e.Schema.compiled = share.schema(d, dir, e.Name, e.Schema)
		}
		e.Security.build(d, dir, &share.templates, share.egress)
	}
}

// syncWithQueueing refuses a sync endpoint whose saga debounces or serializes: both make a
// run wait for other runs, while a sync sender waits for this run's answer. The engine would
// ignore them for sync runs, so the setting would do nothing without a word.
func syncWithQueueing(d *yamlconf.Decoder, e *Endpoint) {
	s := e.saga
	fix := "use mode: async for this endpoint, or a saga without it"
	if s.Debounce != nil {
		d.ErrorAt(e.Pos, "endpoint %q: mode sync cannot use saga %q, which debounces (%s:%d:%d): a sync sender waits for its own run's answer; %s",
			e.Name, s.Name, s.File, s.Debounce.Pos.Line, s.Debounce.Pos.Column, fix)
	}
	if s.SerializeBy != nil {
		d.ErrorAt(e.Pos, "endpoint %q: mode sync cannot use saga %q, which has serialize_by (%s:%d:%d): a sync sender waits for its own run's answer, not for others' runs; %s",
			e.Name, s.Name, s.File, s.SerializeByPos.Line, s.SerializeByPos.Column, fix)
	}
}

// shared is what one loading worker reuses across the endpoints of its files: security
// templates, and schemas compiled once per file however many endpoints name them.
type shared struct {
	templates security.Templates
	schemas   map[string]schemaResult // by absolute path
	egress    http.RoundTripper       // the partner's, for methods that fetch keys
	// brokenSagas names the sagas whose files did not load (read only). With partial
	// (LoadPartial), an endpoint naming one has that problem collected in missingSagas (the
	// current file's, positions only) instead of failing the partner.
	brokenSagas  map[string]bool
	partial      bool
	missingSagas yamlconf.Errors
}

type schemaResult struct {
	s   *payload.Schema
	err error
}

// schema compiles the schema ref names (relative to dir), reporting a failure at ref.
func (sh *shared) schema(d *yamlconf.Decoder, dir, endpoint string, ref *SchemaRef) *payload.Schema {
	path := ref.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		d.ErrorAt(ref.Pos, "endpoint %q: schema: %v", endpoint, err)
		return nil
	}
	r, ok := sh.schemas[abs]
	if !ok {
		r.s, r.err = payload.Compile(abs, ref.Path)
		sh.schemas[abs] = r
	}
	if r.err != nil {
		d.ErrorAt(ref.Pos, "endpoint %q: %v", endpoint, r.err)
	}
	return r.s
}

// indexMin is how many endpoints (or sites) a scope has before lookups go through a map;
// up to it, scanning the list compares fewer bytes than hashing the name, and saves the
// collector a map per site.
const indexMin = 8

// pack moves a validated partner's endpoints, their security and its sites into one array
// each, so that a loaded partner is a handful of heap objects whatever its size, and builds
// the lookup indexes of long lists.
func pack(p *Partner) {
	n, nsecrets := 0, 0
	count := func(list []*Endpoint) {
		n += len(list)
		for _, e := range list {
			nsecrets += len(e.Security.check.Secrets())
		}
	}
	count(p.Endpoints)
	for _, s := range p.Sites {
		count(s.Endpoints)
	}
	eps := make([]Endpoint, n)
	ptrs := make([]*Endpoint, n)
	secrets := make([]security.Secret, 0, nsecrets)
	next := 0
	move := func(list []*Endpoint) []*Endpoint {
		start := next
		for _, e := range list {
			c := &eps[next]
			*c = *e
			c.sec = *e.Security
			c.Security = &c.sec
			secrets = append(secrets, c.sec.check.Secrets()...)
			ptrs[next] = c
			next++
		}
		return ptrs[start:next:next]
	}
	p.Endpoints = move(p.Endpoints)
	p.endpoints = index(p.Endpoints, func(e *Endpoint) string { return e.Name })
	sites := make([]Site, len(p.Sites))
	sitePtrs := make([]*Site, len(p.Sites))
	for i, s := range p.Sites {
		c := &sites[i]
		*c = *s
		c.Endpoints = move(s.Endpoints)
		c.endpoints = index(c.Endpoints, func(e *Endpoint) string { return e.Name })
		sitePtrs[i] = c
	}
	p.Sites = sitePtrs
	p.sites = index(p.Sites, func(s *Site) string { return s.ID })
	packSecrets(eps, secrets)
}

// packSecrets gives the partner's endpoints one array of secrets, holding the bytes of all
// of them in one allocation, in place of a list and a copy of the bytes per endpoint.
// secrets are the endpoints' secrets in order.
func packSecrets(eps []Endpoint, secrets []security.Secret) {
	security.PackSecrets(secrets)
	next := 0
	for i := range eps {
		c := &eps[i].sec.check
		n := len(c.Secrets())
		if !c.MoveSecrets(secrets[next : next+n : next+n]) { // an append by a caller copies
			panic("config: a packed secret differs from its endpoint's")
		}
		next += n
	}
}

// index maps names to list items when the list is longer than indexMin, nil otherwise.
func index[T any](list []*T, name func(*T) string) map[string]*T {
	if len(list) <= indexMin {
		return nil
	}
	m := make(map[string]*T, len(list))
	for _, x := range list {
		m[name(x)] = x
	}
	return m
}

func methodList() string {
	names := make([]string, 0, 6)
	for _, m := range security.Methods() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}
