package saga

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

// recorder is a live server on one address that counts its requests and keeps the headers
// of the last one. Refusal tests point at it: a refusal that is really a failed connection
// would not prove anything.
type recorder struct {
	srv  *httptest.Server
	port string
	hits atomic.Int32
	mu   sync.Mutex
	last http.Header
}

func newRecorder(t *testing.T, addr string, h http.HandlerFunc) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	r := &recorder{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		r.mu.Lock()
		r.last = req.Header.Clone()
		r.mu.Unlock()
		if h != nil {
			h(w, req)
			return
		}
		_, _ = w.Write([]byte("reached"))
	}))
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	_, r.port, _ = net.SplitHostPort(ln.Addr().String())
	return r
}

func (r *recorder) headers() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// callURL runs a one-step saga calling url, tried up to 3 times, with egress lists lists
// (nil: the engine's default, which allows public addresses only).
func callURL(t *testing.T, url string, lists []EgressPolicy, mod ...func(*EngineOptions)) *Result {
	t.Helper()
	s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http: {url: '${ settings.url }'}\n    retry: {attempts: 3}\n")
	e, _, _ := testEngine(t, append([]func(*EngineOptions){func(o *EngineOptions) { o.Egress = EgressPolicy{} }}, mod...)...)
	inv := invocation(s, nil)
	inv.Settings = map[string]any{"url": url}
	inv.Egress = lists
	return e.Run(context.Background(), inv)
}

func allow(entries ...string) []EgressPolicy { return []EgressPolicy{{Allow: entries}} }

func TestDefaultEgressRefusesInsideAddresses(t *testing.T) {
	v4 := newRecorder(t, "127.0.0.1:0", nil)
	v6 := newRecorder(t, "[::1]:0", nil)
	cases := []struct {
		name string
		url  string
		want string
		// lift names the address in an allow entry; the same URL then reaches a live server.
		lift string
	}{
		{"127.0.0.1 is loopback", "http://127.0.0.1:" + v4.port + "/", "127.0.0.1 is a loopback address: add it to egress.allow", "127.0.0.1"},
		{"::1 is loopback", "http://[::1]:" + v6.port + "/", "::1 is a loopback address: add it to egress.allow", "::1"},
		{"10.0.0.0/8 is private", "http://10.1.2.3/", "10.1.2.3 is a private address: add it to egress.allow", ""},
		{"172.16.0.0/12 is private", "http://172.31.255.254/", "172.31.255.254 is a private address", ""},
		{"192.168.0.0/16 is private", "http://192.168.1.1:8443/", "192.168.1.1 is a private address", ""},
		{"fc00::/7 is unique-local", "http://[fd12:3456::1]/", "fd12:3456::1 is a unique-local address", ""},
		{"fc00:: itself is unique-local", "http://[fc00::1]/", "fc00::1 is a unique-local address", ""},
		{"100.64.0.0/10 is shared (CGNAT)", "http://100.64.0.1/", "100.64.0.1 is a shared (CGNAT) address", ""},
		{"0.0.0.0 is unspecified (and reaches this host)", "http://0.0.0.0:" + v4.port + "/", "0.0.0.0 is an unspecified address", "0.0.0.0"},
		{":: is unspecified (and reaches this host)", "http://[::]:" + v6.port + "/", ":: is an unspecified address", "::"},
		{"::ffff:127.0.0.1 is loopback in IPv4-mapped form", "http://[::ffff:127.0.0.1]:" + v4.port + "/", "::ffff:127.0.0.1 is a loopback address", "127.0.0.1"},
		{"::ffff:10.0.0.1 is private in IPv4-mapped form", "http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 is a private address", ""},
		{"::127.0.0.1 is loopback in IPv4-compatible form", "http://[::127.0.0.1]/", "::7f00:1 is a loopback address", ""},
		{"64:ff9b::10.0.0.1 is private through NAT64", "http://[64:ff9b::10.0.0.1]/", "64:ff9b::a00:1 is a private address", ""},
		{"a name resolving to loopback is refused when dialled", "http://localhost:" + v4.port + "/", ") is a loopback address: add it to egress.allow", "localhost"}, // localhost (127.0.0.1), or (::1)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := v4.hits.Load() + v6.hits.Load()
			res := callURL(t, tc.url, nil)
			if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("%s: %s, want an error containing %q", res.Status, res.Error, tc.want)
			}
			if n := res.Steps[0].Attempts; n != 1 {
				t.Errorf("refusal tried %d times: it must not be retried", n)
			}
			if n := v4.hits.Load() + v6.hits.Load(); n != before {
				t.Errorf("a refused request reached a server")
			}
			if tc.lift == "" {
				return
			}
			if res := callURL(t, tc.url, allow(tc.lift)); res.Status != StatusSucceeded {
				t.Errorf("with egress.allow [%s]: %s: %s", tc.lift, res.Status, res.Error)
			}
			if v4.hits.Load()+v6.hits.Load() != before+1 {
				t.Errorf("the allowed request did not reach the server")
			}
		})
	}
	t.Run("a public address passes the default policy", func(t *testing.T) {
		u, _ := url.Parse("https://93.184.215.14/x")
		if err := (EgressPolicy{}).CheckURL(u); err != nil {
			t.Error(err)
		}
	})
}

