package store

import (
	"strings"
	"testing"
)

// Scoped keys must never collide across scopes or kinds, whatever the sender's text: the
// first three "/" end the partner, site and endpoint, which cannot hold one.
func TestScopedKeysDoNotCollideAcrossScopes(t *testing.T) {
	partner := KeyScope{Partner: "acme", Endpoint: "loans"}
	branch := KeyScope{Partner: "acme", Site: "branch", Endpoint: "loans"}
	cases := []struct {
		name string
		a, b string
	}{
		{"the same event id at the partner's and at a site's endpoint",
			IdempotencyKey(partner, "E-777"), IdempotencyKey(branch, "E-777")},
		{"a sender's key that spells another site's prefix",
			IdempotencyKey(partner, "branch/loans/E-777"), IdempotencyKey(branch, "E-777")},
		{"a sender's key that spells another endpoint",
			IdempotencyKey(KeyScope{Partner: "acme", Endpoint: "loans"}, "x/E-1"), IdempotencyKey(KeyScope{Partner: "acme", Site: "loans", Endpoint: "x"}, "E-1")},
		{"a partner id and key that straddle the separator",
			IdempotencyKey(KeyScope{Partner: "a", Endpoint: "b"}, "c/d"), IdempotencyKey(KeyScope{Partner: "a", Site: "b", Endpoint: "c"}, "d")},
		{"an idempotency key that spells a message key",
			IdempotencyKey(partner, "message-id:acme//loans/m1"), MessageKey(partner, "m1")},
		{"a message id equal to an event id",
			IdempotencyKey(partner, "m1"), MessageKey(partner, "m1")},
		{"a debounce key at the endpoint and across the partner",
			DebounceKey(partner, "milestones", "L-1"), DebounceKey(KeyScope{Partner: "acme", Site: AnySite, Endpoint: AnyEndpoint}, "milestones", "L-1")},
		{"a debounce key that spells a wider scope",
			DebounceKey(partner, "milestones", "L-1"), DebounceKey(KeyScope{Partner: "acme", Site: "", Endpoint: AnyEndpoint}, "milestones", "L-1")},
		{"a sender's key that spells another saga",
			DebounceKey(partner, "a", "b/L-1"), DebounceKey(partner, "a/b", "L-1")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.a == c.b {
				t.Fatalf("both are %q", c.a)
			}
		})
	}
}

func TestScopedKeysBoundTheSendersPart(t *testing.T) {
	sc := KeyScope{Partner: "acme", Site: "branch", Endpoint: "loans"}
	long := strings.Repeat("x", 1<<20)
	for name, k := range map[string]string{
		"idempotency": IdempotencyKey(sc, long),
		"message":     MessageKey(sc, long),
		"debounce":    DebounceKey(sc, "milestones", long),
	} {
		t.Run("a 1 MiB "+name+" key is stored as its hash", func(t *testing.T) {
			if len(k) > 200 || !strings.Contains(k, "sha256:") {
				t.Fatalf("%d bytes: %.80q", len(k), k)
			}
		})
	}
	t.Run("two long keys that differ in their last byte stay apart", func(t *testing.T) {
		if IdempotencyKey(sc, long+"a") == IdempotencyKey(sc, long+"b") {
			t.Fatal("they collide")
		}
	})
	t.Run("a key of the bound is kept as it is", func(t *testing.T) {
		k := strings.Repeat("k", MaxKeyPartLen)
		if got := IdempotencyKey(sc, k); got != "acme/branch/loans/"+k {
			t.Fatalf("got %.60q", got)
		}
	})
}

// FuzzScopedKeys checks that equal scoped keys come only from equal scopes and sender
// texts (after the length bound), for any sender text and any valid ids.
func FuzzScopedKeys(f *testing.F) {
	f.Add("acme", "", "loans", "E-777", "acme", "branch", "loans", "E-777", false)
	f.Add("acme", "", "loans", "branch/loans/E-777", "acme", "branch", "loans", "E-777", true)
	f.Add("a", "", "b", "c/d", "a", "b", "c", "d", false)
	f.Fuzz(func(t *testing.T, p1, s1, e1, k1, p2, s2, e2, k2 string, message bool) {
		for _, id := range []string{p1, p2} {
			if !validScopeID(id, false) {
				return
			}
		}
		for _, id := range []string{s1, e1, s2, e2} {
			if !validScopeID(id, true) {
				return
			}
		}
		a, b := KeyScope{p1, s1, e1}, KeyScope{p2, s2, e2}
		build := IdempotencyKey
		if message {
			build = MessageKey
		}
		same := a == b && boundPart(k1) == boundPart(k2)
		if (build(a, k1) == build(b, k2)) != same {
			t.Fatalf("%+v %q and %+v %q: keys equal %v, inputs equal %v", a, k1, b, k2, !same, same)
		}
		if MessageKey(a, k1) == IdempotencyKey(b, k2) {
			t.Fatalf("message key %+v %q equals idempotency key %+v %q", a, k1, b, k2)
		}
	})
}

// validScopeID is the id shape of partners, sites and endpoints ([a-z0-9-], non-empty),
// plus "" and "*" where a scope allows them.
func validScopeID(s string, wide bool) bool {
	if s == "" || s == "*" {
		return wide
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" && s[0] != '-'
}
