package security

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// ClientAddr is the address a request came from, the one rule both listeners use: the TCP
// peer, unless the peer is one of the trusted proxies and header names a client. Then the
// header is walked from the right and the first address that is not itself a trusted
// proxy is the client; addresses further left were written by the client and prove
// nothing. An entry that is not an address stops the walk at the last trusted hop.
func ClientAddr(r *http.Request, header string, trusted []netip.Prefix) netip.Addr {
	peer := addrOf(r.RemoteAddr)
	if header == "" || !inAny(peer, trusted) {
		return peer
	}
	values := r.Header.Values(header)
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		items := strings.Split(values[i], ",")
		for j := len(items) - 1; j >= 0; j-- {
			a := addrOf(strings.TrimSpace(items[j]))
			if !a.IsValid() {
				return client
			}
			client = a
			if !inAny(client, trusted) {
				return client
			}
		}
	}
	return client
}

// addrOf parses "addr", "addr:port" or "[addr]:port"; the zero Addr when it is none of
// these. The result is unmapped, so an IPv4 client has one identity whichever socket family
// it arrived on, and has no zone, which would make it match no prefix.
func addrOf(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, serr := net.SplitHostPort(s)
		if serr != nil {
			return netip.Addr{}
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}
		}
	}
	return a.Unmap().WithZone("")
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientLimiter is a FailureLimiter whose keys are client addresses. IPv6 clients are
// counted per /64: a single host is routinely handed a whole /64 and can pick any address
// in it, so a budget per IPv6 address would be 2^64 budgets. IPv4 clients are counted per
// address.
type ClientLimiter struct{ l *FailureLimiter }

// NewClientLimiter is NewFailureLimiter for client addresses.
func NewClientLimiter(burst int, window time.Duration, maxKeys int, now func() time.Time) *ClientLimiter {
	return &ClientLimiter{l: NewFailureLimiter(burst, window, maxKeys, now)}
}

// Blocked says whether a's budget is spent, and how long until it has a try again.
func (c *ClientLimiter) Blocked(a netip.Addr) (bool, time.Duration) {
	if c == nil {
		return false, 0
	}
	return c.l.Blocked(clientKey(a))
}

// Fail records one failure for a and reports whether a's budget is now spent.
func (c *ClientLimiter) Fail(a netip.Addr) bool {
	if c == nil {
		return false
	}
	return c.l.Fail(clientKey(a))
}

func clientKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
