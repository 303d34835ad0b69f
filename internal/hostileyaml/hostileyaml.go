// Package hostileyaml generates YAML documents built to exhaust a parser or a decoder: alias
// cycles, billion laughs, deep nesting, oversized and over-wide files, and mixes of them. The
// tests of every YAML entry point (yamlconf, saga files, config load and reload, the admin
// API, `pushbackd validate`) run the same documents, and the fuzz targets start from them.
package hostileyaml

import (
	"fmt"
	"strings"
)

// Doc is one hostile document.
type Doc struct {
	Name string
	// Want is a phrase the refusal must contain: it names the limit the document breaks.
	Want string
	gen  func() string
}

// Src builds the document. Large ones are built on demand so a corpus costs little memory
// until it is used.
func (d Doc) Src() []byte { return []byte(d.gen()) }

// The phrases refusals contain, one per limit.
const (
	WantCycle    = "alias cycle"
	WantNodes    = "nodes, the limit"
	WantDepth    = "levels of mappings and lists"
	WantBytes    = "over the limit of 1048576 bytes"
	WantTokens   = "tokens (keys, values and punctuation), the limit"
	WantKeys     = "keys, the limit for a block mapping"
	WantKeyPath  = "bytes for a key path"
	WantOneDoc   = "only one YAML document per file"
	WantExplicit = "explicit keys"
)

// The limits the documents are built against; yamlconf's tests check these match its own.
const (
	MaxBytes       = 1 << 20
	MaxTokens      = 250_000
	MaxNodes       = 250_000
	MaxDepth       = 64
	MaxMappingKeys = 1_000
	MaxKeyPath     = 512
)

// Corpus returns 1,000 hostile documents, the families interleaved so any prefix mixes them.
func Corpus() []Doc {
	families := [][]Doc{cycles(), laughs(), flowNests(), blockNests(), wide(), mixes(), huge()}
	var out []Doc
	for i := 0; len(out) < 1000; i++ {
		added := false
		for _, f := range families {
			if i < len(f) && len(out) < 1000 {
				out = append(out, f[i])
				added = true
			}
		}
		if !added {
			panic("hostileyaml: the families hold fewer than 1000 documents")
		}
	}
	return out
}

// Seeds is one small document of each kind, for fuzz corpora.
func Seeds() [][]byte {
	var out [][]byte
	for _, f := range [][]Doc{cycles(), laughs(), flowNests(), blockNests(), wide(), mixes()} {
		best := f[0].Src()
		for _, d := range f[1:min(len(f), 40)] {
			if s := d.Src(); len(s) < len(best) && len(s) > 0 {
				best = s
			}
		}
		out = append(out, best)
	}
	out = append(out, []byte("a: &a [1, *a]\n"))
	return out
}

func doc(name, want string, gen func() string) Doc { return Doc{Name: name, Want: want, gen: gen} }

func fixed(name, want, src string) Doc { return doc(name, want, func() string { return src }) }

// padding is n harmless keys before the payload, so the refusal's position moves.
func padding(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "pad%d: %d\n", i, i)
	}
	return b.String()
}

