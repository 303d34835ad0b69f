package security

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// macHashes computes HMAC-SHA256 (RFC 2104) from SHA-256 states it reuses. crypto/hmac.New
// allocates two digests and the key pads for every request; on the signature method's 401
// path that was most of what a rejected guess allocated. A pooled state holds no key
// material between uses: its pads and digest are cleared before it goes back.
type macHashes struct{ pool sync.Pool }

// macState is one reusable computation. The scratch arrays live here, not on the stack:
// passed to a hash.Hash method they would escape to the heap anyway.
type macState struct {
	h          hash.Hash
	k0, pad    [sha256.BlockSize]byte
	inner, out [sha256.Size]byte
}

// sum appends HMAC-SHA256(key, what write writes) to out and returns it.
func (m *macHashes) sum(out, key []byte, write func(hash.Hash)) []byte {
	st, _ := m.pool.Get().(*macState)
	if st == nil {
		st = &macState{h: sha256.New()}
	}
	h := st.h
	h.Reset()
	if len(key) > sha256.BlockSize {
		h.Write(key)
		h.Sum(st.k0[:0])
		h.Reset()
	} else {
		copy(st.k0[:], key)
	}
	for i := range st.pad {
		st.pad[i] = st.k0[i] ^ 0x36
	}
	h.Write(st.pad[:])
	write(h)
	h.Sum(st.inner[:0])
	h.Reset()
	for i := range st.pad {
		st.pad[i] = st.k0[i] ^ 0x5c
	}
	h.Write(st.pad[:])
	h.Write(st.inner[:])
	h.Sum(st.out[:0])
	out = append(out, st.out[:]...)
	h.Reset()
	clear(st.k0[:])
	clear(st.pad[:])
	clear(st.inner[:])
	clear(st.out[:])
	m.pool.Put(st)
	return out
}
