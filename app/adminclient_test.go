package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// startGuarded starts an app whose pushbackd.yaml is server (data_dir is added) with one
// pushback endpoint, acme/e, that answers 200 to "Bearer t".
func startGuarded(t *testing.T, server string) (*App, *adminClient) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     server + "data_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	a := runApp(t, dir, zaptest.NewLogger(t), true)
	return a, newAdmin(t, a)
}

// clientFrom is an HTTP client whose connections leave from source address ip. Every
// 127/8 address is this host's loopback, so tests can be several clients at once.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// send makes one request and returns its status; header values of "" are left out.
func send(t *testing.T, c *http.Client, method, url string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func bearer(tok string) string { return "Bearer " + tok }

func TestAdminFailureBudgetChargesTheRealClient(t *testing.T) {
	const budget = "limits: {auth_failures: {per_client: 20, per_endpoint: 0, window: 1h}}\n"
	t.Run("sixty wrong tokens with a different X-Forwarded-For each are refused 429 past the budget", func(t *testing.T) {
		a, c := startGuarded(t, budget)
		local := clientFrom(t, "127.0.0.1")
		var codes []int
		for i := range 60 {
			codes = append(codes, send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
				map[string]string{"Authorization": bearer(fmt.Sprintf("guess-%02d", i)), "X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i)}))
		}
		want := fmt.Sprint(append(repeat(401, 20), repeat(429, 40)...))
		if fmt.Sprint(codes) != want {
			t.Errorf("codes %v\nwant  %v", codes, want)
		}
		if code := send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints", map[string]string{"Authorization": bearer(c.token)}); code != 429 {
			t.Errorf("the right token from the blocked address: %d, want 429", code)
		}
	})
	t.Run("the right token with a spoofed X-Forwarded-For waits while the real address is blocked", func(t *testing.T) {
		a, c := startGuarded(t, budget)
		local := clientFrom(t, "127.0.0.1")
		for i := range 20 {
			send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints", map[string]string{"Authorization": bearer(fmt.Sprint("guess-", i))})
		}
		code := send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
			map[string]string{"Authorization": bearer(c.token), "X-Forwarded-For": "203.0.113.9"})
		if code != 429 {
			t.Errorf("right token with a spoofed header: %d, want 429", code)
		}
	})
	t.Run("admin failures with a chosen X-Forwarded-For do not lock that address out of its pushbacks", func(t *testing.T) {
		a, _ := startGuarded(t, budget)
		attacker, victim := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
		for i := range 21 {
			send(t, attacker, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
				map[string]string{"Authorization": bearer(fmt.Sprint("guess-", i)), "X-Forwarded-For": "127.0.0.2"})
		}
		if code := send(t, victim, "POST", "http://"+a.Addr()+"/pushback/acme/e", map[string]string{"Authorization": bearer("t")}); code != 200 {
			t.Errorf("the named address's pushback: %d, want 200", code)
		}
		// The guesses were charged to the attacker, whose pushbacks now wait: the budget is
		// shared between the listeners, so guessing on both buys nothing.
		if code := send(t, attacker, "POST", "http://"+a.Addr()+"/pushback/acme/e", map[string]string{"Authorization": bearer("t")}); code != 429 {
			t.Errorf("the attacker's own pushback: %d, want 429", code)
		}
	})
	t.Run("behind a trusted proxy both listeners charge the client the proxy names", func(t *testing.T) {
		a, c := startGuarded(t, budget+"proxy: {header: X-Forwarded-For, trusted: [127.0.0.2]}\n")
		proxy, direct := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.1")
		for i := range 20 {
			send(t, proxy, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
				map[string]string{"Authorization": bearer(fmt.Sprint("guess-", i)), "X-Forwarded-For": "192.0.2.7"})
		}
		checks := []struct {
			name   string
			client *http.Client
			url    string
			header map[string]string
			want   int
		}{
			{"the named client's admin request", proxy, "http://" + a.AdminAddr() + "/admin/v1/endpoints", map[string]string{"Authorization": bearer(c.token), "X-Forwarded-For": "192.0.2.7"}, 429},
			{"the named client's pushback", proxy, "http://" + a.Addr() + "/pushback/acme/e", map[string]string{"Authorization": bearer("t"), "X-Forwarded-For": "192.0.2.7"}, 429},
			{"another client through the same proxy", proxy, "http://" + a.Addr() + "/pushback/acme/e", map[string]string{"Authorization": bearer("t"), "X-Forwarded-For": "192.0.2.8"}, 200},
			{"another client's admin request through the same proxy", proxy, "http://" + a.AdminAddr() + "/admin/v1/endpoints", map[string]string{"Authorization": bearer(c.token), "X-Forwarded-For": "192.0.2.8"}, 200},
			{"an untrusted peer claiming the blocked address", direct, "http://" + a.AdminAddr() + "/admin/v1/endpoints", map[string]string{"Authorization": bearer(c.token), "X-Forwarded-For": "192.0.2.7"}, 200},
		}
		for _, ch := range checks {
			method := "GET"
			if strings.Contains(ch.url, "/pushback/") {
				method = "POST"
			}
			if code := send(t, ch.client, method, ch.url, ch.header); code != ch.want {
				t.Errorf("%s: %d, want %d", ch.name, code, ch.want)
			}
		}
	})
	t.Run("IPv6 clients inside one /64 share a budget", func(t *testing.T) {
		a, c := startGuarded(t, budget+"proxy: {header: X-Forwarded-For, trusted: [127.0.0.1]}\n")
		local := clientFrom(t, "127.0.0.1")
		for i := range 20 {
			send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
				map[string]string{"Authorization": bearer(fmt.Sprint("guess-", i)), "X-Forwarded-For": fmt.Sprintf("2001:db8:0:1:%x:%x::1", i, 7*i)})
		}
		for _, tc := range []struct {
			client string
			want   int
		}{{"2001:db8:0:1:ffff:ffff:ffff:ffff", 429}, {"2001:db8:0:2::1", 200}} {
			if code := send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints",
				map[string]string{"Authorization": bearer(c.token), "X-Forwarded-For": tc.client}); code != tc.want {
				t.Errorf("right token from %s: %d, want %d", tc.client, code, tc.want)
			}
			if code := send(t, local, "POST", "http://"+a.Addr()+"/pushback/acme/e",
				map[string]string{"Authorization": bearer("t"), "X-Forwarded-For": tc.client}); code != tc.want {
				t.Errorf("pushback from %s: %d, want %d", tc.client, code, tc.want)
			}
		}
	})
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestAdminRequestsWithoutATokenDoNotSpendTheBudget(t *testing.T) {
	a, c := startGuarded(t, "limits: {auth_failures: {per_client: 2, window: 1h}}\n")
	local := clientFrom(t, "127.0.0.1")
	url := "http://" + a.AdminAddr() + "/admin/v1/endpoints"
	noToken := []struct {
		name   string
		method string
		header map[string]string
	}{
		{"a GET without Authorization", "GET", nil},
		{"a browser's CORS preflight", "OPTIONS", map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}},
		{"a DELETE without Authorization", "DELETE", nil},
	}
	for _, tc := range noToken {
		t.Run(tc.name+" is answered 401 five times over", func(t *testing.T) {
			for range 5 {
				if code := send(t, local, tc.method, url, tc.header); code != 401 {
					t.Fatalf("%s: %d, want 401", tc.method, code)
				}
			}
		})
	}
	t.Run("the right token still passes afterwards", func(t *testing.T) {
		if code := send(t, local, "GET", url, map[string]string{"Authorization": bearer(c.token)}); code != 200 {
			t.Fatalf("right token after requests without one: %d, want 200", code)
		}
	})
	t.Run("wrong tokens still spend it", func(t *testing.T) {
		var codes []int
		for _, tok := range []string{"guess-1", "guess-2", c.token} {
			codes = append(codes, send(t, local, "GET", url, map[string]string{"Authorization": bearer(tok)}))
		}
		if fmt.Sprint(codes) != "[401 401 429]" {
			t.Errorf("codes %v, want [401 401 429]", codes)
		}
	})
}

