package saga

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrEgressRefused is wrapped by every refusal of the egress policy.
var ErrEgressRefused = errors.New("egress refused")

// EgressPolicy limits where http steps may go, so a sender cannot steer the gateway at
// internal addresses through templated URLs.
//
// Allow holds host or host:port patterns where `*` matches any run of characters
// ("*.crm.example.com", "127.0.0.1:*", "[::1]:8080"); a pattern without a port allows every
// port. An empty Allow allows every host. Link-local addresses (169.254.0.0/16, fe80::/10:
// cloud metadata services) are refused whatever Allow says, and they are checked on the
// address actually dialled, after DNS, so a name that resolves to one is refused too.
type EgressPolicy struct {
	Allow []string
}

// Validate checks the patterns.
func (p EgressPolicy) Validate() error {
	for _, pat := range p.Allow {
		host, port := splitPattern(pat)
		if host == "" || strings.ContainsAny(pat, "/ ") || (port != "*" && port != "" && !isDigits(port)) {
			return fmt.Errorf("egress pattern %q: use host or host:port, with * wildcards", pat)
		}
	}
	return nil
}

// CheckURL applies the policy to a URL before any connection is made.
func (p EgressPolicy) CheckURL(u *url.URL) error {
	host := strings.ToLower(u.Hostname())
	if a, err := netip.ParseAddr(host); err == nil && isLinkLocal(a) {
		return fmt.Errorf("%w: %s is a link-local address", ErrEgressRefused, host)
	}
	if len(p.Allow) == 0 {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	for _, pat := range p.Allow {
		ph, pp := splitPattern(strings.ToLower(pat))
		if glob(ph, host) && (pp == "" || glob(pp, port)) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not in egress.allow", ErrEgressRefused, net.JoinHostPort(host, port))
}

// dialControl runs after DNS, on the address about to be connected.
func (p EgressPolicy) dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check address %q: %w", ErrEgressRefused, address, err)
	}
	if isLinkLocal(ap.Addr()) {
		return fmt.Errorf("%w: %s is a link-local address", ErrEgressRefused, ap.Addr())
	}
	return nil
}

func isLinkLocal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()
}

// NewTransport returns the transport http steps use: the policy checked at dial time, and no
// proxy from the process environment (sagas must not depend on it). idlePerHost is how many
// connections to one host stay open between steps: as many as runs may call it at once,
// or every call beyond that pays a new TCP (and TLS) handshake and leaves a connection in
// TIME_WAIT.
func (p EgressPolicy) NewTransport(idlePerHost int) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: p.dialControl}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, idlePerHost),
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// splitPattern splits "host", "host:port", "[v6]" or "[v6]:port"; a bare IPv6 address has
// no port.
func splitPattern(pat string) (host, port string) {
	if strings.HasPrefix(pat, "[") {
		end := strings.Index(pat, "]")
		if end < 0 {
			return "", ""
		}
		host = pat[1:end]
		if rest := pat[end+1:]; strings.HasPrefix(rest, ":") {
			port = rest[1:]
		}
		return host, port
	}
	if strings.Count(pat, ":") == 1 {
		host, port, _ = strings.Cut(pat, ":")
		return host, port
	}
	return pat, ""
}

// glob matches s against a pattern where * is any run of characters.
func glob(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	rest := pattern[star+1:]
	// Let the star take 0, 1, ... characters and match the rest of the pattern after them.
	for i := star; i <= len(s); i++ {
		if glob(rest, s[i:]) {
			return true
		}
	}
	return false
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
