package saga

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushbackd/pushbackd/internal/hostileyaml"
)

// FuzzParse feeds arbitrary bytes to the saga loader. The loader reads files an admin (or
// the admin API) hands it, so whatever the bytes it must not panic, must give either a saga
// or errors (a half-compiled saga must never run), and every error must point somewhere an
// editor can jump to. The committed corpus under testdata/fuzz/FuzzParse holds the shipped
// sagas and the bad fixtures, renamed to "fuzz" so they get past the file-name check.
//
// The hostile YAML seeds (alias cycles, billion laughs, deep nesting, wide mappings) keep the
// parsing limits in the fuzzer's corpus.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: fuzz\nsteps:\n  - name: a\n    respond: {status: 200}\n"))
	for _, s := range hostileyaml.Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, errs := Parse("fuzz.yaml", src)
		if (s == nil) == (len(errs) == 0) {
			t.Fatalf("Parse gave saga %v and %d errors: want exactly one of them", s != nil, len(errs))
		}
		for _, e := range errs {
			if e.Line < 1 || e.Column < 1 || strings.TrimSpace(e.Message) == "" || e.File != "fuzz.yaml" {
				t.Errorf("unusable error %#v", e)
			}
		}
		if s == nil {
			return
		}
		if s.Name != "fuzz" || len(s.Steps) == 0 || len(s.Version) != 12 || !bytes.Equal(s.Source, src) {
			t.Fatalf("saga name %q, %d steps, version %q, source kept %v", s.Name, len(s.Steps), s.Version, bytes.Equal(s.Source, src))
		}
		for _, st := range s.Steps {
			if st.Action == nil || !stepNameRE.MatchString(st.Name) || st.Retry.Attempts < 1 {
				t.Fatalf("step %q compiled with action %v, %d attempts", st.Name, st.Action, st.Retry.Attempts)
			}
		}
	})
}

// FuzzParseTemplate checks that the template splitter never panics, that its segments put
// back together give the input, and that the expression offsets point at the sources.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"", "plain", "${ a }", "x${a}y", "${ {a: 1}.a }", `${ "}" }`, `${ 'a\'}' }`, "$${ a }",
		"${", "${ a", "$${", "${ `}` }", "é${x}ü", "${}", "${ {{}} }",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, err := parseTemplate(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, seg := range segs {
			if seg.isExpr {
				if strings.TrimSpace(seg.expr) == "" {
					t.Fatalf("empty expression accepted in %q", s)
				}
				if utf8.ValidString(s) {
					runes := []rune(s)
					if seg.offset < 2 || seg.offset > len(runes) || string(runes[seg.offset-2:seg.offset]) != "${" {
						t.Fatalf("offset %d does not follow ${ in %q", seg.offset, s)
					}
				}
				b.WriteString("${" + seg.expr + "}")
				continue
			}
			b.WriteString(strings.ReplaceAll(seg.lit, "${", "$${"))
		}
		if b.String() != s {
			t.Fatalf("segments of %q put back together give %q", s, b.String())
		}
	})
}

// FuzzEgress feeds arbitrary allow entries, addresses and host names to the egress policy.
// Whatever they are: parsing does not panic and gives one kind of entry; an IPv4 address and
// its IPv4-mapped form are the same class; an address refused whatever the list says is
// refused with this list too; an empty list allows exactly the public addresses; and every
// refusal is an ErrEgressRefused.
func FuzzEgress(f *testing.F) {
	for _, seed := range []string{"crm.example.com", "*.crm.example:443", "10.0.0.0/8:443", "[fd00::/8]:8443", "fd00::/8",
		"::1", "[::1]:80", "a:b:c", "[", "*", "127.0.0.1:*", "*a*a*a*b"} {
		f.Add(seed, []byte{127, 0, 0, 1}, uint16(80), "localhost")
		f.Add(seed, []byte{169, 254, 169, 254}, uint16(443), "metadata")
		f.Add(seed, netip.MustParseAddr("fd00:ec2::254").AsSlice(), uint16(80), "x")
	}
	f.Fuzz(func(t *testing.T, pat string, ip []byte, port uint16, host string) {
		e, err := parseEgressEntry(pat)
		if err == nil {
			if (e.name != "") == e.prefix.IsValid() {
				t.Fatalf("%q parsed to neither or both of a name and an address: %+v", pat, e)
			}
			if strings.ContainsAny(e.name, "[]:/ ") {
				t.Fatalf("%q parsed to the name %q", pat, e.name)
			}
			if e.port != "" && e.port != "*" {
				if n, err := strconv.Atoi(e.port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != e.port {
					t.Fatalf("%q parsed to the port %q", pat, e.port)
				}
			}
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || port == 0 {
			return
		}
		c := classify(a)
		if a.Is4() && classify(netip.AddrFrom16(a.As16())) != c {
			t.Fatalf("%s is %s but its mapped form is %s", a, classNames[c], classNames[classify(netip.AddrFrom16(a.As16()))])
		}
		ap := netip.AddrPortFrom(a, port)
		host = strings.ToLower(host)
		err = newEgressGuard([]EgressPolicy{{Allow: []string{pat}}}, nil).check(host, ap)
		if c.always() && err == nil {
			t.Fatalf("%s (%s) allowed by [%s]", a, classNames[c], pat)
		}
		if err != nil && !errors.Is(err, ErrEgressRefused) {
			t.Fatalf("refusal %v is not an ErrEgressRefused", err)
		}
		err = newEgressGuard([]EgressPolicy{{}}, nil).check(host, ap)
		if (err == nil) != (c == classPublic) {
			t.Fatalf("the empty list on %s (%s): %v", a, classNames[c], err)
		}
	})
}
