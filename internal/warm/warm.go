// Package warm runs short functions on goroutines that outlive them.
//
// A goroutine starts with a small stack and grows it by copying as calls go deeper. A sync
// saga run, whose engine and expression VM frames are deep, started on a fresh goroutine
// per request and grew its stack two or three times on every request: runtime.newstack
// was 6% of the server's CPU in the bench's sync scenario (go run ./bench -scenarios 2
// -profile). A Pool hands each function to a goroutine that has run one before, whose
// stack is already grown, and starts a goroutine only when none is idle.
package warm

import "time"

// Pool runs functions on reusable goroutines. The zero value is not ready: use New.
type Pool struct {
	idle chan func()
	keep time.Duration
}

// New returns a Pool whose goroutines exit after keep without work, so a burst leaves no
// goroutines behind for long.
func New(keep time.Duration) *Pool {
	return &Pool{idle: make(chan func()), keep: keep}
}

// Go runs f on an idle goroutine of the pool, or on a new one when none is idle. It never
// waits: the channel is unbuffered, so a hand-off succeeds only to a goroutine that is
// already waiting for work, and f starts at once either way.
func (p *Pool) Go(f func()) {
	select {
	case p.idle <- f:
	default:
		go p.loop(f)
	}
}

func (p *Pool) loop(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil // nothing of the last run stays reachable while idle
		if t == nil {
			t = time.NewTimer(p.keep)
		} else {
			t.Reset(p.keep)
		}
		select {
		case f = <-p.idle:
		case <-t.C:
			return
		}
	}
}
