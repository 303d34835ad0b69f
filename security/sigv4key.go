package security

import (
	"crypto/sha256"
	"sync"
)

// sigv4KeyCache remembers the derived signing keys of a sigv4Scheme, as AWS's own SDKs do:
// the key depends on the secret, the day, the region and the service only, so a request
// with a known secret and day costs the canonical request hash and one HMAC instead of
// five. The region and service are the scheme's, so an entry is keyed by the secret and
// holds the keys of the last two days it was asked for (a tolerance reaching over midnight
// needs both). Only days within tolerance of now are cached, so a sender who writes
// arbitrary dates cannot push a working day's key out; and the map is cleared when it holds
// maxSigV4CachedSecrets secrets, which bounds its memory when thousands of endpoints share
// one Template. A miss costs what every request cost without the cache.
type sigv4KeyCache struct {
	mu sync.Mutex
	m  map[string]*sigv4Days // by secret access key
}

// maxSigV4CachedSecrets bounds the cache: a few dozen bytes per secret, and a clear when
// full, not an eviction order, because a miss is only the cost of a derivation.
const maxSigV4CachedSecrets = 1024

type sigv4Days struct {
	day [2]string
	key [2][sha256.Size]byte
}

// key is the signing key of secret on day for region and service; cache tells whether the
// day may be remembered.
func (c *sigv4KeyCache) key(secret []byte, day, region, service string, cache bool) [sha256.Size]byte {
	if cache {
		c.mu.Lock()
		if e := c.m[string(secret)]; e != nil {
			for i := range e.day {
				if e.day[i] == day {
					k := e.key[i]
					c.mu.Unlock()
					return k
				}
			}
		}
		c.mu.Unlock()
	}
	k := sigv4SigningKey(secret, day, region, service)
	if !cache {
		return k
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[string(secret)]
	if e == nil {
		if len(c.m) >= maxSigV4CachedSecrets || c.m == nil {
			c.m = make(map[string]*sigv4Days)
		}
		e = &sigv4Days{}
		c.m[string(secret)] = e
	}
	// The older of the two slots makes room: days only move forward.
	i := 0
	if e.day[1] < e.day[0] {
		i = 1
	}
	e.day[i], e.key[i] = day, k
	return k
}

// sigv4SigningKey derives the signing key: HMAC chains over "AWS4"+secret, the day, the
// region, the service and "aws4_request".
func sigv4SigningKey(secret []byte, day, region, service string) [sha256.Size]byte {
	var buf [64]byte
	k := hmacSum(append(append(buf[:0], "AWS4"...), secret...), day)
	k = hmacSum(k[:], region)
	k = hmacSum(k[:], service)
	return hmacSum(k[:], "aws4_request")
}

// hmacSum is HMAC-SHA256 (RFC 2104) of msg under key, computed on stack buffers:
// crypto/hmac allocates two hash states and two pads per call, which on the 401 path of
// aws_sigv4 was most of its allocations.
func hmacSum[T string | []byte](key []byte, msg T) [sha256.Size]byte {
	const block = 64
	var k [block]byte
	if len(key) > block {
		s := sha256.Sum256(key)
		copy(k[:], s[:])
	} else {
		copy(k[:], key)
	}
	var inner [block + 320]byte // the string to sign is at most ~250 bytes; longer spills to the heap
	b := inner[:0]
	for _, c := range k {
		b = append(b, c^0x36)
	}
	b = append(b, msg...)
	ih := sha256.Sum256(b)
	var outer [block + sha256.Size]byte
	for i, c := range k {
		outer[i] = c ^ 0x5c
	}
	copy(outer[block:], ih[:])
	return sha256.Sum256(outer[:])
}