func cycles() []Doc {
	// A document whose top is a list cannot take padding keys: it is padded with comments.
	shapes := []struct{ name, src string }{
		{"a list holding its own alias", "a: &a [1, *a]\n"},
		{"a mapping holding its own alias", "a: &a {b: *a}\n"},
		{"an alias three lists down", "a: &a [[[*a]]]\n"},
		{"a block mapping holding its own alias", "a: &a\n  b:\n    c: *a\n"},
		{"a block list holding its own alias", "- &a\n  - x\n  - *a\n"},
		{"a cycle through an inner anchor", "a: &a [&b [*a]]\n"},
		{"an inner anchor holding itself", "a: &a {x: &b [1, *b]}\n"},
		{"a cycle behind a reused name", "a: &a 1\nb: &a [2, *a]\n"},
		{"a root list holding itself", "&r [1, *r]\n"},
		{"a cycle as a mapping key's value", "k: &k\n  - {v: *k}\n"},
		{"a cycle in a saga step", "name: s\nsteps: &s\n  - name: a\n    set: {x: *s}\n"},
		{"a cycle in a partner's settings", "id: p\nsettings: &s {self: *s}\n"},
		{"a tagged list holding itself", "a: &a !t [*a]\n"},
		{"a merge key naming its own mapping", "a: &a\n  <<: *a\n  b: 1\n"},
		{"an alias key inside its own anchor", "a: &a\n  *a : 1\n"},
	}
	var out []Doc
	for pad := 0; pad < 21; pad++ {
		for _, s := range shapes {
			prefix := padding(pad)
			if strings.HasPrefix(s.src, "-") || strings.HasPrefix(s.src, "&") {
				prefix = strings.Repeat("# padding\n", pad)
			}
			out = append(out, fixed(fmt.Sprintf("cycle: %s after %d lines", s.name, pad), WantCycle, prefix+s.src))
		}
	}
	return out
}

// laughNodes is what a billion-laughs document of width w and depth d expands to.
func laughNodes(w, d int) int {
	size := w + 1 // the innermost list: itself and w scalars
	for range d {
		size = 1 + w*(1+size)
		if size > 1<<40 {
			return size
		}
	}
	return size
}

func laughs() []Doc {
	styles := []struct {
		name string
		gen  func(w, d int) string
	}{
		{"flow lists", func(w, d int) string {
			var b strings.Builder
			fmt.Fprintf(&b, "l0: &l0 [%s]\n", strings.TrimSuffix(strings.Repeat("lol, ", w), ", "))
			for i := 1; i <= d; i++ {
				fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), w), ", "))
			}
			return b.String()
		}},
		{"flow mappings", func(w, d int) string {
			var b strings.Builder
			b.WriteString("l0: &l0 {")
			for j := range w {
				fmt.Fprintf(&b, "k%d: lol, ", j)
			}
			b.WriteString("z: lol}\n")
			for i := 1; i <= d; i++ {
				fmt.Fprintf(&b, "l%d: &l%d {", i, i)
				for j := range w {
					fmt.Fprintf(&b, "k%d: *l%d, ", j, i-1)
				}
				b.WriteString("z: 0}\n")
			}
			return b.String()
		}},
		{"block lists", func(w, d int) string {
			var b strings.Builder
			b.WriteString("l0: &l0\n")
			for range w {
				b.WriteString("  - lol\n")
			}
			for i := 1; i <= d; i++ {
				fmt.Fprintf(&b, "l%d: &l%d\n", i, i)
				for range w {
					fmt.Fprintf(&b, "  - *l%d\n", i-1)
				}
			}
			return b.String()
		}},
		{"block mappings", func(w, d int) string {
			var b strings.Builder
			b.WriteString("l0: &l0\n")
			for j := range w {
				fmt.Fprintf(&b, "  k%d: lol\n", j)
			}
			for i := 1; i <= d; i++ {
				fmt.Fprintf(&b, "l%d: &l%d\n", i, i)
				for j := range w {
					fmt.Fprintf(&b, "  k%d: *l%d\n", j, i-1)
				}
			}
			return b.String()
		}},
		{"one list of laughs at the end", func(w, d int) string {
			var b strings.Builder
			fmt.Fprintf(&b, "a: &a [%s]\n", strings.TrimSuffix(strings.Repeat("lol, ", w), ", "))
			prev := "a"
			for i := 1; i <= d; i++ {
				cur := fmt.Sprintf("a%d", i)
				fmt.Fprintf(&b, "%s: &%s [%s]\n", cur, cur, strings.TrimSuffix(strings.Repeat("*"+prev+", ", w), ", "))
				prev = cur
			}
			fmt.Fprintf(&b, "boom: *%s\n", prev)
			return b.String()
		}},
	}
	var out []Doc
	for _, w := range []int{2, 3, 4, 5, 6, 8, 10, 16, 32} {
		first := 0
		for laughNodes(w, first) <= MaxNodes {
			first++
		}
		for d := first; d < first+8 && d <= 40; d++ {
			for _, s := range styles {
				gen, w, d := s.gen, w, d
				out = append(out, doc(fmt.Sprintf("billion laughs: %s, width %d, depth %d", s.name, w, d), WantNodes, func() string { return gen(w, d) }))
			}
		}
	}
	return out
}

