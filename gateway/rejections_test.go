package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/payload"
)

func TestRejectionsAreBounded(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rej := func(endpoint string, i int) Rejection {
		return Rejection{At: t0.Add(time.Duration(i) * time.Second), Partner: "p", Endpoint: endpoint, RequestID: fmt.Sprint(i),
			Problems: []payload.Problem{{Pointer: "/a", Reason: "r"}}}
	}
	t.Run("an endpoint keeps its latest sixteen, newest first", func(t *testing.T) {
		rs := NewRejections()
		for i := range 40 {
			rs.Add(rej("e", i))
		}
		got := rs.Recent("p", "", "e", 0)
		if len(got) != RejectionsPerEndpoint || got[0].RequestID != "39" || got[len(got)-1].RequestID != "24" {
			t.Fatalf("kept %d, newest %s, oldest %s", len(got), got[0].RequestID, got[len(got)-1].RequestID)
		}
	})
	t.Run("a noisy endpoint does not push another's out", func(t *testing.T) {
		rs := NewRejections()
		rs.Add(rej("quiet", 0))
		for i := range 1000 {
			rs.Add(rej("noisy", i+1))
		}
		if got := rs.Recent("", "", "quiet", 0); len(got) != 1 {
			t.Fatalf("quiet kept %d", len(got))
		}
	})
	t.Run("past the endpoint cap the one rejected longest ago is forgotten", func(t *testing.T) {
		rs := NewRejections()
		for i := range RejectionEndpoints + 1 {
			rs.Add(rej(fmt.Sprintf("e%d", i), i))
		}
		if len(rs.rings) != RejectionEndpoints {
			t.Fatalf("%d endpoints kept, want %d", len(rs.rings), RejectionEndpoints)
		}
		if got := rs.Recent("", "", "e0", 0); len(got) != 0 {
			t.Fatal("the stalest endpoint was kept")
		}
		if got := rs.Recent("", "", fmt.Sprintf("e%d", RejectionEndpoints), 0); len(got) != 1 {
			t.Fatal("the newest endpoint was not kept")
		}
	})
	t.Run("filters and limit apply", func(t *testing.T) {
		rs := NewRejections()
		rs.Add(rej("a", 1))
		rs.Add(Rejection{At: t0, Partner: "p", Site: "s", Endpoint: "a"})
		rs.Add(rej("b", 2))
		if got := rs.Recent("p", "s", "", 0); len(got) != 1 || got[0].Site != "s" {
			t.Fatalf("site filter: %v", got)
		}
		if got := rs.Recent("", "", "", 2); len(got) != 2 || got[0].Endpoint != "b" {
			t.Fatalf("limit: %v", got)
		}
		if got := rs.Recent("other", "", "", 0); got != nil {
			t.Fatalf("another partner: %v", got)
		}
	})
}
