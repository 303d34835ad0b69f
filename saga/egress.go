package saga

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrEgressRefused is wrapped by every refusal of the egress policy.
var ErrEgressRefused = errors.New("egress refused")

// egressError is one refusal. Its message names the rule and, where the operator can lift
// it, which list to change.
type egressError struct {
	msg string
	// list is the index of the refusing list among those checked, -1 for a rule no list
	// lifts; where names that list, and ends the message.
	list  int
	where string
}

func (e *egressError) Error() string        { return ErrEgressRefused.Error() + ": " + e.msg + e.where }
func (e *egressError) Is(target error) bool { return target == ErrEgressRefused }

func refused(format string, args ...any) error {
	return &egressError{msg: fmt.Sprintf(format, args...), list: -1}
}

// refusedBy is a refusal by lists[i], whose name ends the message.
func refusedBy(lists []egressList, i int, format string, args ...any) error {
	return &egressError{msg: fmt.Sprintf(format, args...), list: i, where: lists[i].where}
}

// naming names the refusing list as one of lists: connections are pooled per list
// contents, so the guard that refused may have been built from another partner's
// identical list.
func (e *egressError) naming(lists []EgressPolicy) *egressError {
	if e.list < 0 || e.list >= len(lists) {
		return e
	}
	c := *e
	c.where = listName(lists[e.list])
	return &c
}

func listName(p EgressPolicy) string {
	if p.Source == "" {
		return "egress.allow"
	}
	return "egress.allow of " + p.Source
}

// EgressPolicy is one egress.allow list: the server's, or a partner's that narrows it. An
// http step must pass every list its run carries, and the rules no list lifts.
//
// Entries (a port is digits or *, none means any; an IPv6 address with a port needs
// brackets):
//
//	crm.example.com  *.crm.example.com  crm.example.com:443   host names; * is any run of characters
//	10.0.0.5  10.0.0.5:8080  ::1  [::1]:8080                  one address
//	10.0.0.0/8  10.0.0.0/8:443  fd00::/8  [fd00::/8]:8443     a CIDR range
//
// An empty list allows public addresses only. A list with entries allows what they match.
// An address inside — loopback, private (RFC 1918), unique-local (fc00::/7), shared
// (CGNAT, 100.64.0.0/10), unspecified (0.0.0.0, ::), or an IPv6 form embedding one of
// these — is reached only through an entry that names it: its address, a CIDR holding it,
// or the host name the URL used; a bare * matches public addresses only. Name entries match
// the URL's host; address entries match the address actually dialled, after DNS, so a name
// that resolves inside is caught too.
//
// Whatever a list says, link-local addresses, the cloud metadata addresses
// (metadataAddrs) and pushbackd's own listeners are refused.
type EgressPolicy struct {
	Allow []string
	// Source names the list in refusals, e.g. "partner acme"; empty for the server's.
	Source string
}

// Validate checks the entries.
func (p EgressPolicy) Validate() error {
	for _, pat := range p.Allow {
		if _, err := parseEgressEntry(pat); err != nil {
			return err
		}
	}
	return nil
}

// CheckURL applies this list alone (and the rules no list lifts) to a URL before any
// connection is made. A literal address is decided here; a name is refused here only when no
// entry could match whatever it resolves to, the rest is decided when it is dialled.
func (p EgressPolicy) CheckURL(u *url.URL) error {
	return newEgressGuard([]EgressPolicy{p}, nil).checkURL(u)
}

// CheckEgress says why lists (and the rules no list lifts, with own as pushbackd's
// listeners) refuse u whatever DNS answers, or nil. A literal address is decided in full,
// "localhost" is taken as the loopback address it names, and any other name only as far as
// no entry could match it. The config loader uses it to warn about settings a saga would
// be refused.
func CheckEgress(u *url.URL, lists []EgressPolicy, own []Listener) error {
	g := newEgressGuard(lists, func() []Listener { return own })
	if err := g.checkURL(u); err != nil {
		return err
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		port, err := strconv.ParseUint(urlPort(u), 10, 16)
		if err != nil {
			return nil // checkURL reported it
		}
		return g.check(host, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)))
	}
	return nil
}

// Listener is one of pushbackd's own listening addresses. http steps never reach one: a
// sender could otherwise read the admin API (or loop a request back to the gateway) through
// a saga.
type Listener struct {
	Name string // "pushback" or "admin"
	Addr netip.AddrPort
}

