package dispatch

import "context"

// Notifier is a store that announces, across processes, that a run fell due at once (a
// Postgres store's LISTEN/NOTIFY): another instance's accept, a release, a run unparked
// behind a finished one. The dispatcher claims on each nudge, besides its own timer and
// accepts, so an idle instance picks up work another one stored without waiting for a
// poll. The channel closes when ctx ends.
type Notifier interface {
	Notifications(ctx context.Context) <-chan struct{}
}

// listenNotifications pokes the claimer on each of the store's nudges until Stop, when the
// store is a Notifier.
func (d *Dispatcher) listenNotifications() {
	n, ok := d.o.Store.(Notifier)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := n.Notifications(ctx)
	d.claimer.Add(1)
	go func() {
		defer d.claimer.Done()
		defer cancel()
		for {
			select {
			case <-d.quit:
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				d.poke()
			}
		}
	}()
}
