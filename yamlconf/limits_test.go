package yamlconf

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
	"github.com/pushbackd/pushbackd/internal/hostileyaml"
	"github.com/pushbackd/pushbackd/internal/scalefixture"
)

// laughs8 is the billion-laughs file: 8 levels of 9 aliases, 9^8 lists of "lol".
func laughs8() string {
	var b strings.Builder
	b.WriteString(`a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for i := 1; i <= 8; i++ {
		name, prev := string(rune('a'+i)), string(rune('a'+i-1))
		fmt.Fprintf(&b, "%s: &%s [%s]\n", name, name, strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ","))
	}
	return b.String()
}

// at is the text of src from line:col on, to check an error points at what broke the limit.
func at(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return fmt.Sprintf("<no line %d>", line)
	}
	l := lines[line-1]
	if col < 1 || col > len(l)+1 {
		return fmt.Sprintf("<no column %d in line %d>", col, line)
	}
	return l[col-1:]
}

func TestHostileDocumentsAreRefusedWithAPositionedError(t *testing.T) {
	blockNest := func(levels int) string {
		var b strings.Builder
		for i := range levels {
			fmt.Fprintf(&b, "%sk%d:\n", strings.Repeat(" ", i), i)
		}
		return b.String()
	}
	keys := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "k%d: v\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name      string
		src       string
		line, col int
		pointsAt  string // the text at line:col starts with this
		want      string
	}{
		{"the issue's 62-byte alias cycle is refused, not expanded until memory runs out",
			"# pushbackd saga\nname: s\nsteps: &a [1, *a]\n", 3, 15, "*a]", "alias *a is inside the value of its own anchor &a (line 3): an alias cycle would never end"},
		{"a cycle through a mapping names the alias",
			"a: &loop {next: *loop}\n", 1, 17, "*loop", "alias cycle"},
		{"a cycle through an anchor redefined with the same name is still a cycle",
			"a: &x 1\nb: &x [2, *x]\n", 2, 11, "*x", "alias cycle"},
		{"the issue's 8-level billion laughs stops at the alias that passes the node budget",
			laughs8(), 6, 0, "*e", "aliases expand the document to more than 250000 nodes, the limit"},
		{"the issue's flow nesting 100,000 deep is refused at the 65th level, before parsing",
			strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000), 1, 65, "[[[", "nesting is deeper than the limit of 64 levels of mappings and lists"},
		{"block nesting 65 deep is refused at the 65th key",
			blockNest(65), 65, 65, "k64:", "deeper than the limit of 64 levels"},
		{"compact lists 65 deep are refused at the 65th dash",
			strings.Repeat("- ", 65) + "x\n", 1, 129, "- x", "deeper than the limit of 64 levels"},
		{"keys whose tag ends the line nest in the parser, so 65 of them are refused",
			strings.Repeat("k: !t\n", 65) + "k: x\n", 65, 1, "k: !t", "deeper than the limit of 64 levels"},
		{"an alias that nests a document past the depth limit is refused where it is used",
			"a: &a " + strings.Repeat("[", 40) + "x" + strings.Repeat("]", 40) + "\nb: " + strings.Repeat("[", 30) + "*a" + strings.Repeat("]", 30) + "\n",
			2, 34, "*a", "alias *a nests the document deeper than the limit of 64 levels"},
		{"a file over 1 MiB is refused at the first byte past the limit",
			"a: " + strings.Repeat("x", MaxBytes), 1, MaxBytes + 1, "x", "the document is over the limit of 1048576 bytes (1 MiB): split it into several files"},
		{"more than 250,000 tokens are refused at the first one past the limit",
			"[" + strings.Repeat("1,", MaxTokens/2) + "1]", 1, MaxTokens + 1, ",", "more than 250000 tokens (keys, values and punctuation), the limit"},
		{"a block mapping of 1,001 keys is refused at the 1,001st",
			keys(1001), 1001, 1, "k1000: v", "this mapping has more than 1000 keys, the limit for a block mapping: split it, or write it as a flow mapping"},
		{"a 600-byte key is refused: the parser would copy it into the path of every node below",
			"a:\n  " + strings.Repeat("k", 600) + ": [1, 2]\n", 2, 3, "kkk", "longer than the limit of 512 bytes for a key path"},
		{"a second document is refused before parsing",
			"a: 1\n---\nb: 2\n", 2, 1, "---", "only one YAML document per file"},
		{"explicit keys are refused",
			"a: 1\n? b\n: c\n", 2, 1, "? b", `explicit keys ("? key") are not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, errs := Parse("f.yaml", []byte(tt.src))
			if n != nil || len(errs) != 1 {
				t.Fatalf("got node %v and %d errors (%v), want one error", n != nil, len(errs), errs)
			}
			e := errs[0]
			if e.File != "f.yaml" || e.Line != tt.line || (tt.col != 0 && e.Column != tt.col) {
				t.Errorf("error at %s:%d:%d, want f.yaml:%d:%d", e.File, e.Line, e.Column, tt.line, tt.col)
			}
			if got := at(tt.src, e.Line, e.Column); !strings.HasPrefix(got, tt.pointsAt) {
				t.Errorf("error points at %.20q, want %q", got, tt.pointsAt)
			}
			if !strings.Contains(e.Message, tt.want) {
				t.Errorf("message %q lacks %q", e.Message, tt.want)
			}
		})
	}
}

