package bolt

import (
	"bytes"
	"testing"
	"time"
)

// A queue entry read from the file must never panic the reader, and one that decodes
// encodes back to the same bytes, so a claim, renewal or release rewrites it faithfully.
func FuzzQueueEntry(f *testing.F) {
	e := queueEntry{due: time.Unix(1767322245, 5), token: 3, expires: time.Unix(1767322305, 0), owner: "0b6f3c1e-pushbackd", parked: true}
	f.Add(e.encode())
	f.Add((&queueEntry{}).encode())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decodeEntry(v)
		if err != nil {
			return
		}
		if int64(u64(v[:8])) < 0 || v[24]&^entryParked != 0 {
			return // due times before 1970 and unknown flags do not survive; nothing writes them
		}
		if got := e.encode(); !bytes.Equal(got, v) {
			t.Fatalf("decode(%x) = %+v encodes as %x", v, e, got)
		}
	})
}
