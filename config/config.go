// Package config loads pushbackd's configuration directory — pushbackd.yaml, partners/*.yaml
// and sagas/*.yaml — validates all of it, and reports every problem as file:line:column.
//
// A Config is immutable once loaded: the gateway holds one snapshot per request, so a reload
// swaps the pointer and requests in flight finish on the config they started with.
package config

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/payload"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// Server is pushbackd.yaml.
type Server struct {
	Listen      string  `yaml:"listen"`
	Admin       Admin   `yaml:"admin"`
	DataDir     string  `yaml:"data_dir"`
	PartnersDir string  `yaml:"partners_dir"`
	SagasDir    string  `yaml:"sagas_dir"`
	Limits      Limits  `yaml:"limits"`
	History     History `yaml:"history"`
	Log         Log     `yaml:"log"`
	Egress      Egress  `yaml:"egress"`
	Proxy       Proxy   `yaml:"proxy"`
	TLS         *TLS    `yaml:"tls"`
	Store       Store   `yaml:"store"`
}

// Store drivers.
const (
	StoreBolt     = "bbolt"    // one file in data_dir: one instance
	StorePostgres = "postgres" // a shared database: several instances
)

// Store says where runs, idempotency keys, kv and saga versions live. It is read once at
// start: a changed store section needs a restart.
type Store struct {
	// Driver is StoreBolt (the default) or StorePostgres.
	Driver string `yaml:"driver"`
	// DSN is the Postgres connection string (a postgres:// URL or key=value), a secret
	// reference since it usually holds a password. Only with StorePostgres.
	DSN SecretRef `yaml:"dsn"`
}

// TLS makes a listener serve HTTPS (TLS 1.2 or later). The files are re-read when they
// change, so a renewed certificate needs no restart.
type TLS struct {
	Pos      yamlconf.Pos
	CertFile string `yaml:"cert_file,required"`
	KeyFile  string `yaml:"key_file,required"`
}

// Admin is the operator listener.
type Admin struct {
	Listen string    `yaml:"listen"`
	Token  SecretRef `yaml:"token"`
	TLS    *TLS      `yaml:"tls"`
	// Hosts are the names, besides IP literals and localhost, the listener answers to in
	// the Host header. A browser tricked by DNS rebinding sends the attacker's name, so
	// every other name is refused. Stored lower-case, without a trailing dot.
	Hosts []string `yaml:"hosts"`
}

// DefaultAdminTokenEnv is the environment variable the admin token comes from when the
// config does not set admin.token.
const DefaultAdminTokenEnv = "PUSHBACKD_ADMIN_TOKEN"

// MinAdminTokenLen is the shortest admin token accepted: the admin token opens everything,
// so it must be out of reach of guessing even across many addresses. The generated token
// (32 random bytes in hex) has 64.
const MinAdminTokenLen = 32

// Limits bound what one request may cost.
type Limits struct {
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	SyncTimeout       time.Duration `yaml:"sync_timeout"`
	// Workers is how many runs execute at once; Queue how many accepted async runs may wait
	// for a worker before new ones are answered 503 (waiting runs are on disk either way).
	Workers int `yaml:"workers"`
	Queue   int `yaml:"queue"`
	// ReplayRate is how many runs per second a bulk replay job replays, so a replay of
	// thousands of runs does not crowd out live traffic. Jobs read it as they go, so a
	// reload applies it.
	ReplayRate int `yaml:"replay_rate"`
	// LeaseTTL is how long a worker's hold on an executing run lasts without renewal
	// (renewed every third of it). With a shared store it is how long another instance
	// waits before it takes over the runs of one that died: shorter hands them over sooner,
	// at the cost of more renewal writes and a stalled process losing its runs sooner.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// AuthFailures throttles guessing: past the limit, a client's requests (and an
	// endpoint's failing ones) get 429 instead of another try.
	AuthFailures AuthFailures `yaml:"auth_failures"`

	// KV bounds what sagas' kv steps keep, since senders' data flows into their keys and
	// values: a longer key or value, or a new key for a partner holding the maximum number
	// of entries, fails the step.
	KVMaxKeyBytes          int `yaml:"kv_max_key_bytes"`
	KVMaxValueBytes        int `yaml:"kv_max_value_bytes"`
	KVMaxEntriesPerPartner int `yaml:"kv_max_entries_per_partner"`
}

