package config

import (
	"path/filepath"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
)

// Route is what one pushback URL resolves to. It is returned by value so a lookup on the
// request path allocates nothing.
type Route struct {
	Partner  *Partner
	Site     *Site // nil for a partner-scoped URL
	Endpoint *Endpoint
}

// Settings are the site's settings over the partner's, as sagas see them.
func (r Route) Settings() map[string]any {
	if r.Site != nil {
		return r.Site.settings
	}
	return r.Partner.Settings
}

// Secrets are the partner's named secrets, for secret(name) in sagas.
func (r Route) Secrets() map[string]security.Secret { return r.Partner.secrets }

// Egress is the run's egress lists: the server's, then the partner's own if it has one.
func (r Route) Egress() []saga.EgressPolicy { return r.Partner.egress }

// Lookup resolves /pushback/{partner}/{endpoint} (site == "") and
// /pushback/{partner}/{site}/{endpoint}. A site's own endpoint wins over the partner's
// endpoint of the same name, which every site otherwise inherits.
func (c *Config) Lookup(partner, site, endpoint string) (Route, bool) {
	p, ok := c.partners[partner]
	if !ok {
		return Route{}, false
	}
	if site == "" {
		e := findEndpoint(p.Endpoints, p.endpoints, endpoint)
		return Route{Partner: p, Endpoint: e}, e != nil
	}
	s := p.Site(site)
	if s == nil {
		return Route{}, false
	}
	e := findEndpoint(s.Endpoints, s.endpoints, endpoint)
	if e == nil {
		e = findEndpoint(p.Endpoints, p.endpoints, endpoint)
	}
	return Route{Partner: p, Site: s, Endpoint: e}, e != nil
}

// findEndpoint is the endpoint of list named name, through index when the list has one.
func findEndpoint(list []*Endpoint, index map[string]*Endpoint, name string) *Endpoint {
	if index != nil {
		return index[name]
	}
	for _, e := range list {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Partner returns the partner with id, or nil.
func (c *Config) Partner(id string) *Partner { return c.partners[id] }

// Site returns the partner's site with id, or nil.
func (p *Partner) Site(id string) *Site {
	if p.sites != nil {
		return p.sites[id]
	}
	for _, s := range p.Sites {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// SagasDir is sagas_dir resolved against pushbackd.yaml's directory.
func (c *Config) SagasDir() string { return c.resolve(c.Server.SagasDir) }

// SagaFile is where saga name's file lives (or would).
func (c *Config) SagaFile(name string) string {
	return filepath.Join(c.SagasDir(), name+".yaml")
}

// WatchedDirs are the directories whose changes a reload picks up.
func (c *Config) WatchedDirs() []string {
	return []string{c.Dir, c.resolve(c.Server.PartnersDir), c.SagasDir()}
}
