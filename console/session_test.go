package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/security"
)

// clock is a settable time for session expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestSessions(t *testing.T) {
	// The API stands in for the admin API: it accepts the token "right" and answers every
	// other call with an empty list.
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"runs":[]}`))
	})
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := New(Options{API: api, Token: security.NewSecret("right"), SessionTTL: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func() *http.Cookie {
		t.Helper()
		resp, err := noRedirect.PostForm(srv.URL+"/login", url.Values{"token": {"right"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(resp.Cookies()) != 1 {
			t.Fatalf("login: %d, no cookie", resp.StatusCode)
		}
		return resp.Cookies()[0]
	}
	get := func(ck *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/runs", nil)
		req.AddCookie(ck)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("a session lasts its TTL and no longer", func(t *testing.T) {
		ck := login()
		clk.add(59 * time.Minute)
		if code := get(ck); code != http.StatusOK {
			t.Errorf("before expiry: %d, want 200", code)
		}
		clk.add(time.Minute)
		if code := get(ck); code != http.StatusSeeOther {
			t.Errorf("at expiry: %d, want 303 to /login", code)
		}
	})
	t.Run("logging in without end keeps at most maxSessions, dropping the oldest", func(t *testing.T) {
		first := login()
		clk.add(time.Second)
		for range maxSessions + 10 {
			login()
			clk.add(time.Millisecond)
		}
		c.mu.Lock()
		n := len(c.sessions)
		c.mu.Unlock()
		if n > maxSessions {
			t.Errorf("%d sessions, want at most %d", n, maxSessions)
		}
		if code := get(first); code != http.StatusSeeOther {
			t.Errorf("the oldest session: %d, want it dropped (303)", code)
		}
	})
	t.Run("a forged cookie longer than any session id is refused without a lookup", func(t *testing.T) {
		if code := get(&http.Cookie{Name: cookieName, Value: strings.Repeat("a", 4096)}); code != http.StatusSeeOther {
			t.Errorf("%d, want 303", code)
		}
	})
}