func flowNests() []Doc {
	shapes := []struct {
		name        string
		open, close string
	}{
		{"lists", "[", "]"},
		{"mappings", "{a: ", "}"},
		{"lists in mappings", "{k: [", "]}"},
		{"lists never closed", "[", ""},
		{"mappings never closed", "{a: ", ""},
	}
	var out []Doc
	add := func(depth int, s struct{ name, open, close string }, prefix string) {
		n := depth
		if strings.Contains(s.open, "k:") {
			n = depth/2 + 1
		}
		out = append(out, doc(fmt.Sprintf("flow nesting: %d %s after %q", depth, s.name, prefix), WantDepth, func() string {
			return prefix + strings.Repeat(s.open, n) + "x" + strings.Repeat(s.close, n) + "\n"
		}))
	}
	for _, depth := range []int{MaxDepth + 1, MaxDepth + 2, 100, 257, 1000, 4096} {
		for _, s := range shapes {
			for _, prefix := range []string{"", "key: ", "- ", "a:\n  b: "} {
				add(depth, s, prefix)
			}
		}
	}
	// The 200 KB file: flow nesting 100,000 deep.
	for _, depth := range []int{33_333, 100_000} {
		for _, s := range shapes[:2] {
			add(depth, s, "")
		}
	}
	return out
}

func blockNests() []Doc {
	shapes := []struct {
		name string
		gen  func(d int) string
	}{
		{"indented mappings", func(d int) string {
			var b strings.Builder
			for i := range d {
				fmt.Fprintf(&b, "%sk%d:\n", strings.Repeat(" ", i), i)
			}
			return b.String()
		}},
		{"compact lists", func(d int) string { return strings.Repeat("- ", d) + "x\n" }},
		{"indented lists", func(d int) string {
			var b strings.Builder
			for i := range d {
				b.WriteString(strings.Repeat(" ", i) + "-\n")
			}
			return b.String()
		}},
		{"lists under keys at the same column", func(d int) string {
			var b strings.Builder
			for i := range d / 2 {
				fmt.Fprintf(&b, "%sk%d:\n%s- ", strings.Repeat("  ", i), i, strings.Repeat("  ", i))
				b.WriteString("\n")
			}
			b.WriteString(strings.Repeat("  ", d/2) + "x: 1\n")
			return b.String()
		}},
		{"keys whose tag ends the line, which the parser nests", func(d int) string {
			var b strings.Builder
			for i := range d {
				fmt.Fprintf(&b, "k%d: !t\n", i)
			}
			return b.String() + "last: x\n"
		}},
		{"list items whose tag ends the line", func(d int) string {
			return strings.Repeat("- !t\n", d) + "- x\n"
		}},
		{"mappings in lists", func(d int) string {
			var b strings.Builder
			for i := range d / 2 {
				fmt.Fprintf(&b, "%s- k%d:\n", strings.Repeat("  ", 2*i), i)
			}
			return b.String()
		}},
	}
	var out []Doc
	add := func(depth, pad int, name string, gen func(int) string) {
		out = append(out, doc(fmt.Sprintf("block nesting: %d %s after %d keys", depth, name, pad), WantDepth, func() string {
			return padding(pad) + gen(depth+1)
		}))
	}
	// Indentation grows with depth, so the text grows with its square: 300 levels is 45 KB.
	for _, depth := range []int{MaxDepth + 1, MaxDepth + 3, 80, 128, 200, 300} {
		for _, s := range shapes {
			for pad := range 3 {
				add(depth, pad, s.name, s.gen)
			}
		}
	}
	for _, depth := range []int{1000, 5000, 20_000} {
		add(depth, 0, shapes[1].name, shapes[1].gen)
	}
	return out
}