func TestEgressAllowEntries(t *testing.T) {
	v4 := newRecorder(t, "127.0.0.1:0", nil)
	v6 := newRecorder(t, "[::1]:0", nil)
	at4 := "http://127.0.0.1:" + v4.port + "/"
	at6 := "http://[::1]:" + v6.port + "/"
	byName := "http://localhost:" + v4.port + "/"
	cases := []struct {
		name  string
		allow []string
		url   string
		ok    bool
	}{
		{"a CIDR allows an address inside it", []string{"127.0.0.0/8"}, at4, true},
		{"a CIDR with the port allows that port", []string{"127.0.0.0/8:" + v4.port}, at4, true},
		{"a CIDR with another port refuses", []string{"127.0.0.0/8:1"}, at4, false},
		{"a CIDR that does not hold the address refuses", []string{"10.0.0.0/8"}, at4, false},
		{"a bracketed IPv6 CIDR with the port allows", []string{"[::1/128]:" + v6.port}, at6, true},
		{"a bare IPv6 CIDR allows", []string{"::/64"}, at6, true},
		{"an IPv6 CIDR that does not hold the address refuses", []string{"[fd00::/8]:" + v6.port}, at6, false},
		{"an address with * for the port allows", []string{"127.0.0.1:*"}, at4, true},
		{"a bare * means public addresses only", []string{"*"}, at4, false},
		{"* with the port means public addresses only", []string{"*:" + v4.port}, at4, false},
		{"a name entry allows the name whatever it resolves to", []string{"localhost"}, byName, true},
		{"a name entry does not allow the address written out", []string{"localhost"}, at4, false},
		{"an address entry allows a name that resolves to it", []string{"127.0.0.1"}, byName, true},
		{"a glob over the written address allows it", []string{"127.0.0.*"}, at4, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := callURL(t, tc.url, allow(tc.allow...))
			if (res.Status == StatusSucceeded) != tc.ok {
				t.Fatalf("allow %v, %s: %s %s", tc.allow, tc.url, res.Status, res.Error)
			}
			if !tc.ok && !strings.Contains(res.Error, "egress refused") {
				t.Errorf("refused, but not by the egress policy: %s", res.Error)
			}
		})
	}
}

func TestSomeAddressesAreRefusedWhateverTheAllowListSays(t *testing.T) {
	everything := allow("0.0.0.0/0", "::/0", "*", "169.254.169.254", "[fd00:ec2::254]", "100.100.100.200", "168.63.129.16", "fe80::/10")
	cases := []struct{ url, want string }{
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address: always refused"},
		{"http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address: always refused"},
		{"http://100.100.100.200/latest/meta-data/", "100.100.100.200 is a cloud metadata address: always refused"},
		{"http://168.63.129.16/machine", "168.63.129.16 is a cloud metadata address: always refused"},
		{"http://169.254.170.2/v2/credentials", "169.254.170.2 is a cloud metadata address: always refused"},
		{"http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a cloud metadata address: always refused"},
		{"http://169.254.1.1/", "169.254.1.1 is a link-local address: always refused"},
		{"http://[fe80::1%25eth0]/", "fe80::1 is a link-local address: always refused"},
		{"http://224.0.0.1/", "224.0.0.1 is not a unicast address: always refused"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			res := callURL(t, tc.url, everything)
			if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) || res.Steps[0].Attempts != 1 {
				t.Errorf("%s after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
			}
		})
	}
	t.Run("a name that resolves to a metadata address is refused when dialled", func(t *testing.T) {
		g := newEgressGuard(everything, nil)
		err := g.check("metadata.google.internal", netip.MustParseAddrPort("169.254.169.254:80"))
		if err == nil || err.Error() != "egress refused: metadata.google.internal (169.254.169.254) is a cloud metadata address: always refused" {
			t.Errorf("got %v", err)
		}
	})
}