// metadataAddrs are cloud instance metadata and credential services: whoever reaches them
// can read the machine's cloud credentials. Most are link-local (refused anyway); those that
// are not are why this list exists.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6 (Nitro)
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata and credentials
	netip.MustParseAddr("169.254.170.23"),  // AWS EKS Pod Identity agent
	netip.MustParseAddr("fd00:ec2::23"),    // AWS EKS Pod Identity agent over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud metadata
	netip.MustParseAddr("168.63.129.16"),   // Azure WireServer (host agent)
	netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud Classic / Cloud@Customer metadata
}

// addrClass is what the policy knows about an address.
type addrClass int

const (
	classPublic addrClass = iota
	// inside: needs an entry naming it
	classLoopback
	classPrivate
	classUniqueLocal
	classShared
	classUnspecified
	// always refused
	classLinkLocal
	classMetadata
	classNotUnicast
)

var classNames = [...]string{
	classPublic:      "a public address",
	classLoopback:    "a loopback address",
	classPrivate:     "a private address",
	classUniqueLocal: "a unique-local address",
	classShared:      "a shared (CGNAT) address",
	classUnspecified: "an unspecified address",
	classLinkLocal:   "a link-local address",
	classMetadata:    "a cloud metadata address",
	classNotUnicast:  "not a unicast address",
}

func (c addrClass) inside() bool { return c >= classLoopback && c <= classUnspecified }
func (c addrClass) always() bool { return c >= classLinkLocal }

var (
	sharedPrefix   = netip.MustParsePrefix("100.64.0.0/10")
	reservedPrefix = netip.MustParsePrefix("240.0.0.0/4") // and 255.255.255.255
	siteLocal      = netip.MustParsePrefix("fec0::/10")   // deprecated, still private
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	v4Compatible   = netip.MustParsePrefix("::/96")
	v4Translated   = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// classify sorts an address. IPv6 forms that carry an IPv4 address (mapped, compatible,
// translated, NAT64, 6to4) are the class of that address: ::ffff:127.0.0.1 is loopback.
func classify(a netip.Addr) addrClass {
	a = a.WithZone("").Unmap()
	if slices.Contains(metadataAddrs, a) {
		return classMetadata
	}
	if v4, ok := embeddedIPv4(a); ok {
		return classify(v4)
	}
	switch {
	case a.IsUnspecified() || (a.Is4() && a.As4()[0] == 0): // 0.0.0.0/8 reaches this host
		return classUnspecified
	case a.IsLoopback():
		return classLoopback
	case a.IsLinkLocalUnicast():
		return classLinkLocal
	case a.IsMulticast() || reservedPrefix.Contains(a):
		return classNotUnicast
	case sharedPrefix.Contains(a):
		return classShared
	case a.Is4() && a.IsPrivate():
		return classPrivate
	case a.Is6() && a.IsPrivate():
		return classUniqueLocal
	case siteLocal.Contains(a) || nat64Local.Contains(a):
		return classPrivate
	}
	return classPublic
}

// embeddedIPv4 is the IPv4 address inside an IPv6 form that carries one.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.IsUnspecified() || a.IsLoopback() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case v4Compatible.Contains(a), v4Translated.Contains(a), nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// egressEntry is one parsed allow entry.
type egressEntry struct {
	name   string       // lower-case glob over host names; "" for an address entry
	prefix netip.Prefix // an address entry: one address or a CIDR
	port   string       // "" for any port, else digits (canonical) or "*"
}

func parseEgressEntry(pat string) (egressEntry, error) {
	bad := fmt.Errorf("egress pattern %q: use a host name (with * wildcards), an address or a CIDR, each with an optional :port (crm.example.com:443, 10.0.0.5, 10.0.0.0/8:443, [fd00::/8]:8443)", pat)
	host, port, ok := splitPattern(pat)
	if !ok || host == "" || strings.ContainsAny(pat, " \t") {
		return egressEntry{}, bad
	}
	e := egressEntry{port: port}
	if port != "" && port != "*" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return egressEntry{}, bad
		}
		e.port = strconv.FormatUint(n, 10)
	}
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil || p.Addr().Is4In6() {
			return egressEntry{}, bad
		}
		e.prefix = p.Masked()
		return e, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return egressEntry{}, bad
		}
		a = a.Unmap()
		e.prefix = netip.PrefixFrom(a, a.BitLen())
		return e, nil
	}
	if strings.ContainsAny(host, "[]:/@?#") {
		return egressEntry{}, bad
	}
	e.name = strings.ToLower(host)
	return e, nil
}

