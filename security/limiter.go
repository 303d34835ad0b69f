package security

import (
	"math"
	"sync"
	"time"
)

// FailureLimiter counts failed authentications per key (a client address, an endpoint) in
// token buckets: each key may fail Burst times, and regains one try every Window/Burst. An
// empty bucket means "stop answering this key's guesses for a while". It is safe for
// concurrent use and bounded in memory: full buckets carry no information and are dropped.
type FailureLimiter struct {
	burst  float64
	refill float64 // tokens per second
	now    func() time.Time
	max    int // most keys tracked; past it, the fullest are forgotten first

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewFailureLimiter allows burst failures per key, refilled evenly over window. maxKeys
// bounds memory against an attacker with many addresses. now may be nil (time.Now).
func NewFailureLimiter(burst int, window time.Duration, maxKeys int, now func() time.Time) *FailureLimiter {
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{burst: float64(burst), refill: float64(burst) / window.Seconds(), now: now, max: maxKeys, buckets: map[string]*bucket{}}
}

// level brings key's bucket up to date; nil when the key is unknown (a full bucket).
func (l *FailureLimiter) level(key string, now time.Time) *bucket {
	b := l.buckets[key]
	if b == nil {
		return nil
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.refill)
	b.at = now
	if b.tokens >= l.burst {
		delete(l.buckets, key)
		return nil
	}
	return b
}

// Blocked says whether key has no tries left, and how long until it has one.
func (l *FailureLimiter) Blocked(key string) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.level(key, l.now())
	if b == nil || b.tokens >= 1 {
		return false, 0
	}
	wait := time.Duration((1 - b.tokens) / l.refill * float64(time.Second))
	return true, wait
}

// Fail records one failure for key and reports whether key is now out of tries.
func (l *FailureLimiter) Fail(key string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.level(key, now)
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Max(0, b.tokens-1)
	return b.tokens < 1
}

// evict forgets buckets that have refilled, then, if still full, the fullest half: those
// keys failed least recently and lose the least by being forgotten.
func (l *FailureLimiter) evict(now time.Time) {
	for k := range l.buckets {
		l.level(k, now)
	}
	if len(l.buckets) < l.max {
		return
	}
	n := 0
	for k, b := range l.buckets {
		if b.tokens >= l.burst/2 {
			delete(l.buckets, k)
			n++
		}
	}
	if n == 0 { // everyone is an attacker: drop arbitrary keys rather than grow
		for k := range l.buckets {
			delete(l.buckets, k)
			if len(l.buckets) < l.max/2 {
				break
			}
		}
	}
}

// Len is how many keys are tracked (for tests and metrics).
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