// Each limit admits a document exactly at it, so the limits cost real configuration
// nothing, and what is admitted decodes.
func TestDocumentsAtTheLimitsAreAccepted(t *testing.T) {
	aliases := func(uses int) string {
		return "a: &a [" + strings.TrimSuffix(strings.Repeat("x, ", 998), ", ") + "]\nb: [" + strings.TrimSuffix(strings.Repeat("*a, ", uses), ", ") + "]\n"
	}
	tests := []struct {
		name     string
		src      string
		refused  string // the same shape one step further
		want     string
		nodesMin int
	}{
		{"a file of exactly 1 MiB",
			"a: " + strings.Repeat("x", MaxBytes-3), "a: " + strings.Repeat("x", MaxBytes-2), "over the limit of 1048576 bytes", 2},
		{"64 levels of flow lists",
			strings.Repeat("[", 64) + "x" + strings.Repeat("]", 64), strings.Repeat("[", 65) + "x" + strings.Repeat("]", 65), "levels", 65},
		{"64 levels of block mappings",
			nest(64), nest(65), "levels", 64},
		{"an alias that brings nesting to exactly 64 levels",
			"a: &a " + strings.Repeat("[", 40) + "x" + strings.Repeat("]", 40) + "\nb: " + strings.Repeat("[", 23) + "*a" + strings.Repeat("]", 23) + "\n",
			"a: &a " + strings.Repeat("[", 40) + "x" + strings.Repeat("]", 40) + "\nb: " + strings.Repeat("[", 24) + "*a" + strings.Repeat("]", 24) + "\n", "levels", 64},
		{"a block mapping of 1,000 keys",
			keyLines(1000), keyLines(1001), "keys", 1000},
		{"a top-level key of 508 bytes, a 512-byte path",
			strings.Repeat("k", 508) + ": v\n", strings.Repeat("k", 509) + ": v\n", "key path", 2},
		{"aliases that expand to about 240,000 nodes",
			aliases(239), aliases(251), "nodes, the limit", 239_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, errs := Parse("f.yaml", []byte(tt.src))
			if errs != nil || n == nil {
				t.Fatalf("refused: %v", errs)
			}
			d := NewDecoder("f.yaml")
			if got := countValues(d.Value(n)); got < tt.nodesMin || len(d.Errors()) > 0 {
				t.Errorf("decoded %d values (want at least %d), errors %v", got, tt.nodesMin, d.Errors())
			}
			if _, errs := Parse("f.yaml", []byte(tt.refused)); len(errs) != 1 || !strings.Contains(errs[0].Message, tt.want) {
				t.Errorf("one step further: %v, want a refusal naming %q", errs, tt.want)
			}
		})
	}
	t.Run("a 1,000-key mapping at every level stays within the limits", func(t *testing.T) {
		// Many wide mappings: their keys are counted per mapping, not per file.
		src := "a:\n" + indent(keyLines(1000), "  ") + "b:\n" + indent(keyLines(1000), "  ")
		if _, errs := Parse("f.yaml", []byte(src)); errs != nil {
			t.Fatal(errs)
		}
	})
	t.Run("the scale fixture's partner file is far inside every limit", func(t *testing.T) {
		src := scalefixture.Partner(7)
		deepest, _, err := scanShape(lexer.Tokenize(src))
		if err != nil || deepest > 8 {
			t.Fatalf("deepest %d, err %v", deepest, err)
		}
		if _, errs := Parse("p.yaml", []byte(src)); errs != nil {
			t.Fatal(errs)
		}
	})
}

