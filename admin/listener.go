package admin

import "github.com/pushbackd/pushbackd/config"

// pushbackListener is what a Control may add to say where the pushback listener is bound:
// the address senders reach, which a -listen flag or port 0 makes differ from the config.
type pushbackListener interface {
	PushbackAddr() string
}

// pushbackListen is the pushback listener's address: where it is bound when the Control
// knows, else as configured.
func (a *API) pushbackListen(cfg *config.Config) string {
	if l, ok := a.o.Control.(pushbackListener); ok {
		if addr := l.PushbackAddr(); addr != "" {
			return addr
		}
	}
	return cfg.Server.Listen
}
