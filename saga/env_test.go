package saga

import (
	"strings"
	"testing"
)

func TestLowerHeaderNameIsToLowerWithoutAllocatingForCommonHeaders(t *testing.T) {
	for _, name := range []string{"Content-Type", "Elli-Signature", "X-Hub-Signature-256", "content-type",
		"X-Custom-Thing", "", "Ünïcode-Header", "X-" + strings.Repeat("Long", 20), "HOST"} {
		if got, want := lowerHeaderName(name), strings.ToLower(name); got != want {
			t.Errorf("lowerHeaderName(%q) = %q, want %q", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = lowerHeaderName("X-Request-Id") }); n != 0 {
		t.Errorf("a common header name cost %v allocations", n)
	}
}