func TestPushbackdsOwnListenersAreRefusedEvenWhenAllowed(t *testing.T) {
	admin := newRecorder(t, "127.0.0.1:0", nil)
	anywhere := newRecorder(t, "0.0.0.0:0", nil)
	other := newRecorder(t, "127.0.0.1:0", nil)
	own := []Listener{
		{Name: "admin", Addr: netip.MustParseAddrPort("127.0.0.1:" + admin.port)},
		{Name: "pushback", Addr: netip.MustParseAddrPort("0.0.0.0:" + anywhere.port)},
	}
	listeners := func(o *EngineOptions) { o.Listeners = func() []Listener { return own } }
	lists := allow("127.0.0.0/8", "0.0.0.0", "localhost", "::/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
	cases := []struct{ name, url, want string }{
		{"the admin listener's own address", "http://127.0.0.1:" + admin.port + "/metrics", "127.0.0.1:" + admin.port + " is pushbackd's own admin listener: always refused"},
		{"0.0.0.0 on the admin port", "http://0.0.0.0:" + admin.port + "/readyz", "0.0.0.0:" + admin.port + " is pushbackd's own admin listener"},
		// Where localhost is ::1 too, that address is tried first and refuses the
		// connection; either way the listener is not reached.
		{"a name resolving to the admin listener", "http://localhost:" + admin.port + "/metrics", "refused"},
		{"loopback on the port of a listener bound to 0.0.0.0", "http://127.0.0.1:" + anywhere.port + "/", "127.0.0.1:" + anywhere.port + " is pushbackd's own pushback listener"},
	}
	if ip := firstInterfaceAddr(); ip.IsValid() {
		u := "http://" + net.JoinHostPort(ip.String(), anywhere.port) + "/"
		cases = append(cases, struct{ name, url, want string }{"a local interface address on the port of a listener bound to 0.0.0.0", u, "is pushbackd's own pushback listener"})
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			res := callURL(t, tc.url, lists, listeners)
			if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) || res.Steps[0].Attempts != 1 {
				t.Errorf("%s after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
			}
		})
	}
	if n := admin.hits.Load() + anywhere.hits.Load(); n != 0 {
		t.Errorf("own listeners were reached %d times", n)
	}
	t.Run("another server on loopback is reached under the same lists", func(t *testing.T) {
		if res := callURL(t, "http://127.0.0.1:"+other.port+"/", lists, listeners); res.Status != StatusSucceeded {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})
}

// firstInterfaceAddr is a non-loopback IPv4 address of this host, if it has one.
func firstInterfaceAddr() netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// redirectSaga sends a secret in a custom header, a signature computed from one, the
// standard credential headers and one harmless header.
const redirectSaga = `name: h
steps:
  - name: call
    http:
      url: ${ settings.url }
      headers:
        X-Api-Key: "${ secret('apikey') }"
        X-Signature: "${ hmac_sha256(secret('apikey'), 'x') }"
        Authorization: Bearer plain-token
        Cookie: session=abc
        Proxy-Authorization: Basic cHJveHk6cHc=
        X-Trace: trace-1
`

func runRedirect(t *testing.T, spec, url string, lists []EgressPolicy) *Result {
	t.Helper()
	s := mustParse(t, "h", spec)
	e, _, _ := testEngine(t)
	inv := invocation(s, nil)
	inv.Settings = map[string]any{"url": url}
	inv.Secrets = map[string]security.Secret{"apikey": security.NewSecret("s3cr3t-key")}
	inv.Egress = lists
	return e.Run(context.Background(), inv)
}

