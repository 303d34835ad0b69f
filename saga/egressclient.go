package saga

import "net/http"

// NewEgressTransport is a transport bound by the same rules as http steps: it connects only
// where every one of lists allows (by default public addresses only, never link-local,
// cloud metadata services or own's listeners), checked at dial time for every address DNS
// returns, and ignores proxy settings of the environment. It serves what fetches on a
// partner's behalf outside sagas: a jwt endpoint's JWKS.
func NewEgressTransport(lists []EgressPolicy, own []Listener) http.RoundTripper {
	return newTransport(newEgressGuard(lists, func() []Listener { return own }), 2)
}