// wide holds documents that are small or middling but over a limit other than depth or
// aliases: keys per mapping, key path length, several documents, explicit keys.
func wide() []Doc {
	var out []Doc
	for _, n := range []int{MaxMappingKeys + 1, MaxMappingKeys + 10, 2000, 5000, 20_000} {
		for _, indent := range []string{"", "  ", "    "} {
			n, indent := n, indent
			out = append(out, doc(fmt.Sprintf("%d keys in one block mapping indented %d", n, len(indent)), WantKeys, func() string {
				var b strings.Builder
				if indent != "" {
					b.WriteString("top:\n")
				}
				for i := range n {
					fmt.Fprintf(&b, "%sk%d: v\n", indent, i)
				}
				return b.String()
			}))
		}
	}
	for _, n := range []int{MaxKeyPath, 600, 1000, 10_000, 100_000} {
		n := n
		out = append(out,
			doc(fmt.Sprintf("a %d-byte key over a list", n), WantKeyPath, func() string {
				return strings.Repeat("k", n) + ": [1, 2, 3]\n"
			}),
			doc(fmt.Sprintf("a %d-byte flow key", n), WantKeyPath, func() string {
				return "{" + strings.Repeat("k", n) + ": 1}\n"
			}),
			doc(fmt.Sprintf("a %d-byte quoted key under a mapping", n), WantKeyPath, func() string {
				return "a:\n  \"" + strings.Repeat("q", n) + "\": x\n"
			}))
	}
	for _, levels := range []int{12, 20, 40} {
		levels := levels
		out = append(out, doc(fmt.Sprintf("%d levels of 50-byte keys", levels), WantKeyPath, func() string {
			var b strings.Builder
			for i := range levels {
				fmt.Fprintf(&b, "%s%s%02d:\n", strings.Repeat(" ", i), strings.Repeat("k", 48), i)
			}
			return b.String() + strings.Repeat(" ", levels) + "v: 1\n"
		}))
	}
	for _, n := range []int{2, 3, 10, 1000, 10_000} {
		n := n
		out = append(out,
			doc(fmt.Sprintf("%d documents", n), WantOneDoc, func() string { return strings.Repeat("a: 1\n---\n", n) }),
			doc(fmt.Sprintf("%d headed documents", n), WantOneDoc, func() string { return strings.Repeat("---\na: 1\n", n) }),
			doc(fmt.Sprintf("%d ended documents", n), WantOneDoc, func() string { return strings.Repeat("a: 1\n...\n", n) }))
	}
	for _, src := range []string{"? a\n: b\n", "{? a : b}\n", "x:\n  ? [a, b]\n  : c\n", "? " + strings.Repeat("[", 10) + strings.Repeat("]", 10) + "\n"} {
		out = append(out, fixed(fmt.Sprintf("explicit key %q", src), WantExplicit, src))
	}
	return out
}