func TestRedirects(t *testing.T) {
	steal := newRecorder(t, "127.0.0.1:0", nil)
	stealURL := "http://127.0.0.1:" + steal.port
	var origin *recorder
	origin = newRecorder(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, stealURL+"/steal", http.StatusTemporaryRedirect)
		case "/same":
			http.Redirect(w, r, "/landed", http.StatusTemporaryRedirect)
		case "/private":
			http.Redirect(w, r, "http://10.0.0.1/", http.StatusFound)
		case "/hop":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			_, _ = w.Write([]byte("landed"))
		}
	})
	originURL := "http://127.0.0.1:" + origin.port
	credentials := []string{"X-Api-Key", "X-Signature", "Authorization", "Cookie", "Proxy-Authorization"}

	// The reproduction: a partner allowed one port, its server a redirect to
	// another, and the secret header went along.
	for _, tc := range []struct {
		name            string
		server, partner string
		want            string
	}{
		{"the partner's list", "127.0.0.1", "127.0.0.1:" + origin.port, "127.0.0.1:" + steal.port + " is not in egress.allow of partner acme"},
		{"the server's list", "127.0.0.1:" + origin.port, "127.0.0.1", "127.0.0.1:" + steal.port + " is not in egress.allow"},
	} {
		t.Run("a redirect to a port "+tc.name+" does not allow is refused before it is sent", func(t *testing.T) {
			before := origin.hits.Load()
			lists := []EgressPolicy{{Allow: []string{tc.server}}, {Allow: []string{tc.partner}, Source: "partner acme"}}
			res := runRedirect(t, redirectSaga, originURL+"/away", lists)
			if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) || res.Steps[0].Attempts != 1 {
				t.Errorf("%s after %d attempts: %s, want %q", res.Status, res.Steps[0].Attempts, res.Error, tc.want)
			}
			if origin.hits.Load() != before+1 {
				t.Errorf("the first request, which the lists allow, was not sent")
			}
			if steal.hits.Load() != 0 {
				t.Errorf("the redirect target was reached, with headers %v", steal.headers())
			}
		})
	}

	t.Run("a redirect to a private address is refused, * in the list notwithstanding", func(t *testing.T) {
		res := runRedirect(t, redirectSaga, originURL+"/private", allow("127.0.0.1", "*"))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "10.0.0.1 is a private address: add it to egress.allow") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})

	t.Run("credential headers are dropped on a redirect to another host:port", func(t *testing.T) {
		res := runRedirect(t, redirectSaga, originURL+"/away", allow("127.0.0.1"))
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		h := steal.headers()
		for _, name := range credentials {
			if v := h.Get(name); v != "" {
				t.Errorf("%s followed the redirect: %q", name, v)
			}
		}
		if h.Get("X-Trace") != "trace-1" {
			t.Errorf("a header that is not a credential was dropped too: %v", h)
		}
		if h.Get("Referer") != "" {
			t.Errorf("the Referer told the next host our URL: %q", h.Get("Referer"))
		}
	})

	t.Run("credential headers are kept on a redirect within the same host:port", func(t *testing.T) {
		res := runRedirect(t, redirectSaga, originURL+"/same", allow("127.0.0.1"))
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		h := origin.headers()
		if h.Get("X-Api-Key") != "s3cr3t-key" || h.Get("Authorization") != "Bearer plain-token" || h.Get("X-Signature") == "" {
			t.Errorf("the same host lost its credentials: %v", h)
		}
	})

	t.Run("credentials stay dropped when a redirect comes back to the first host", func(t *testing.T) {
		back := newRecorder(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, originURL+"/landed", http.StatusTemporaryRedirect)
		})
		res := runRedirect(t, redirectSaga, originURL+"/hop?to="+url.QueryEscape("http://127.0.0.1:"+back.port+"/"), allow("127.0.0.1"))
		if res.Status != StatusSucceeded || back.hits.Load() != 1 {
			t.Fatalf("%s: %s (the other host reached %d times)", res.Status, res.Error, back.hits.Load())
		}
		if h := origin.headers(); h.Get("X-Api-Key") != "" || h.Get("Authorization") != "" {
			t.Errorf("credentials given to one host reached another after a redirect: %v", h)
		}
	})

	t.Run("follow_redirects false makes the 3xx the step's output", func(t *testing.T) {
		before := steal.hits.Load()
		spec := redirectSaga + "      follow_redirects: false\n      expect: [307]\n"
		res := runRedirect(t, spec, originURL+"/away", allow("127.0.0.1"))
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		out := res.Steps[0].Output.(map[string]any)
		if out["status"] != 307 || out["headers"].(map[string]string)["location"] != stealURL+"/steal" {
			t.Errorf("output %v", out)
		}
		if steal.hits.Load() != before {
			t.Error("the redirect was followed")
		}
	})

	t.Run("follow_redirects false without expect fails on a 3xx and does not retry", func(t *testing.T) {
		spec := redirectSaga + "      follow_redirects: false\n    retry: {attempts: 3}\n"
		res := runRedirect(t, spec, originURL+"/away", allow("127.0.0.1"))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "unexpected status 307") || res.Steps[0].Attempts != 1 {
			t.Errorf("%s after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
		}
	})

	t.Run("a redirect loop stops after 10 hops", func(t *testing.T) {
		before := origin.hits.Load()
		spec := strings.Replace(redirectSaga, "        X-Trace: trace-1\n", "        X-Trace: trace-1\n    retry: {attempts: 3}\n", 1)
		res := runRedirect(t, spec, originURL+"/loop", allow("127.0.0.1"))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "stopped after 10 redirects") || res.Steps[0].Attempts != 1 {
			t.Errorf("%s after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
		}
		if n := origin.hits.Load() - before; n != 10 {
			t.Errorf("%d requests for a redirect loop, want 10", n)
		}
	})
}