// splitPattern splits "host", "host:port", "[v6]", "[v6]:port", a bare IPv6 address or CIDR
// (no port: its colons are the address's) and "cidr:port".
func splitPattern(pat string) (host, port string, ok bool) {
	if rest, found := strings.CutPrefix(pat, "["); found {
		host, after, closed := strings.Cut(rest, "]")
		if !closed {
			return "", "", false
		}
		if after == "" {
			return host, "", true
		}
		port, hasPort := strings.CutPrefix(after, ":")
		return host, port, hasPort && port != ""
	}
	if strings.Count(pat, ":") == 1 {
		host, port, _ = strings.Cut(pat, ":")
		return host, port, port != ""
	}
	return pat, "", true
}

// target is where a connection goes.
type target struct {
	host  string     // the URL's host, lower-case, without brackets
	port  string     // canonical digits
	addr  netip.Addr // the address, unmapped; invalid for a name before DNS
	class addrClass
}

func (e egressEntry) matches(t target) bool {
	if e.port != "" && e.port != "*" && e.port != t.port {
		return false
	}
	if e.name == "" {
		return t.addr.IsValid() && e.prefix.Contains(t.addr)
	}
	if e.name == "*" && t.class.inside() {
		return false // "anywhere" means anywhere public: inside needs naming
	}
	return glob(e.name, t.host)
}

// mayMatchName says whether the entry could allow a connection to host once it is
// resolved: a name that matches, or any address entry for the port.
func (e egressEntry) mayMatchName(host, port string) bool {
	if e.port != "" && e.port != "*" && e.port != port {
		return false
	}
	return e.name == "" || glob(e.name, host)
}

// egressList is an EgressPolicy parsed once.
type egressList struct {
	where   string // "egress.allow" or "egress.allow of partner acme"
	entries []egressEntry
}

func (l egressList) allows(t target) bool {
	if len(l.entries) == 0 {
		return t.class == classPublic
	}
	for _, e := range l.entries {
		if e.matches(t) {
			return true
		}
	}
	return false
}

// egressGuard decides connections for one set of lists.
type egressGuard struct {
	lists []egressList
	own   func() []Listener // nil: none known
}

func newEgressGuard(policies []EgressPolicy, own func() []Listener) *egressGuard {
	g := &egressGuard{own: own, lists: make([]egressList, 0, len(policies))}
	for _, p := range policies {
		l := egressList{where: listName(p)}
		for _, pat := range p.Allow {
			if e, err := parseEgressEntry(pat); err == nil { // the config loader reported bad ones
				l.entries = append(l.entries, e)
			}
		}
		g.lists = append(g.lists, l)
	}
	return g
}

// checkURL decides what can be decided before DNS: everything for a literal address; for a
// name, only a list that no resolution could satisfy.
func (g *egressGuard) checkURL(u *url.URL) error {
	host := strings.ToLower(u.Hostname())
	port := urlPort(u)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return refused("%q is not a port", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return g.check(host, netip.AddrPortFrom(a, uint16(n)))
	}
	port = strconv.FormatUint(n, 10)
	for i, l := range g.lists {
		if len(l.entries) > 0 && !slices.ContainsFunc(l.entries, func(e egressEntry) bool { return e.mayMatchName(host, port) }) {
			return refusedBy(g.lists, i, "%s is not in ", net.JoinHostPort(host, port))
		}
	}
	return nil
}

