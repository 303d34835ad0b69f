package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// listener is one http.Server on one address, with a clean stop.
type listener struct {
	server *http.Server
	ln     net.Listener
	served chan error
	fresh  sync.Map // connections in http.StateNew: opened, nothing read yet
}

func (l *listener) listen(ctx context.Context, addr string, srv *http.Server, tlsCfg *tls.Config) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv.ConnState = l.trackFresh
	l.server, l.ln, l.served = srv, ln, make(chan error, 1)
	go func() { l.served <- srv.Serve(ln) }()
	return nil
}

func (l *listener) addr() string {
	if l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// stop closes the listener and waits, within ctx, for requests in flight.
func (l *listener) stop(ctx context.Context) error {
	if l.server == nil {
		return nil
	}
	shut := make(chan error, 1)
	go func() { shut <- l.server.Shutdown(ctx) }()
	l.closeFresh()
	err := <-shut
	if serr := <-l.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// trackFresh remembers connections on which no request has started. http.Server.Shutdown
// waits up to five seconds for those (clients often dial a spare connection they never
// use); stop closes them at once instead, which loses nothing since nothing was sent.
func (l *listener) trackFresh(c net.Conn, state http.ConnState) {
	if state == http.StateNew {
		l.fresh.Store(c, struct{}{})
	} else {
		l.fresh.Delete(c)
	}
}

func (l *listener) closeFresh() {
	l.fresh.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		l.fresh.Delete(k)
		return true
	})
}