func TestEgressPatterns(t *testing.T) {
	good := []string{"crm.example", "*.crm.example:443", "CRM.example:*", "10.0.0.5", "10.0.0.5:8080", "10.0.0.0/8", "10.0.0.0/8:443",
		"::1", "[::1]", "[::1]:8080", "fd00::/8", "[fd00::/8]", "[fd00::/8]:8443", "127.0.0.1:*"}
	for _, pat := range good {
		t.Run(pat+" is accepted", func(t *testing.T) {
			if err := (EgressPolicy{Allow: []string{pat}}).Validate(); err != nil {
				t.Error(err)
			}
		})
	}
	bad := []string{"", "http://crm.example", "crm.example:http", "crm.example/tasks", "10.0.0.0/33", "10.0.0.0/8:0", "10.0.0.0/8:65536",
		"[fd00::/8", "[::1]:", "[::1]x", "fe80::1%eth0", "crm example", "user@crm.example", "::ffff:10.0.0.0/104"}
	for _, pat := range bad {
		t.Run(pat+" is refused with the syntax", func(t *testing.T) {
			err := (EgressPolicy{Allow: []string{pat}}).Validate()
			if err == nil || !strings.Contains(err.Error(), "[fd00::/8]:8443") {
				t.Errorf("%q: %v", pat, err)
			}
		})
	}
}

