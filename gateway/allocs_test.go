package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

// discardWriter is a ResponseWriter that allocates nothing itself, so a count of
// allocations is the gateway's.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// gatewayAllocs is how many allocations the gateway makes to answer one request, the
// request itself (built beforehand) not counted.
func gatewayAllocs(t *testing.T, h http.Handler, header http.Header, body []byte, want int) float64 {
	t.Helper()
	const runs = 200
	reqs := make([]*http.Request, runs+1)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodPost, "/pushback/acme/encompass", bytes.NewReader(body))
		reqs[i].Header = header.Clone()
	}
	w := &discardWriter{h: http.Header{}}
	i := 0
	n := testing.AllocsPerRun(runs, func() {
		clear(w.h)
		h.ServeHTTP(w, reqs[i])
		i++
	})
	if w.code != want {
		t.Fatalf("answered %d, want %d", w.code, want)
	}
	return n
}

// A wrong signature is the answer anyone can make us write as fast as they can send: what
// it costs beyond reading the body is bounded here, so a change that makes guessing dearer
// shows up as a failure, not as a slower bench weeks later.
func TestARejectedSignatureCostsFewAllocations(t *testing.T) {
	g := benchGateway(t)
	good := security.SignatureValue([]byte("encompass-signing-key-0001"), benchBody, "base64", "")
	jsonBody, err := os.ReadFile("../testdata/payloads/encompass-loan-milestone.json")
	if err != nil {
		t.Fatal(err)
	}
	goodJSON := security.SignatureValue([]byte("encompass-signing-key-0001"), jsonBody, "base64", "")
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		code   int
		max    float64
	}{
		{"a well-formed signature of the wrong key is refused with few allocations",
			http.Header{"Elli-Signature": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}, benchBody, 401, 12},
		{"a request with no signature is refused with few allocations", http.Header{}, benchBody, 401, 12},
		{"a good signature is answered with a bounded number of allocations",
			http.Header{"Elli-Signature": {good}, "Content-Type": {"text/plain"}}, benchBody, 200, 35},
		// Measured 57 with jsondec decoding the body; json.Unmarshal made it 88.
		{"a good signature on a JSON body is answered with a bounded number of allocations",
			http.Header{"Elli-Signature": {goodJSON}, "Content-Type": {"application/json"}}, jsonBody, 200, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := gatewayAllocs(t, g, tc.header, tc.body, tc.code); n > tc.max+raceAllocs {
				t.Errorf("%v allocations per request, want at most %v", n, tc.max+raceAllocs)
			}
		})
	}
}