// huge holds the documents that break the size or token limits: few, as each costs a
// megabyte to build and parse.
func huge() []Doc {
	var out []Doc
	for _, extra := range []int{1, 1000, 1 << 20} {
		extra := extra
		out = append(out,
			doc(fmt.Sprintf("a scalar %d bytes over the size limit", extra), WantBytes, func() string {
				return "a: " + strings.Repeat("x", MaxBytes-3+extra)
			}),
			doc(fmt.Sprintf("keys %d bytes over the size limit", extra), WantBytes, func() string {
				var b strings.Builder
				for i := 0; b.Len() <= MaxBytes+extra; i++ {
					fmt.Fprintf(&b, "key%d: value\n", i)
				}
				return b.String()
			}),
			doc(fmt.Sprintf("a list %d bytes over the size limit", extra), WantBytes, func() string {
				return "[" + strings.Repeat("1,", (MaxBytes+extra)/2) + "1]\n"
			}))
	}
	for _, n := range []int{MaxTokens + 1, MaxTokens * 2} {
		n := n
		out = append(out, doc(fmt.Sprintf("%d list items", n), WantTokens, func() string {
			return "[" + strings.Repeat("1,", n/2) + "1]\n"
		}))
	}
	return out
}

func mixes() []Doc {
	var out []Doc
	for _, split := range []int{10, 20, 32, 40, 50, 60} {
		for _, gap := range []int{1, 5, 20} {
			inner, outer := split, MaxDepth-split+gap
			out = append(out, fixed(fmt.Sprintf("an alias of %d levels used %d levels down", inner, outer), WantDepth,
				"a: &a "+strings.Repeat("[", inner-1)+"x"+strings.Repeat("]", inner-1)+"\n"+
					"b: "+strings.Repeat("[", outer)+"*a"+strings.Repeat("]", outer)+"\n"))
			out = append(out, fixed(fmt.Sprintf("a block alias of %d levels used %d levels down", inner, outer), WantDepth,
				"a: &a "+strings.Repeat("{k: ", inner-1)+"x"+strings.Repeat("}", inner-1)+"\n"+
					"b:\n"+strings.Repeat("- ", outer)+"*a\n"))
		}
	}
	// Laughs under nesting that is legal on its own: the node count breaks, not the depth.
	for _, wrap := range []int{5, 20, 40} {
		for _, w := range []int{4, 10} {
			d := 1
			for laughNodes(w, d) <= MaxNodes {
				d++
			}
			var b strings.Builder
			b.WriteString("root: " + strings.Repeat("[", wrap) + "{")
			fmt.Fprintf(&b, "l0: &l0 [%s]", strings.TrimSuffix(strings.Repeat("lol, ", w), ", "))
			for i := 1; i <= d; i++ {
				fmt.Fprintf(&b, ", l%d: &l%d [%s]", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), w), ", "))
			}
			b.WriteString("}" + strings.Repeat("]", wrap) + "\n")
			out = append(out, fixed(fmt.Sprintf("laughs of width %d inside %d lists", w, wrap), WantNodes, b.String()))
		}
	}
	for pad := range 6 {
		for _, tail := range []string{"c: &c [1, *c]\n", "c: &c {k: [*c]}\n"} {
			out = append(out, fixed(fmt.Sprintf("a cycle after harmless aliases (%d)", pad), WantCycle,
				padding(pad)+"a: &a [1, 2]\nb: [*a, *a, *a]\n"+tail))
		}
		out = append(out, fixed(fmt.Sprintf("a cycle inside deep nesting (%d)", pad), WantDepth,
			padding(pad)+"a: "+strings.Repeat("[", MaxDepth+pad+1)+"&c [*c]"+strings.Repeat("]", MaxDepth+pad+1)+"\n"))
		out = append(out, fixed(fmt.Sprintf("laughs after a second document (%d)", pad), WantOneDoc,
			padding(pad+1)+"---\nl0: &l0 [a, a]\nl1: &l1 [*l0, *l0]\n"))
		out = append(out, fixed(fmt.Sprintf("an explicit key holding a cycle (%d)", pad), WantExplicit,
			padding(pad)+"? &a [*a]\n: 1\n"))
		out = append(out, doc(fmt.Sprintf("a cycle in a wide mapping (%d)", pad), WantKeys, func() string {
			return padding(MaxMappingKeys+pad) + "c: &c [*c]\n"
		}))
	}
	return out
}