func TestAddressClasses(t *testing.T) {
	cases := []struct {
		addr string
		want addrClass
	}{
		{"93.184.215.14", classPublic}, {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", classPublic},
		{"127.0.0.1", classLoopback}, {"127.255.0.9", classLoopback}, {"::1", classLoopback},
		{"10.0.0.1", classPrivate}, {"172.16.0.1", classPrivate}, {"172.32.0.1", classPublic}, {"192.168.0.1", classPrivate},
		{"fc00::1", classUniqueLocal}, {"fdff::1", classUniqueLocal}, {"fec0::1", classPrivate},
		{"100.64.0.1", classShared}, {"100.127.255.254", classShared}, {"100.128.0.1", classPublic},
		{"0.0.0.0", classUnspecified}, {"0.1.2.3", classUnspecified}, {"::", classUnspecified},
		{"169.254.0.1", classLinkLocal}, {"fe80::1", classLinkLocal},
		{"169.254.169.254", classMetadata}, {"fd00:ec2::254", classMetadata}, {"100.100.100.200", classMetadata},
		{"168.63.129.16", classMetadata}, {"192.0.0.192", classMetadata}, {"fd00:ec2::23", classMetadata},
		{"224.0.0.1", classNotUnicast}, {"255.255.255.255", classNotUnicast}, {"ff02::1", classNotUnicast}, {"240.0.0.1", classNotUnicast},
		{"::ffff:127.0.0.1", classLoopback}, {"::ffff:10.0.0.1", classPrivate}, {"::ffff:169.254.169.254", classMetadata},
		{"::127.0.0.1", classLoopback}, {"::10.0.0.1", classPrivate}, {"::ffff:0:10.0.0.1", classPrivate},
		{"64:ff9b::127.0.0.1", classLoopback}, {"64:ff9b::169.254.169.254", classMetadata}, {"64:ff9b:1::1", classPrivate},
		{"2002:7f00:1::1", classLoopback}, {"2002:a00:1::1", classPrivate},
	}
	for _, tc := range cases {
		t.Run(tc.addr+" is "+classNames[tc.want], func(t *testing.T) {
			if got := classify(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("%s", classNames[got])
			}
		})
	}
}

func TestEgressRefusalsAreTyped(t *testing.T) {
	err := newEgressGuard([]EgressPolicy{{}}, nil).check("10.1.2.3", netip.MustParseAddrPort("10.1.2.3:80"))
	if !errors.Is(err, ErrEgressRefused) {
		t.Errorf("%v does not wrap ErrEgressRefused", err)
	}
}

func TestAConnectionOneRunsListsAllowedIsNotReusedUnderAnothers(t *testing.T) {
	srv := newRecorder(t, "127.0.0.1:0", nil)
	s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http: {url: '${ settings.url }'}\n")
	e, _, _ := testEngine(t)
	run := func(lists []EgressPolicy) *Result {
		inv := invocation(s, nil)
		inv.Settings = map[string]any{"url": "http://localhost:" + srv.port + "/"}
		inv.Egress = lists
		return e.Run(context.Background(), inv)
	}
	// The first run's partner names localhost, so its connection to 127.0.0.1 is allowed
	// and kept alive for reuse.
	if res := run(allow("localhost")); res.Status != StatusSucceeded {
		t.Fatalf("%s: %s", res.Status, res.Error)
	}
	// Another partner's list does not; the same URL must be refused, not sent down the
	// idle connection the first run left.
	res := run([]EgressPolicy{{Allow: []string{"*"}, Source: "partner other"}})
	if res.Status != StatusFailed || !strings.Contains(res.Error, ") is a loopback address: add it to egress.allow of partner other") {
		t.Errorf("%s: %s", res.Status, res.Error)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("server reached %d times, want once", n)
	}
}

func TestGlob(t *testing.T) {
	long := strings.Repeat("a", 5000)
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"crm.example", "crm.example", true},
		{"crm.example", "crm.example.evil", false},
		{"*.crm.example", "eu.crm.example", true},
		{"*.crm.example", "crm.example", false},
		{"*", "", true},
		{"*", "anything", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"*a*a*a*a*a*a*a*a*b", long, false},
		{"*a*a*a*a*a*a*a*a*a", long, true},
		{"10.0.*", "10.0.0.5", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range cases {
		name := tc.pattern + " against " + tc.s
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			if got := glob(tc.pattern, tc.s); got != tc.want {
				t.Errorf("got %v", got)
			}
		})
	}
}

func TestARefusalNamesTheRunsOwnListWhenPartnersShareAPool(t *testing.T) {
	srv := newRecorder(t, "127.0.0.1:0", nil)
	e, _, _ := testEngine(t)
	s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http: {url: '${ settings.url }'}\n")
	for _, partner := range []string{"a", "b"} {
		for _, u := range []string{"http://localhost:" + srv.port + "/", "http://127.0.0.1:" + srv.port + "/"} {
			t.Run("partner "+partner+" calling "+u, func(t *testing.T) {
				inv := invocation(s, nil)
				inv.Settings = map[string]any{"url": u}
				inv.Egress = []EgressPolicy{{Allow: []string{"127.0.0.1", "::1"}}, {Allow: []string{"*"}, Source: "partner " + partner}}
				res := e.Run(context.Background(), inv)
				if want := "is a loopback address: add it to egress.allow of partner " + partner; res.Status != StatusFailed || !strings.HasSuffix(res.Error, want) {
					t.Errorf("%s: %s, want it to end %q", res.Status, res.Error, want)
				}
			})
		}
	}
	if srv.hits.Load() != 0 {
		t.Error("the server was reached")
	}
}
