package security

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestClientAddrBelievesTheHeaderOnlyFromTrustedProxies(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name    string
		peer    string
		header  string // "" configures no proxy header at all
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"without a proxy header the peer is the client", "192.0.2.1:5000", "", []string{"203.0.113.9"}, proxies, "192.0.2.1"},
		{"an untrusted peer's header is ignored", "192.0.2.1:5000", "X-Forwarded-For", []string{"203.0.113.9"}, proxies, "192.0.2.1"},
		{"a trusted peer names the client", "10.0.0.5:5000", "X-Forwarded-For", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"the right-most untrusted entry wins over spoofed ones to its left", "10.0.0.5:5000", "X-Forwarded-For", []string{"198.51.100.1, 203.0.113.9, 10.0.0.7"}, proxies, "203.0.113.9"},
		{"repeated header lines are read as one list", "10.0.0.5:5000", "X-Forwarded-For", []string{"198.51.100.1", "203.0.113.9"}, proxies, "203.0.113.9"},
		{"an entry with a port is read without it", "10.0.0.5:5000", "X-Forwarded-For", []string{"203.0.113.9:4711"}, proxies, "203.0.113.9"},
		{"a bracketed IPv6 entry with a port is read without it", "10.0.0.5:5000", "X-Forwarded-For", []string{"[2001:db8::7]:4711"}, proxies, "2001:db8::7"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.5:5000", "X-Forwarded-For", []string{"203.0.113.9, not-an-ip"}, proxies, "10.0.0.5"},
		{"an empty header leaves the proxy as the client", "10.0.0.5:5000", "X-Forwarded-For", nil, proxies, "10.0.0.5"},
		{"an IPv4-mapped peer is unmapped before the trust check", "[::ffff:10.0.0.5]:5000", "X-Forwarded-For", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"an IPv4-mapped entry is unmapped", "10.0.0.5:5000", "X-Forwarded-For", []string{"::ffff:203.0.113.9"}, proxies, "203.0.113.9"},
		{"an IPv6 proxy names an IPv6 client", "[fd00::1]:5000", "X-Forwarded-For", []string{"2001:db8::9"}, proxies, "2001:db8::9"},
		{"a header from a proxy with no trusted list is ignored", "10.0.0.5:5000", "X-Forwarded-For", []string{"203.0.113.9"}, nil, "10.0.0.5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientAddr(r, tc.header, tc.trusted); got.String() != tc.want {
				t.Errorf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClientLimiterBucketsIPv6ByPrefix(t *testing.T) {
	cases := []struct {
		name     string
		failing  func(i int) string // the address of the i-th failure
		then     string             // an address asked afterwards
		blocked  bool
		budgeted int
	}{
		{"failures from many addresses inside one IPv6 /64 share a budget",
			func(i int) string { return fmt.Sprintf("2001:db8:1:2:%x::%x", i, i+1) }, "2001:db8:1:2:ffff:ffff:ffff:ffff", true, 5},
		{"another /64 of the same /48 keeps its own budget",
			func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) }, "2001:db8:1:3::1", false, 5},
		{"IPv4 clients are counted per address",
			func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }, "192.0.2.200", false, 5},
		{"one IPv4 address spends its own budget",
			func(int) string { return "192.0.2.1" }, "192.0.2.1", true, 5},
		{"an IPv4-mapped IPv6 address is its IPv4 address",
			func(int) string { return "::ffff:192.0.2.1" }, "192.0.2.1", true, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := NewClientLimiter(tc.budgeted, time.Hour, 1000, nil)
			for i := range tc.budgeted {
				l.Fail(netip.MustParseAddr(tc.failing(i)))
			}
			if got, _ := l.Blocked(netip.MustParseAddr(tc.then)); got != tc.blocked {
				t.Errorf("Blocked(%s) = %v, want %v", tc.then, got, tc.blocked)
			}
		})
	}
	t.Run("a nil limiter limits nothing", func(t *testing.T) {
		var l *ClientLimiter
		if l.Fail(netip.MustParseAddr("192.0.2.1")) {
			t.Error("nil limiter reported a spent budget")
		}
		if blocked, _ := l.Blocked(netip.MustParseAddr("192.0.2.1")); blocked {
			t.Error("nil limiter blocked")
		}
	})
}

// FuzzClientAddr feeds arbitrary peers and header values. ClientAddr must not panic, must
// return the peer whenever the peer is not a trusted proxy, and never an IPv4-mapped form
// (which would give one IPv4 client a second budget).
func FuzzClientAddr(f *testing.F) {
	f.Add("10.0.0.5:1", "203.0.113.9", "10.0.0.7")
	f.Add("192.0.2.1:1", "203.0.113.9", "")
	f.Add("[::ffff:10.0.0.5]:1", "::ffff:1.2.3.4, [fe80::1%eth0]:80", ",,, ,")
	f.Add("@", "1.2.3.4:99999", "[::1")
	f.Add("10.0.0.5", "\x00\xff", "10.0.0.1, 10.0.0.2, 10.0.0.3")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Fuzz(func(t *testing.T, peer, xff1, xff2 string) {
		r := &http.Request{RemoteAddr: peer, Header: http.Header{"X-Forwarded-For": {xff1, xff2}}}
		got := ClientAddr(r, "X-Forwarded-For", trusted)
		direct := ClientAddr(r, "", trusted)
		if got.Is4In6() || direct.Is4In6() {
			t.Fatalf("an IPv4-mapped address came out: %s / %s", got, direct)
		}
		if !inAny(direct, trusted) && got != direct {
			t.Fatalf("the header of untrusted peer %q was believed: %s", peer, got)
		}
	})
}