func TestAdminListenerAnswersOnlyToItsOwnHostNames(t *testing.T) {
	a, c := startGuarded(t, "admin: {hosts: [admin.internal.example]}\nlimits: {auth_failures: {per_client: 5, window: 1h}}\n")
	_, port, _ := net.SplitHostPort(a.AdminAddr())
	local := clientFrom(t, "127.0.0.1")
	hosts := []struct {
		name string
		host string
		want int
	}{
		{"a foreign name (DNS rebinding) is misdirected", "evil.example", 421},
		{"a foreign name with the port is misdirected", "evil.example:" + port, 421},
		{"a name that only ends like a listed one is misdirected", "x.admin.internal.example", 421},
		{"a listed name with a suffix is misdirected", "admin.internal.example.evil.example", 421},
		{"a subdomain of localhost is misdirected", "rebind.localhost", 421},
		{"the IPv4 literal with the port is accepted", "127.0.0.1:" + port, 200},
		{"an IPv6 literal is accepted", "[::1]:" + port, 200},
		{"localhost is accepted", "localhost", 200},
		{"localhost with the port is accepted", "localhost:" + port, 200},
		{"a listed name is accepted", "admin.internal.example", 200},
		{"a listed name in other case with a port is accepted", "Admin.Internal.Example:" + port, 200},
		{"a listed name with the root dot is accepted", "admin.internal.example.", 200},
	}
	for _, h := range hosts {
		t.Run(h.name, func(t *testing.T) {
			if code := send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints", map[string]string{"Host": h.host, "Authorization": bearer(c.token)}); code != h.want {
				t.Errorf("Host %q: %d, want %d", h.host, code, h.want)
			}
		})
	}
	routes := []struct{ method, path string }{
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/admin/v1/endpoints"},
		{"OPTIONS", "/admin/v1/endpoints"}, {"POST", "/admin/v1/reload"}, {"GET", "/nothing-here"}, {"GET", "/"},
	}
	for _, r := range routes {
		t.Run("a foreign name gets 421 on "+r.method+" "+r.path, func(t *testing.T) {
			if code := send(t, local, r.method, "http://"+a.AdminAddr()+r.path, map[string]string{"Host": "evil.example", "Authorization": bearer(c.token)}); code != 421 {
				t.Errorf("%d, want 421", code)
			}
		})
	}
	t.Run("a request without any Host is misdirected", func(t *testing.T) {
		conn, err := net.Dial("tcp", a.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.0\r\n\r\n")
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(status, " 421 ") {
			t.Errorf("status line %q (%v), want 421", status, err)
		}
	})
	t.Run("misdirected guesses do not spend the budget", func(t *testing.T) {
		for i := range 10 {
			send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints", map[string]string{"Host": "evil.example", "Authorization": bearer(fmt.Sprint("guess-", i))})
		}
		if code := send(t, local, "GET", "http://"+a.AdminAddr()+"/admin/v1/endpoints", map[string]string{"Authorization": bearer(c.token)}); code != 200 {
			t.Errorf("right token after misdirected guesses: %d, want 200", code)
		}
	})
}

func TestAShortAdminTokenRefusesToStart(t *testing.T) {
	t.Run("the generated token is long enough", func(t *testing.T) {
		_, c := startGuarded(t, "")
		if len(c.token) < 32 {
			t.Errorf("generated token has %d characters, want at least 32", len(c.token))
		}
	})
	t.Run("a short token written into data_dir is refused with a way out", func(t *testing.T) {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		writeFiles(t, dir, map[string]string{
			"pushbackd.yaml":     "data_dir: " + data + "\n",
			"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, security: {method: bearer, tokens: [{value: t}]}}]\n",
			"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
			"data/admin.token":   "tiny-Q7x\n",
		})
		a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
		if err == nil {
			a.Close()
			t.Fatal("started with an 8-character admin token")
		}
		for _, want := range []string{AdminTokenPath(data), "at least 32", "delete it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "tiny-Q7x") {
			t.Errorf("error %q shows the token", err)
		}
		if _, err := os.Stat(AdminTokenPath(data)); err != nil {
			t.Errorf("the token file was touched: %v", err)
		}
	})
}