// KVLimits are the limits for the saga engine's kv steps.
func (l Limits) KVLimits() saga.KVLimits {
	return saga.KVLimits{MaxKeyBytes: l.KVMaxKeyBytes, MaxValueBytes: l.KVMaxValueBytes, MaxEntries: l.KVMaxEntriesPerPartner}
}

// AuthFailures are failed-authentication budgets, each refilled evenly over Window. Zero
// turns a budget off.
type AuthFailures struct {
	PerClient   int           `yaml:"per_client"`   // per client address, all endpoints and the admin API
	PerEndpoint int           `yaml:"per_endpoint"` // per endpoint, all clients
	Window      time.Duration `yaml:"window"`
}

// History is how long runs are kept.
type History struct {
	Retention time.Duration `yaml:"retention"`
	MaxRuns   int           `yaml:"max_runs"`
	// IdempotencyTTL is how long an endpoint's idempotency key refuses duplicates. Encompass
	// retries for up to 8 hours and Snapdocs for 24, so the default of 48h covers both.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// PruneInterval is how often retention and max_runs are enforced.
	PruneInterval time.Duration `yaml:"prune_interval"`
	// MaxOutputBytes cuts each step's recorded input and output whose JSON is longer, so
	// one large answer cannot bloat the history; the run itself works on the whole value.
	MaxOutputBytes int `yaml:"max_output_bytes"`
}

// Bounds of history.max_output_bytes: below 1 KiB a cut value says little; above 1 MiB
// (a downstream answer's own limit) it would only let set steps bloat the record.
const (
	MinOutputBytes = 1 << 10
	MaxOutputBytes = 1 << 20
)

// Log configures zap.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Egress limits where saga http steps may connect; a partner's narrows the server's.
type Egress struct {
	Pos   yamlconf.Pos
	Allow []string `yaml:"allow"`
}

// Proxy names the header a TLS-terminating proxy puts the client address in. The header is
// believed only when the connection comes from one of Trusted; otherwise anyone could claim
// an address on an allow_ips list.
type Proxy struct {
	Pos     yamlconf.Pos
	Header  string   `yaml:"header"`
	Trusted []string `yaml:"trusted"`

	TrustedPrefixes []netip.Prefix `yaml:"-"`
}

// ClientAddr is who sent r, by the one rule both listeners use: the peer, or the client
// a trusted proxy names in the header.
func (p *Proxy) ClientAddr(r *http.Request) netip.Addr {
	return security.ClientAddr(r, p.Header, p.TrustedPrefixes)
}

// Defaults returns pushbackd.yaml's documented defaults (DESIGN §3).
func Defaults() Server {
	return Server{
		Listen:      "127.0.0.1:8080",
		Admin:       Admin{Listen: "127.0.0.1:8081"},
		DataDir:     "./data",
		Store:       Store{Driver: StoreBolt},
		PartnersDir: "partners",
		SagasDir:    "sagas",
		Limits: Limits{
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    64 << 10,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			SyncTimeout:       25 * time.Second,
			Workers:           64,
			Queue:             10000,
			ReplayRate:        50,
			LeaseTTL:          30 * time.Second, // dispatch.DefaultLeaseTTL
			AuthFailures:      AuthFailures{PerClient: 20, PerEndpoint: 200, Window: time.Minute},

			KVMaxKeyBytes:          saga.DefaultKVMaxKeyBytes,
			KVMaxValueBytes:        saga.DefaultKVMaxValueBytes,
			KVMaxEntriesPerPartner: saga.DefaultKVMaxEntries,
		},
		History: History{Retention: 720 * time.Hour, MaxRuns: 1_000_000, IdempotencyTTL: 48 * time.Hour, PruneInterval: 10 * time.Minute, MaxOutputBytes: 64 << 10},
		Log:     Log{Level: "info", Format: "json"},
	}
}

// Partner is one partners/<id>.yaml.
//
// A loaded partner keeps its endpoints and sites in one array each (Endpoints and
// Sites point into them) rather than one heap object per endpoint: with hundreds of
// thousands of endpoints, every garbage collection marks the whole configuration, and
// its cost is in the objects and pointers it has to visit.
type Partner struct {
	Pos       yamlconf.Pos
	ID        string               `yaml:"id,required"`
	Name      string               `yaml:"name"`
	Settings  map[string]any       `yaml:"settings"`
	Secrets   map[string]SecretRef `yaml:"secrets"`
	Egress    *Egress              `yaml:"egress"`
	Endpoints []*Endpoint          `yaml:"endpoints"`
	Sites     []*Site              `yaml:"sites"`

	File string `yaml:"-"`

	// Filled by Load.
	secrets   map[string]security.Secret // nil when the partner has none
	egress    []saga.EgressPolicy        // server's, then the partner's own
	endpoints map[string]*Endpoint       // only past indexMin endpoints; Endpoints is scanned below
	sites     map[string]*Site           // only past indexMin sites; likewise
}

