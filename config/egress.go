package config

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// egressCheck is what the loader needs to tell which settings point where http steps will
// be refused: the server's egress list and pushbackd's own listeners.
type egressCheck struct {
	server saga.EgressPolicy
	own    []saga.Listener
}

func newEgressCheck(s Server) egressCheck {
	c := egressCheck{server: saga.EgressPolicy{Allow: s.Egress.Allow}}
	for _, l := range []struct{ name, addr string }{{"pushback", s.Listen}, {"admin", s.Admin.Listen}} {
		if ap, err := netip.ParseAddrPort(l.addr); err == nil && ap.Port() != 0 {
			c.own = append(c.own, saga.Listener{Name: l.name, Addr: ap})
		}
	}
	return c
}

// maxSettingsDepth bounds the walk through nested settings.
const maxSettingsDepth = 32

// settingsWarnings finds the http(s) URLs among a partner's settings and its sites' that the
// egress policy refuses whatever DNS says (a literal private or loopback address, say, that
// egress.allow does not name), each positioned at its value. Such a config loaded before the
// policy denied the inside by default, so it is a warning, not an error: the saga that uses
// the setting fails when it runs.
func settingsWarnings(d *yamlconf.Decoder, root ast.Node, p *Partner, c egressCheck) []yamlconf.Error {
	lists := []saga.EgressPolicy{c.server}
	if p.Egress != nil {
		lists = append(lists, saga.EgressPolicy{Allow: p.Egress.Allow, Source: "partner " + p.ID})
	}
	var out []yamlconf.Error
	visit := func(path string, n ast.Node) {
		s, ok := d.Scalar(n)
		if !ok || !hasHTTPScheme(s) {
			return
		}
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			return
		}
		if err := saga.CheckEgress(u, lists, c.own); err != nil {
			pos := yamlconf.PosOf(n)
			out = append(out, yamlconf.Error{File: p.File, Line: pos.Line, Column: pos.Column,
				Message: fmt.Sprintf("%s: http steps calling %s will fail: %v", path, u.Scheme+"://"+u.Host, err)})
		}
	}
	if n := valueNode(d, root, "settings"); n != root {
		walkScalars(d, n, "settings", 0, visit)
	}
	if sites, ok := d.Sequence(valueNode(d, root, "sites")); ok {
		for i, site := range sites {
			if n := valueNode(d, site, "settings"); n != site {
				walkScalars(d, n, "sites["+strconv.Itoa(i)+"].settings", 0, visit)
			}
		}
	}
	return out
}

func hasHTTPScheme(s string) bool {
	s = strings.TrimSpace(s)
	return len(s) > 8 && (strings.EqualFold(s[:7], "http://") || strings.EqualFold(s[:8], "https://"))
}

// walkScalars calls visit for every scalar under n, with its dotted path.
func walkScalars(d *yamlconf.Decoder, n ast.Node, path string, depth int, visit func(string, ast.Node)) {
	if depth > maxSettingsDepth {
		return
	}
	switch t := d.Resolve(n).(type) {
	case *ast.MappingNode:
		for _, mv := range t.Values {
			walkScalars(d, mv.Value, path+"."+d.KeyName(mv), depth+1, visit)
		}
	case *ast.MappingValueNode:
		walkScalars(d, t.Value, path+"."+d.KeyName(t), depth+1, visit)
	case *ast.SequenceNode:
		for i, v := range t.Values {
			walkScalars(d, v, path+"["+strconv.Itoa(i)+"]", depth+1, visit)
		}
	case nil:
	default:
		visit(path, t)
	}
}

// partnerEgress is the transport through which p's security fetches keys (a jwt
// endpoint's jwks_url): bound by the server's egress list and p's, as its http steps are.
// It is made on first use, so partners that fetch nothing cost nothing.
func partnerEgress(p *Partner, c egressCheck) http.RoundTripper {
	lists := []saga.EgressPolicy{c.server}
	if p.Egress != nil {
		lists = append(lists, saga.EgressPolicy{Allow: p.Egress.Allow, Source: "partner " + p.ID})
	}
	return &lazyTransport{lists: lists, own: c.own}
}

type lazyTransport struct {
	lists []saga.EgressPolicy
	own   []saga.Listener
	once  sync.Once
	rt    http.RoundTripper
}

func (t *lazyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.once.Do(func() { t.rt = saga.NewEgressTransport(t.lists, t.own) })
	return t.rt.RoundTrip(r)
}
