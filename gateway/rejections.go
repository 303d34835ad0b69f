package gateway

import (
	"slices"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/payload"
)

// Rejection is a verified request whose body failed its endpoint's schema. It holds what an
// operator needs to tell the sender what to fix, not the body: a rejected body is never
// recorded.
type Rejection struct {
	At        time.Time         `json:"at"`
	Partner   string            `json:"partner"`
	Site      string            `json:"site,omitempty"`
	Endpoint  string            `json:"endpoint"`
	RequestID string            `json:"request_id"`
	RemoteIP  string            `json:"remote_ip"`
	Schema    string            `json:"schema"`
	Problems  []payload.Problem `json:"problems"`
}

// Bounds of the rejections kept in memory.
const (
	// RejectionsPerEndpoint is how many of an endpoint's latest rejections are kept, so a
	// noisy endpoint never pushes another's out.
	RejectionsPerEndpoint = 16
	// RejectionEndpoints is how many endpoints keep rejections; past it, the one whose
	// latest rejection is oldest is forgotten. With payload's bounds on problems, all of
	// it stays under about 10 MB whatever senders do.
	RejectionEndpoints = 256
)

// Rejections keeps the latest schema rejections per endpoint, in memory only: they are for
// an operator looking now ("why is Acme's sender getting 400s?"); the count over time is
// in pushbackd_requests_total{reason="schema"}. Safe for concurrent use.
type Rejections struct {
	mu    sync.Mutex
	rings map[string]*rejectionRing
}

type rejectionRing struct {
	items [RejectionsPerEndpoint]Rejection
	next  int // where the next one goes
	n     int // how many are held
}

func (r *rejectionRing) latest() time.Time {
	return r.items[(r.next+RejectionsPerEndpoint-1)%RejectionsPerEndpoint].At
}

// NewRejections returns an empty set.
func NewRejections() *Rejections {
	return &Rejections{rings: map[string]*rejectionRing{}}
}

func rejectionKey(partner, site, endpoint string) string {
	return partner + "/" + site + "/" + endpoint
}

// Add keeps x, forgetting its endpoint's oldest beyond RejectionsPerEndpoint.
func (rs *Rejections) Add(x Rejection) {
	key := rejectionKey(x.Partner, x.Site, x.Endpoint)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.rings[key]
	if r == nil {
		if len(rs.rings) >= RejectionEndpoints {
			rs.forgetStalest()
		}
		r = &rejectionRing{}
		rs.rings[key] = r
	}
	r.items[r.next] = x
	r.next = (r.next + 1) % RejectionsPerEndpoint
	r.n = min(r.n+1, RejectionsPerEndpoint)
}

// forgetStalest drops the endpoint whose latest rejection is oldest. It scans every ring,
// which happens only when a new endpoint starts being rejected while the set is full.
func (rs *Rejections) forgetStalest() {
	var stalest string
	var at time.Time
	for k, r := range rs.rings {
		if t := r.latest(); stalest == "" || t.Before(at) {
			stalest, at = k, t
		}
	}
	delete(rs.rings, stalest)
}

// Recent returns the rejections of the endpoints matching the filters ("" matches any),
// newest first, at most limit (no limit when limit <= 0).
func (rs *Rejections) Recent(partner, site, endpoint string, limit int) []Rejection {
	rs.mu.Lock()
	var out []Rejection
	for _, r := range rs.rings {
		for i := range r.n {
			x := r.items[(r.next+RejectionsPerEndpoint-1-i)%RejectionsPerEndpoint]
			if (partner == "" || x.Partner == partner) && (site == "" || x.Site == site) && (endpoint == "" || x.Endpoint == endpoint) {
				out = append(out, x)
			}
		}
	}
	rs.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Rejection) int { return b.At.Compare(a.At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