// Site is a part of a partner with its own settings and, optionally, its own endpoints.
type Site struct {
	Pos       yamlconf.Pos
	ID        string         `yaml:"id,required"`
	Name      string         `yaml:"name"`
	Settings  map[string]any `yaml:"settings"`
	Endpoints []*Endpoint    `yaml:"endpoints"`

	// Filled by Load.
	settings  map[string]any       // partner settings overlaid with the site's
	endpoints map[string]*Endpoint // only past indexMin endpoints
}

// Mode says whether the sender waits for the saga.
type Mode string

// The two modes of DESIGN §5.
const (
	ModeAsync Mode = "async"
	ModeSync  Mode = "sync"
)

// Endpoint is one pushback URL.
type Endpoint struct {
	Pos            yamlconf.Pos
	Name           string     `yaml:"name,required"`
	Saga           string     `yaml:"saga,required"`
	Mode           Mode       `yaml:"mode"`
	Security       *Security  `yaml:"security"` // a loaded endpoint's points at its own sec
	IdempotencyKey string     `yaml:"idempotency_key"`
	AcceptStatus   int        `yaml:"accept_status"`
	MaxInFlight    int        `yaml:"max_in_flight"`
	Schema         *SchemaRef `yaml:"schema"` // nil for most endpoints: one pointer each

	// Filled by Load.
	saga        *saga.Saga
	idempotency *saga.Template
	sec         Security // Security's target once loaded: one object with the endpoint
}

// Verifier checks this endpoint's security method; nil unless the endpoint loaded. It is
// the endpoint's own security.Check, not an object of its own.
func (e *Endpoint) Verifier() security.Verifier {
	if e.Security == nil || !e.Security.check.Valid() {
		return nil
	}
	return &e.Security.check
}

// PayloadSchema is the compiled schema bodies must match, nil when the endpoint has none.
func (e *Endpoint) PayloadSchema() *payload.Schema {
	if e.Schema == nil {
		return nil
	}
	return e.Schema.compiled
}

// SchemaRef is an endpoint's `schema: <file>.json` (relative to the partner file): the
// path as written, where it is written, and the schema compiled from it at load.
type SchemaRef struct {
	Pos  yamlconf.Pos
	Path string

	compiled *payload.Schema
}

// UnmarshalYAMLNode reads the path and remembers where it is, for load errors.
func (r *SchemaRef) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	r.Pos = yamlconf.PosOf(n)
	d.Decode(n, &r.Path)
	if r.Path == "" {
		d.Errorf(n, "schema: the path is empty")
	}
}

// Idempotency is the compiled idempotency_key template, nil when the endpoint has none.
func (e *Endpoint) Idempotency() *saga.Template { return e.idempotency }

// SagaRef is the compiled saga this endpoint runs.
func (e *Endpoint) SagaRef() *saga.Saga { return e.saga }

// Security is an endpoint's security block. What was written is decoded into a
// securitySpec that lives only while loading; a loaded block keeps its method and its
// verifier, a security.Check: its secrets (in the partner's array once packed) and a
// pointer to a security.Template, which endpoints whose blocks differ only in their secrets
// share. (The block as written was ~600 bytes and a dozen pointers per endpoint, and a
// verifier of its own three more objects, all of it marked by every garbage collection.)
type Security struct {
	Method security.Method

	check security.Check // zero unless the block built
	spec  *securitySpec  // as written; loading only
}

// Resolved is the security.Config built at load, secrets included, or the zero Config when
// the block did not build. Used by the CLI to sign requests the way a sender would, and by
// the gateway to redact credentials; it allocates nothing.
func (s *Security) Resolved() security.Config { return s.check.Config() }

// Config is one loaded, validated configuration directory.
type Config struct {
	File     string // path of pushbackd.yaml
	Dir      string // its directory: relative paths resolve against it
	Server   Server
	Partners []*Partner // sorted by id
	Sagas    map[string]*saga.Saga
	// Warnings are problems that do not stop the config from loading: settings whose URL
	// the egress policy refuses. validate prints them and serve logs them.
	Warnings yamlconf.Errors

	partners map[string]*Partner
}
