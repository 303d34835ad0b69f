package security

import (
	"fmt"
	"testing"
	"time"
)

type manualTime struct{ t time.Time }

func (m *manualTime) now() time.Time { return m.t }

func TestFailureLimiterBlocksAfterTheBurstAndRefills(t *testing.T) {
	clock := &manualTime{t: time.Unix(1700000000, 0)}
	l := NewFailureLimiter(3, time.Minute, 100, clock.now)
	for i := 1; i <= 3; i++ {
		if blocked, _ := l.Blocked("10.0.0.1"); blocked {
			t.Fatalf("blocked before failure %d", i)
		}
		out := l.Fail("10.0.0.1")
		if out != (i == 3) {
			t.Fatalf("failure %d: out of tries = %v", i, out)
		}
	}
	blocked, wait := l.Blocked("10.0.0.1")
	if !blocked || wait != 20*time.Second {
		t.Fatalf("after the burst: blocked %v, wait %v (want 20s: one try per window/burst)", blocked, wait)
	}
	if blocked, _ := l.Blocked("10.0.0.2"); blocked {
		t.Error("another key is blocked too")
	}
	clock.t = clock.t.Add(20 * time.Second)
	if blocked, _ := l.Blocked("10.0.0.1"); blocked {
		t.Error("still blocked after a refill period")
	}
	clock.t = clock.t.Add(time.Hour)
	if l.Blocked("10.0.0.1"); l.Len() != 0 {
		t.Errorf("a refilled bucket is still tracked: %d keys", l.Len())
	}
}

func TestFailureLimiterStaysBoundedUnderManyAddresses(t *testing.T) {
	clock := &manualTime{t: time.Unix(1700000000, 0)}
	l := NewFailureLimiter(5, time.Minute, 1000, clock.now)
	for i := range 100000 {
		l.Fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if n := l.Len(); n > 1000 {
		t.Fatalf("%d keys tracked, cap 1000", n)
	}
	// A key that failed a lot is still remembered after the churn of one-off keys.
	for range 5 {
		l.Fail("192.0.2.1")
	}
	for i := range 2000 {
		l.Fail(fmt.Sprintf("172.16.%d.%d", i>>8, i&255))
	}
	if blocked, _ := l.Blocked("192.0.2.1"); !blocked {
		t.Error("the persistent attacker was forgotten before the one-off keys")
	}
}

func TestANilFailureLimiterAllowsEverything(t *testing.T) {
	var l *FailureLimiter
	if blocked, _ := l.Blocked("x"); blocked || l.Fail("x") {
		t.Error("a nil limiter limits")
	}
}