// urlPort is u's port, or its scheme's.
func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// check decides a connection to ap, reached through the URL host `host` (a name, or ap's
// address written out).
func (g *egressGuard) check(host string, ap netip.AddrPort) error {
	a := ap.Addr().WithZone("")
	shown := a.String()
	if _, err := netip.ParseAddr(host); err != nil { // a name: say where it led
		shown = host + " (" + shown + ")"
	}
	a = a.Unmap()
	t := target{host: host, port: strconv.Itoa(int(ap.Port())), addr: a, class: classify(a)}
	if t.class.always() {
		return refused("%s is %s: always refused", shown, classNames[t.class])
	}
	if g.own != nil {
		if l, ok := ownListener(a, ap.Port(), g.own()); ok {
			return refused("%s is pushbackd's own %s listener: always refused", netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port()), l.Name)
		}
	}
	for i, l := range g.lists {
		if l.allows(t) {
			continue
		}
		if public := t; t.class.inside() {
			// Say why when being inside is what refused it: the list is empty, or an entry
			// such as * would match a public address here.
			public.class = classPublic
			if l.allows(public) {
				return refusedBy(g.lists, i, "%s is %s: add it to ", shown, classNames[t.class])
			}
		}
		return refusedBy(g.lists, i, "%s is not in ", net.JoinHostPort(host, t.port))
	}
	return nil
}

// ownListener finds the listener a connection to a:port would reach. A listener on 0.0.0.0
// or :: is reached through any local address; dialling 0.0.0.0 or :: reaches this host.
func ownListener(a netip.Addr, port uint16, own []Listener) (Listener, bool) {
	for _, l := range own {
		if l.Addr.Port() != port {
			continue
		}
		la := l.Addr.Addr().WithZone("").Unmap()
		if a == la || a.IsUnspecified() || (la.IsUnspecified() && isLocalAddr(a)) {
			return l, true
		}
	}
	return Listener{}, false
}

// isLocalAddr says whether a belongs to this host.
func isLocalAddr(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: assume the worst
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// dialContext dials through d, checking the address actually connected to (after DNS,
// for every address tried) with Control.
func (g *egressGuard) dialContext(d net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		host = strings.ToLower(host)
		d := d
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return refused("cannot check address %q: %v", address, err)
			}
			return g.check(host, ap)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// transports pools connections per set of egress lists. One shared pool would let a run
// reuse a connection that another run's lists allowed (a name resolving to a private
// address, say) without its own lists ever being asked.
type transports struct {
	idlePerHost int
	own         func() []Listener
	mu          sync.Mutex
	byLists     map[string]*guardedTransport
}

type guardedTransport struct {
	guard *egressGuard
	rt    *http.Transport
}

// maxTransports bounds the pools kept: distinct lists come from config (one per partner
// with egress of its own), and reloads may retire some.
const maxTransports = 1024

func (ts *transports) get(lists []EgressPolicy) *guardedTransport {
	// Keyed by the entries alone: partners whose lists say the same share a pool (refusals
	// are renamed for the run by egressError.naming).
	var key strings.Builder
	for _, p := range lists {
		for _, a := range p.Allow {
			key.WriteByte(0)
			key.WriteString(a)
		}
		key.WriteByte(1)
	}
	k := key.String()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.byLists[k]; ok {
		return t
	}
	if len(ts.byLists) >= maxTransports {
		for _, t := range ts.byLists {
			t.rt.CloseIdleConnections()
		}
		clear(ts.byLists)
	}
	if ts.byLists == nil {
		ts.byLists = map[string]*guardedTransport{}
	}
	anonymous := make([]EgressPolicy, len(lists))
	for i, p := range lists {
		anonymous[i] = EgressPolicy{Allow: p.Allow}
	}
	g := newEgressGuard(anonymous, ts.own)
	t := &guardedTransport{guard: g, rt: newTransport(g, ts.idlePerHost)}
	ts.byLists[k] = t
	return t
}

// newTransport is the transport http steps use: the guard checked at dial time, and no
// proxy from the process environment (sagas must not depend on it). idlePerHost is how
// many connections to one host stay open between steps: as many as runs may call it at
// once, or every call beyond that pays a new TCP (and TLS) handshake and leaves a
// connection in TIME_WAIT.
func newTransport(g *egressGuard, idlePerHost int) *http.Transport {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.dialContext(d),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, idlePerHost),
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// glob matches s against a pattern where * is any run of characters. It backtracks only to
// the last star, so it takes O(len(pattern)·len(s)) whatever the stars: s may be a host a
// sender chose.
func glob(pattern, s string) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0 // the last star seen, and where in s its run would end next
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			if c := pattern[px]; c == '*' {
				starPx, starSx = px, sx+1
				px++
				continue
			} else if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if starPx >= 0 && starSx <= len(s) { // let the last star take one more character
			px, sx = starPx+1, starSx
			starSx++
			continue
		}
		return false
	}
	return true
}