func nest(levels int) string {
	var b strings.Builder
	for i := range levels - 1 {
		fmt.Fprintf(&b, "%sk%d:\n", strings.Repeat(" ", i), i)
	}
	fmt.Fprintf(&b, "%slast: x\n", strings.Repeat(" ", levels-1))
	return b.String()
}

func keyLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: v\n", i)
	}
	return b.String()
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+by) + "\n"
}

// countValues counts the Go values decoding produced: maps, lists and scalars.
func countValues(v any) int {
	switch t := v.(type) {
	case map[string]any:
		n := 1
		for _, x := range t {
			n += countValues(x)
		}
		return n
	case []any:
		n := 1
		for _, x := range t {
			n += countValues(x)
		}
		return n
	}
	return 1
}

// Aliases bind in document order, as YAML says: to the latest anchor of that name before
// them. One that names no anchor before it is an error where it is written.
func TestAliasesBindInDocumentOrder(t *testing.T) {
	n, errs := Parse("f.yaml", []byte("a: &x 1\nb: *x\nc: &x [2]\nd: *x\ne: *later\nf: &later 3\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	d := NewDecoder("f.yaml")
	v := d.Value(n).(map[string]any)
	if v["b"] != 1 || fmt.Sprint(v["d"]) != "[2]" || v["e"] != nil {
		t.Errorf("decoded %v", v)
	}
	if es := d.Errors(); len(es) != 1 || es[0].Error() != "f.yaml:5:4: unknown alias *later" {
		t.Errorf("errors %v", es)
	}
}

// The hostile corpus runs through Parse in bounded time and memory, each document refused
// with a positioned error that names its limit. Bounds: every document allocates at most 600
// bytes per byte of its text plus 1 MiB (lexing a 1 MiB list of one-digit numbers costs
// about 300 per byte); nothing is retained; the whole corpus takes under a minute with the
// race detector on a loaded 2-core machine (a few seconds without).
func TestAThousandHostileDocumentsAreRefusedInBoundedTimeAndMemory(t *testing.T) {
	corpus := hostileyaml.Corpus()
	if len(corpus) != 1000 {
		t.Fatalf("corpus of %d documents", len(corpus))
	}
	settle()
	var start runtime.MemStats
	runtime.ReadMemStats(&start)
	began := time.Now()
	var worst struct {
		name  string
		alloc uint64
	}
	for _, doc := range corpus {
		src := doc.Src()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n, errs := Parse("hostile.yaml", src)
		runtime.ReadMemStats(&after)
		if n != nil || len(errs) != 1 {
			t.Errorf("%s: got node %v and errors %v, want one refusal", doc.Name, n != nil, errs)
			continue
		}
		e := errs[0]
		if e.File != "hostile.yaml" || e.Line < 1 || e.Column < 1 || e.Line > strings.Count(string(src), "\n")+1 {
			t.Errorf("%s: refusal not positioned inside the file: %v", doc.Name, e)
		}
		if !strings.Contains(e.Message, doc.Want) {
			t.Errorf("%s: refusal %q does not name the limit %q", doc.Name, e.Message, doc.Want)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		if bound := 600*uint64(len(src)) + 1<<20; alloc > bound {
			t.Errorf("%s: %d bytes allocated for %d bytes of text, over the bound %d", doc.Name, alloc, len(src), bound)
		}
		if alloc > worst.alloc {
			worst.name, worst.alloc = doc.Name, alloc
		}
	}
	elapsed := time.Since(began)
	settle()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	retained := int64(end.HeapAlloc) - int64(start.HeapAlloc)
	t.Logf("1000 documents in %v, %d MB allocated in all, %d KB retained; the most for one document: %d MB (%s)",
		elapsed.Round(time.Millisecond), (end.TotalAlloc-start.TotalAlloc)>>20, retained>>10, worst.alloc>>20, worst.name)
	if elapsed > time.Minute {
		t.Errorf("took %v", elapsed)
	}
	if retained > 16<<20 {
		t.Errorf("%d bytes retained after refusing every document", retained)
	}
}

// settle collects twice: goccy's scanner keeps buffers in a sync.Pool, which the first
// collection only moves aside.
func settle() {
	runtime.GC()
	runtime.GC()
}

func TestTheCorpusIsBuiltAgainstTheseLimits(t *testing.T) {
	got := []int{hostileyaml.MaxBytes, hostileyaml.MaxTokens, hostileyaml.MaxNodes, hostileyaml.MaxDepth, hostileyaml.MaxMappingKeys, hostileyaml.MaxKeyPath}
	want := []int{MaxBytes, MaxTokens, MaxNodes, MaxDepth, MaxMappingKeys, MaxKeyPath}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hostileyaml limits %v, yamlconf limits %v", got, want)
	}
}

// FuzzParse: whatever the bytes, Parse gives a tree or positioned errors, never both; the
// token scan never sees less nesting than the parser builds, but for one level per tag or
// anchor (which MaxProperties caps); and a tree it returns stays
// within the limits for every walk that follows aliases, as decoding does.
func FuzzParse(f *testing.F) {
	for _, s := range hostileyaml.Seeds() {
		f.Add(s)
	}
	f.Add([]byte("a: &a {b: [1, 2]}\nc: *a\nd: [*a, *a]\n"))
	f.Add([]byte(scalefixture.Partner(1)))
	f.Add([]byte(scalefixture.SyncSaga))
	f.Fuzz(func(t *testing.T, src []byte) {
		n, errs := Parse("f.yaml", src)
		if n != nil && errs != nil {
			t.Fatalf("got a tree and errors %v", errs)
		}
		for _, e := range errs {
			if e.File != "f.yaml" || e.Line < 1 || e.Column < 1 || strings.TrimSpace(e.Message) == "" {
				t.Errorf("unusable error %#v", e)
			}
		}
		if len(src) <= MaxBytes {
			tokens := lexer.Tokenize(string(src))
			if deepest, widest, err := scanShape(tokens); err == nil {
				if f, perr := parser.Parse(tokens, 0); perr == nil && len(f.Docs) > 0 {
					// Where the scan misreads the parser, it is around a tag or an anchor:
					// each may nest what follows one level deeper than the scan counts.
					// MaxProperties caps those, so the scan still bounds the parser.
					props := 0
					for _, tk := range tokens {
						if tk.Type == token.TagType || tk.Type == token.AnchorType {
							props++
						}
					}
					if raw := rawDepth(f.Docs[0].Body, 0); raw > deepest+props {
						t.Fatalf("the token scan saw %d levels and %d tags and anchors, the parser built %d", deepest, props, raw)
					}
					if keys := blockKeys(f.Docs[0].Body); keys > widest {
						t.Fatalf("the token scan saw at most %d keys in a block mapping, the parser built one of %d", widest, keys)
					}
				}
			}
		}
		if n == nil {
			return
		}
		w := walker{}
		w.walk(n, 0)
		if w.nodes > MaxNodes || w.deepest > MaxDepth {
			t.Fatalf("a walk met %d nodes, %d levels deep", w.nodes, w.deepest)
		}
		d := NewDecoder("f.yaml")
		d.Value(n)
	})
}

// rawDepth is the nesting of mappings and lists in the tree as parsed, aliases unexpanded.
func rawDepth(n ast.Node, depth int) int {
	switch t := n.(type) {
	case *ast.MappingNode:
		deepest := depth + 1
		for _, mv := range t.Values {
			deepest = max(deepest, rawDepth(mv.Key, depth+1), rawDepth(mv.Value, depth+1))
		}
		return deepest
	case *ast.MappingValueNode:
		return max(depth+1, rawDepth(t.Key, depth+1), rawDepth(t.Value, depth+1))
	case *ast.SequenceNode:
		deepest := depth + 1
		for _, v := range t.Values {
			deepest = max(deepest, rawDepth(v, depth+1))
		}
		return deepest
	case *ast.AnchorNode:
		return rawDepth(t.Value, depth)
	case *ast.TagNode:
		return rawDepth(t.Value, depth)
	case *ast.MappingKeyNode:
		return rawDepth(t.Value, depth)
	}
	return depth
}

// blockKeys is the most keys of one block mapping in the tree as parsed.
func blockKeys(n ast.Node) int {
	most := 0
	ast.Walk(keyCounter(func(m *ast.MappingNode) {
		if !m.IsFlowStyle {
			most = max(most, len(m.Values))
		}
	}), n)
	return most
}

type keyCounter func(*ast.MappingNode)

func (k keyCounter) Visit(n ast.Node) ast.Visitor {
	if m, ok := n.(*ast.MappingNode); ok {
		k(m)
	}
	return k
}

// walker follows bound aliases the way decoding does, and stops past the limits so a bug
// shows as a failure rather than a hang.
type walker struct{ nodes, deepest int }

func (w *walker) walk(n ast.Node, depth int) {
	if n == nil || w.nodes > MaxNodes || depth > MaxDepth {
		return
	}
	w.nodes++
	w.deepest = max(w.deepest, depth)
	switch t := n.(type) {
	case *boundAlias:
		w.walk(t.target, depth)
	case *ast.AnchorNode:
		w.walk(t.Value, depth)
	case *ast.TagNode:
		w.walk(t.Value, depth)
	case *ast.MappingKeyNode:
		w.walk(t.Value, depth)
	case *ast.MappingNode:
		w.deepest = max(w.deepest, depth+1)
		for _, mv := range t.Values {
			w.walk(mv.Key, depth+1)
			w.walk(mv.Value, depth+1)
		}
	case *ast.MappingValueNode:
		w.deepest = max(w.deepest, depth+1)
		w.walk(t.Key, depth+1)
		w.walk(t.Value, depth+1)
	case *ast.SequenceNode:
		w.deepest = max(w.deepest, depth+1)
		for _, v := range t.Values {
			w.walk(v, depth+1)
		}
	}
}

// ReadFile stops one byte past the limit, so a huge file or a device that never ends is
// refused by Parse without being read whole.
func TestReadFileReadsNoMoreThanTheLimit(t *testing.T) {
	big := t.TempDir() + "/big.yaml"
	if err := os.WriteFile(big, []byte("a: "+strings.Repeat("x", 3*MaxBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"a file three times the limit": big, "a device that never ends": "/dev/zero"} {
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(path); err != nil {
				t.Skip(err)
			}
			src, err := ReadFile(path)
			if err != nil || len(src) != MaxBytes+1 {
				t.Fatalf("read %d bytes, err %v; want %d", len(src), err, MaxBytes+1)
			}
			if _, errs := Parse(path, src); len(errs) != 1 || !strings.Contains(errs[0].Message, "over the limit of 1048576 bytes") {
				t.Fatalf("errors %v", errs)
			}
		})
	}
}

// A tag and an anchor ending each line make the parser nest every next line one level
// deeper at the same column, which the token scan does not see as nesting; 100,000 such
// lines would recurse the parser past its stack. The properties limit refuses them first.
func TestPropertiesThatNestUnseenAreCapped(t *testing.T) {
	src := []byte(strings.Repeat("0: ! &>\n", 100_000) + "0:\n")
	n, errs := Parse("f.yaml", src)
	if n != nil || len(errs) != 1 || !strings.Contains(errs[0].Message, "more than 1000 tags and anchors") || errs[0].Line != 501 {
		t.Fatalf("tree %v, errors %v", n != nil, errs)
	}
	few := []byte(strings.Repeat("0: ! &>\n", 10) + "0:\n")
	if _, errs := Parse("f.yaml", few); len(errs) != 0 && strings.Contains(errs[0].Message, "tags and anchors") {
		t.Fatalf("ten properties refused: %v", errs)
	}
}

// Inside a flow collection the parser opens a list at every "-": "[- - a]" is [[[a]]]. A
// flow list of dashes deeper than MaxDepth is refused by the token scan, before the
// parser recurses into it (FuzzParse found the scan counting such a list as one level;
// 100,000 dashes, 200 KB, then kept the parser busy for 19 s before a later check
// refused the tree).
func TestDashesInAFlowCollectionCountAsLevels(t *testing.T) {
	for _, src := range []string{
		"x: [" + strings.Repeat("- ", MaxDepth+1) + "a]\n",
		"x: {k: " + strings.Repeat("- ", MaxDepth+1) + "a}\n",
		"x: [" + strings.Repeat("- ", 100_000) + "a]\n",
	} {
		start := time.Now()
		n, errs := Parse("f.yaml", []byte(src))
		if n != nil || len(errs) == 0 || !strings.Contains(errs[0].Message, "nesting is deeper than the limit") {
			t.Errorf("%.40q...: tree %v, errors %v; want the nesting refused", src, n != nil, errs)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%.40q... (%d bytes) took %v to refuse; want it refused by the token scan", src, len(src), took)
		}
	}
	if _, errs := Parse("f.yaml", []byte("x: [- - a, - - b, c]\n")); errs != nil {
		t.Errorf("a few dashes in a flow list: %v; want them parsed", errs)
	}
}
