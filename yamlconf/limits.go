package yamlconf

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Limits on one YAML document. Configuration comes from files and from the admin API, so a
// document is hostile input: without bounds a 62-byte alias cycle, a billion-laughs file or
// a 200 KB bracket nest each brought the process down. goccy/go-yaml's parser recurses per
// nesting level, per sibling key of a block mapping and per document, and stores on every
// node its path from the root, so the shape of the text is checked before it is parsed;
// aliases cost nothing to parse but multiply what decoding walks, so they are checked on the
// tree before anything walks it.
//
// The limits are far above real configuration: a partner file of the scale fixture (5 sites
// × 5 endpoints) is 4 KB, 835 tokens and 8 levels deep; no shipped demo file nests deeper
// than 7 levels or has more than 8 keys in one mapping.
const (
	// MaxBytes is the size of one file; the admin API refuses larger bodies before reading
	// them.
	MaxBytes = 1 << 20
	// MaxTokens bounds the parser's work and memory: lexing and parsing cost about 1.5 KB
	// a token.
	MaxTokens = 250_000
	// MaxNodes bounds what decoding walks: the document's nodes with every alias counted as
	// the nodes it stands for, each time it is used.
	MaxNodes = 250_000
	// MaxDepth bounds nesting of mappings and lists, in the text and once aliases are
	// expanded.
	MaxDepth = 64
	// MaxMappingKeys bounds the keys of one block mapping: the parser's cost grows with
	// their square. Flow mappings ({a: 1, b: 2}) have no such cost and no such limit.
	MaxMappingKeys = 1_000
	// MaxKeyPath bounds the keys from the top of the document to any value (as in
	// $.sites[0].endpoints[1].security): the parser stores that path on every node.
	MaxKeyPath = 512
	// MaxProperties bounds the tags (!x) and anchors (&a) of one document. The parser nests
	// the node after a property in ways the token scan cannot always foresee ("0: ! &>" on
	// each line nests every line one level deeper, at the same column), and its recursion
	// has no limit of its own; capping the properties caps the nesting the scan could miss.
	// Configuration files use a few anchors at most.
	MaxProperties = 1_000
)

// limitError is one refusal: where, and which limit. Parse adds the file name.
type limitError struct {
	pos Pos
	msg string
}

func tokenPos(tk *token.Token) Pos {
	if tk == nil || tk.Position == nil || tk.Position.Line < 1 {
		return Pos{Line: 1, Column: 1}
	}
	return Pos{Line: tk.Position.Line, Column: max(tk.Position.Column, 1)}
}

// ReadFile reads a configuration file, but no more of it than Parse accepts plus one byte:
// a larger file, or a device that never ends, is refused without being read whole.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxBytes+1))
}

// checkSize refuses a document over MaxBytes, pointing at the first byte past the limit.
func checkSize(src []byte) *limitError {
	if len(src) <= MaxBytes {
		return nil
	}
	head := src[:MaxBytes]
	line := 1 + bytes.Count(head, []byte{'\n'})
	col := MaxBytes - bytes.LastIndexByte(head, '\n')
	return &limitError{Pos{Line: line, Column: col}, fmt.Sprintf(
		"the document is over the limit of %d bytes (1 MiB): split it into several files", MaxBytes)}
}

// openLevel is one mapping or list open at some point of the token stream.
type openLevel struct {
	flow bool
	seq  bool
	pair bool // a key: value pair inside a flow list, which the parser makes a mapping
	// colon: a flow mapping's current item has had its ':'; another before the next ','
	// nests a mapping ({0:"":1} is {0: {"": 1}} to the parser; found by FuzzParse).
	colon bool
	col   int // block collections: the column their entries start at
	keys  int // block mappings: keys so far
	item  int // lists: the index of the current item
	// path is the length of the parser's path for nodes in this collection: the parent's
	// path plus this level's current key (or index).
	path int
}

// indexPathLen is what a list index adds to a path: "[7]" or "[123456]".
func indexPathLen(i int) int { return 2 + len(strconv.Itoa(i)) }

// scanTokens checks a document's shape on its tokens, before the parser sees them: token
// count, nesting depth, keys per block mapping, key path length and document count. Nesting
// of block collections is read from columns, the way YAML indentation works, plus the cases
// where the parser nests regardless; the estimate errs towards more nesting, never less, so
// the parser meets at most what was checked. (FuzzParse holds it to that.)
func scanTokens(tks token.Tokens) *limitError {
	_, _, err := scanShape(tks)
	return err
}

// scanShape is scanTokens, also returning the deepest nesting and the most keys of one block
// mapping it saw, so tests can check the estimates against the tree the parser builds.
func scanShape(tks token.Tokens) (deepest, widest int, _ *limitError) {
	s := &shapeScan{tks: tks, taken: -1}
	var (
		count   int
		props   int  // tags and anchors
		content bool // a token of the first document's content has been seen
		ended   bool // "..." closed the first document
		dirLine = -1 // the line of a %directive: its arguments are not content
	)
	for i, tk := range tks {
		switch tk.Type {
		case token.CommentType, token.SpaceType:
			continue
		case token.DirectiveType:
			dirLine = tk.Position.Line
			continue
		case token.DocumentHeaderType:
			if content || ended || count > 0 {
				return s.deepest, s.widest, &limitError{tokenPos(tk), "only one YAML document per file"}
			}
			count++
			continue
		case token.DocumentEndType:
			ended = true
			continue
		}
		if tk.Position != nil && tk.Position.Line == dirLine {
			continue
		}
		if ended {
			return s.deepest, s.widest, &limitError{tokenPos(tk), "only one YAML document per file"}
		}
		content = true
		count++
		if tk.Type == token.TagType || tk.Type == token.AnchorType {
			props++
			if props > MaxProperties {
				return s.deepest, s.widest, &limitError{tokenPos(tk), fmt.Sprintf(
					"the document has more than %d tags and anchors, the limit", MaxProperties)}
			}
		}
		if count > MaxTokens {
			return s.deepest, s.widest, &limitError{tokenPos(tk), fmt.Sprintf(
				"the document has more than %d tokens (keys, values and punctuation), the limit: split it into several files", MaxTokens)}
		}
		if err := s.token(i); err != nil {
			return s.deepest, s.widest, err
		}
	}
	return s.deepest, s.widest, nil
}

// shapeScan follows the collections open at each token.
type shapeScan struct {
	tks             token.Tokens
	stack           []openLevel
	deepest, widest int
	closedFlow      *token.Token // the last ']' or '}', which may close a key
	// pending: a tag, or an anchor the parser treats alike, ended its line and the node it
	// belongs to has not started yet. The parser makes that node the property's value one
	// level down, wherever it starts, even at the same or a lower column.
	pending bool
	// taken is the index of the token a tag took as its value, whatever the token's type.
	taken int
}

func (s *shapeScan) top() *openLevel {
	if len(s.stack) == 0 {
		return nil
	}
	return &s.stack[len(s.stack)-1]
}

// pathBelow is the path length of the collection under the innermost one.
func (s *shapeScan) pathBelow() int {
	if len(s.stack) < 2 {
		return 1 // "$"
	}
	return s.stack[len(s.stack)-2].path
}

func (s *shapeScan) push(tk *token.Token, l openLevel, seg int) *limitError {
	l.path = 1 + seg
	if top := s.top(); top != nil {
		l.path = top.path + seg
	}
	s.stack = append(s.stack, l)
	s.deepest = max(s.deepest, len(s.stack))
	if len(s.stack) > MaxDepth {
		return &limitError{tokenPos(tk), fmt.Sprintf("nesting is deeper than the limit of %d levels of mappings and lists", MaxDepth)}
	}
	return checkPath(tk, l.path)
}

// renamed gives the innermost collection a new current key or index.
func (s *shapeScan) renamed(tk *token.Token, seg int) *limitError {
	top := s.top()
	top.path = s.pathBelow() + seg
	return checkPath(tk, top.path)
}

func (s *shapeScan) token(i int) *limitError {
	tk := s.tks[i]
	top := s.top()
	inFlow := top != nil && top.flow
	nest := s.pending
	if i == s.taken {
		// A tag's value on its line: a scalar to the parser, even a ':' or a ','.
		s.pending = s.pending && isKey(s.tks, i)
		return nil
	}
	if marker := prevToken(s.tks, i); marker >= 0 && (s.tks[marker].Type == token.AnchorType || s.tks[marker].Type == token.AliasType) {
		// The parser takes the token after "&" or "*" as the name, whatever the lexer made
		// of it ("&[" names an anchor "["): it is never structure.
		switch {
		case s.tks[marker].Type == token.AliasType:
			s.pending = s.pending && isKey(s.tks, i)
		case !inFlow && endsLine(s.tks, i) && anchorTakesNext(s.tks, marker):
			s.pending = true
		}
		return nil
	}
	switch tk.Type {
	case token.TagType, token.AnchorType, token.AliasType:
		// Properties, and an alias's marker: the node they belong to comes next.
	case token.StringType, token.SingleQuoteType, token.DoubleQuoteType, token.IntegerType, token.FloatType,
		token.BoolType, token.NullType, token.InfinityType, token.NanType, token.MergeKeyType,
		token.BinaryIntegerType, token.OctetIntegerType, token.HexIntegerType:
		// A scalar ends the wait unless it is the first key of the mapping the property
		// holds.
		s.pending = s.pending && isKey(s.tks, i)
	default:
		s.pending = false
	}
	switch tk.Type {
	case token.MappingKeyType:
		// The parser would make the whole explicit key part of every path below it, and
		// configuration keys are names: refuse rather than measure.
		return &limitError{tokenPos(tk), `explicit keys ("? key") are not supported: write "key: value"`}
	case token.TagType:
		if j := nextToken(s.tks, i); j >= 0 && tagTakes(s.tks, i, j) {
			s.taken = j
		} else {
			s.pending = !inFlow && endsLine(s.tks, i)
		}
	case token.SequenceStartType:
		return s.push(tk, openLevel{flow: true, seq: true}, indexPathLen(0))
	case token.MappingStartType:
		return s.push(tk, openLevel{flow: true}, 0) // the path grows by each key as it comes
	case token.CollectEntryType:
		// A "," ends what opened in the innermost flow collection since its last item: a
		// pair, and lists opened by "-" (see below).
		for top := s.top(); top != nil && top.pair; top = s.top() {
			s.stack = s.stack[:len(s.stack)-1]
		}
		if top := s.top(); top != nil && top.flow {
			top.colon = false
			if top.seq {
				top.item++
				return s.renamed(tk, indexPathLen(top.item))
			}
		}
	case token.SequenceEndType, token.MappingEndType:
		// Close the innermost flow collection and a pair open in it; unbalanced brackets
		// are the parser's to report.
		for len(s.stack) > 0 {
			l := s.stack[len(s.stack)-1]
			s.stack = s.stack[:len(s.stack)-1]
			if l.flow && !l.pair {
				break
			}
		}
		s.closedFlow = tk
	case token.SequenceEntryType:
		if !inFlow {
			// An entry whose value starts on a later line gets that value even at its own
			// column, if it is not the next entry.
			s.pending = endsLine(s.tks, i) && nextTaken(s.tks, i, tokenPos(tk).Column)
			return s.entry(tk, nest)
		}
		// Inside a flow collection the parser opens a list at each "-", one level deeper
		// per "-", until the collection's next "," or its end: "[- - - a]" is four levels
		// deep ([[[[a]]]]), not one (found by FuzzParse). Counted like a pair, which ends
		// the same way.
		return s.push(tk, openLevel{flow: true, seq: true, pair: true}, indexPathLen(0))
	case token.MappingValueType:
		return s.key(i, nest)
	}
	return nil
}

// tagTakes reports whether the parser makes tks[j], the token after the tag at tks[i], that
// tag's value: a token on the same line that is not an anchor and, for a tag like !x, not a
// flow bracket or "-"; for !!int, !!str and the other scalar tags, a scalar.
func tagTakes(tks token.Tokens, i, j int) bool {
	tag, next := tks[i], tks[j]
	if next.Position.Line != tag.Position.Line || next.Type == token.AnchorType {
		return false
	}
	if !strings.HasPrefix(tag.Value, "!!") {
		switch next.Type {
		case token.MappingStartType, token.MappingEndType, token.SequenceStartType, token.SequenceEntryType:
			return false
		}
		return true
	}
	switch token.ReservedTagKeyword(tag.Value) {
	case token.IntegerTag, token.FloatTag, token.StringTag, token.BinaryTag, token.TimestampTag, token.BooleanTag, token.NullTag:
		switch next.Type {
		case token.AliasType, token.LiteralType, token.FoldedType, token.NullType, token.ImplicitNullType,
			token.BoolType, token.IntegerType, token.BinaryIntegerType, token.OctetIntegerType, token.HexIntegerType,
			token.FloatType, token.InfinityType, token.NanType, token.StringType, token.SingleQuoteType, token.DoubleQuoteType:
			return true
		}
	case token.MergeTag:
		return next.Type == token.MergeKeyType
	}
	return false
}

// nextToken is the index of the token after tks[i], comments aside, or -1.
func nextToken(tks token.Tokens, i int) int {
	for j := i + 1; j < len(tks); j++ {
		if tks[j].Type != token.CommentType {
			return j
		}
	}
	return -1
}

// prevToken is the index of the token before tks[i], comments aside, or -1.
func prevToken(tks token.Tokens, i int) int {
	for j := i - 1; j >= 0; j-- {
		if tks[j].Type != token.CommentType {
			return j
		}
	}
	return -1
}

// entry is a block list's "-" at its column; nest says a property above takes it.
func (s *shapeScan) entry(tk *token.Token, nest bool) *limitError {
	c := tokenPos(tk).Column
	if !nest {
		s.popBlock(c, false)
		if top := s.top(); top != nil && !top.flow && top.col == c && top.seq {
			top.item++ // the next item of the same list
			return s.renamed(tk, indexPathLen(top.item))
		}
	}
	return s.push(tk, openLevel{seq: true, col: c}, indexPathLen(0))
}

// key is the ':' at tks[i], which ends a key.
func (s *shapeScan) key(i int, nest bool) *limitError {
	key := keyToken(s.tks, i, s.closedFlow)
	seg := 4 // "." and quotes around at least one character
	if key.Type != token.SequenceEndType && key.Type != token.MappingEndType && key.Type != token.MappingValueType {
		seg = len(key.Value) + 3
	}
	if top := s.top(); top != nil && top.flow {
		if top.seq || top.colon { // "[a: b]": the parser makes the pair a mapping of its own
			s.widest = max(s.widest, 1)
			return s.push(key, openLevel{flow: true, pair: true}, seg)
		}
		top.colon = true
		return s.renamed(s.tks[i], seg)
	}
	c := keyColumn(s.tks, i, key)
	if !nest {
		s.popBlock(c, true)
		if top := s.top(); top != nil && !top.flow && top.col == c && !top.seq {
			top.keys++
			s.widest = max(s.widest, top.keys)
			if top.keys > MaxMappingKeys {
				return &limitError{tokenPos(key), fmt.Sprintf(
					"this mapping has more than %d keys, the limit for a block mapping: split it, or write it as a flow mapping {key: value, ...}", MaxMappingKeys)}
			}
			return s.renamed(key, seg)
		}
	}
	s.widest = max(s.widest, 1)
	return s.push(key, openLevel{col: c, keys: 1}, seg)
}

// popBlock closes the block collections that an entry at column c ends: those indented
// deeper, and for a key, a list at the same column (a list may sit under a key at that key's
// own indentation; the next key at that column ends it).
func (s *shapeScan) popBlock(c int, key bool) {
	for len(s.stack) > 0 {
		top := s.stack[len(s.stack)-1]
		if top.flow || top.col < c || (top.col == c && !(key && top.seq)) {
			return
		}
		s.stack = s.stack[:len(s.stack)-1]
	}
}

// endsLine reports whether tks[i] is the last token on its line, comments aside.
func endsLine(tks token.Tokens, i int) bool {
	line := tks[i].Position.Line
	for _, tk := range tks[i+1:] {
		if tk.Type == token.CommentType {
			continue
		}
		return tk.Position.Line != line
	}
	return true
}

// isKey reports whether the scalar at tks[i] is followed by ':', the next token on any line.
func isKey(tks token.Tokens, i int) bool {
	for _, tk := range tks[i+1:] {
		if tk.Type == token.CommentType {
			continue
		}
		// The parser takes a ":" as this scalar's key marker even on a later line ("0\n:").
		return tk.Type == token.MappingValueType
	}
	return false
}

// anchorTakesNext reports whether the parser gives the anchor at tks[i], which ends its line,
// the next node as its value even where columns say that node is a sibling. Right after
// "key:" it does not: a following key at the same column or a lower one leaves the anchor
// null. Right after "- " it does as the entry itself would (see nextTaken). After a tag, or
// on a line of its own, it always does.
func anchorTakesNext(tks token.Tokens, i int) bool {
	j := prevToken(tks, i)
	if j < 0 || tks[j].Position.Line != tks[i].Position.Line {
		return true
	}
	switch tks[j].Type {
	case token.MappingValueType:
		// Unless the ":" starts its line, its key on a line above ("0\n: &a\n0:"): then
		// the parser gives the anchor the next node as for an anchor on a line of its own.
		k := prevToken(tks, j)
		return k >= 0 && tks[k].Position.Line != tks[j].Position.Line
	case token.SequenceEntryType:
		return nextTaken(tks, i+1, tks[j].Position.Column)
	}
	return true
}

// nextTaken reports whether the node after tks[i] belongs to a list entry at column col that
// has no value on its own line: the parser takes it unless it is the next entry of the same
// list or starts further left.
func nextTaken(tks token.Tokens, i, col int) bool {
	for _, next := range tks[i+1:] {
		if next.Type == token.CommentType {
			continue
		}
		return next.Position.Column > col || (next.Position.Column == col && next.Type != token.SequenceEntryType)
	}
	return false
}

func checkPath(tk *token.Token, n int) *limitError {
	if n <= MaxKeyPath {
		return nil
	}
	return &limitError{tokenPos(tk), fmt.Sprintf(
		"the keys leading here are longer than the limit of %d bytes for a key path (like $.sites[0].endpoints[1].security): shorten long keys", MaxKeyPath)}
}

// keyToken is the token naming the key that the ':' at i follows: a scalar, a closed flow
// collection, or the ':' itself for an empty key.
func keyToken(tks token.Tokens, i int, closedFlow *token.Token) *token.Token {
	j := prevToken(tks, i)
	if j < 0 {
		return tks[i]
	}
	if m := prevToken(tks, j); m >= 0 && (tks[m].Type == token.AnchorType || tks[m].Type == token.AliasType) {
		return tks[j] // a name, whatever its type
	}
	switch tks[j].Type {
	case token.SequenceEndType, token.MappingEndType:
		if tks[j] == closedFlow {
			return tks[j]
		}
		return tks[i]
	case token.SequenceEntryType, token.MappingValueType, token.CollectEntryType,
		token.SequenceStartType, token.MappingStartType, token.DocumentHeaderType:
		return tks[i]
	}
	return tks[j]
}

// keyColumn is where the key of the ':' at i starts: before any anchor, alias marker or tag
// written on the same line, and at the opening bracket of a flow collection used as a key.
// The parser groups a block mapping's keys by that column.
func keyColumn(tks token.Tokens, i int, key *token.Token) int {
	if key == tks[i] {
		return tokenPos(key).Column
	}
	j := i - 1
	for tks[j] != key {
		j--
	}
	if h := prevToken(tks, j); h >= 0 && key.Type == token.StringType &&
		(tks[h].Type == token.LiteralType || tks[h].Type == token.FoldedType) {
		// The content of a block scalar: the parser places the node at its "|" or ">"
		// header, and an empty one's content sits at the start of the next line ("- >\n:"
		// is a mapping inside the list item to the parser; found by FuzzParse).
		j = h
	}
	named := false
	if m := prevToken(tks, j); m >= 0 && (tks[m].Type == token.AnchorType || tks[m].Type == token.AliasType) {
		// An anchor's or alias's name, whatever its type. The node starts at the "&" or
		// "*", even when the lexer put the name on a later line ("- *\n0:" is a mapping
		// inside the list item to the parser; found by FuzzParse).
		named = true
		j = m
	}
	if !named && (key.Type == token.SequenceEndType || key.Type == token.MappingEndType) {
		depth := 0
		for ; j >= 0; j-- {
			switch tks[j].Type {
			case token.SequenceEndType, token.MappingEndType:
				depth++
			case token.SequenceStartType, token.MappingStartType:
				depth--
			}
			if depth == 0 {
				break
			}
		}
		j = max(j, 0)
	}
	line := tks[j].Position.Line
	for j > 0 && tks[j-1].Position != nil && tks[j-1].Position.Line == line {
		prev := tks[j-1]
		switch {
		case prev.Type == token.TagType || prev.Type == token.AliasType:
			j--
		case prev.Type == token.AnchorType:
			j--
		case j > 1 && tks[j-2].Type == token.AnchorType && tks[j-2].Position.Line == line:
			j -= 2 // "&name" is two tokens: the marker and the name
		default:
			return tokenPos(tks[j]).Column
		}
	}
	return tokenPos(tks[j]).Column
}

// boundAlias is an alias tied, at parse time, to the node its anchor names. Binding once, in
// document order, means every walk over the tree resolves aliases the same way, and the
// checks below hold for all of them. Embedding keeps the alias's own position and text.
type boundAlias struct {
	*ast.AliasNode
	target ast.Node
}

// anchorInfo is one anchor met while binding: what it names and what that expands to.
type anchorInfo struct {
	value  ast.Node
	pos    Pos
	open   bool // its value is being walked: an alias to it now is a cycle
	nodes  int  // nodes its value expands to
	height int  // levels of nesting its value expands to
}

// binder walks a freshly parsed tree once, in document order, tying aliases to anchors and
// counting what an alias-resolving walk would meet, without making that walk: an anchor's
// expansion is counted once and reused at every alias.
type binder struct {
	anchors map[string]*anchorInfo
	nodes   int
	err     *limitError
}

// bindAliases binds every alias under root, or returns the first limit it breaks. Aliases to
// no anchor stay unbound: decoding reports them where they are used.
func bindAliases(root ast.Node) (ast.Node, *limitError) {
	b := &binder{anchors: map[string]*anchorInfo{}}
	root, _ = b.walk(root, 0)
	return root, b.err
}

func (b *binder) fail(n ast.Node, format string, args ...any) {
	if b.err == nil {
		b.err = &limitError{PosOf(n), fmt.Sprintf(format, args...)}
	}
}

func (b *binder) count(n ast.Node, k int) {
	b.nodes += k
	if b.nodes > MaxNodes {
		b.fail(n, "aliases expand the document to more than %d nodes, the limit: use fewer aliases, or aliases of smaller values", MaxNodes)
	}
}

// walk visits n, which sits inside depth mappings and lists. It returns the node to put in
// n's place (a bound alias for an alias) and the nesting n expands to.
func (b *binder) walk(n ast.Node, depth int) (ast.Node, int) {
	if b.err != nil || n == nil {
		return n, 0
	}
	b.count(n, 1)
	switch t := n.(type) {
	case *ast.AliasNode:
		return b.alias(t, depth)
	case *ast.AnchorNode:
		info := &anchorInfo{pos: PosOf(t), open: true}
		if t.Name != nil && t.Name.GetToken() != nil {
			b.anchors[t.Name.GetToken().Value] = info
		}
		before := b.nodes
		var h int
		t.Value, h = b.walk(t.Value, depth)
		*info = anchorInfo{value: t.Value, pos: info.pos, nodes: b.nodes - before, height: h}
		return t, h
	case *ast.TagNode:
		var h int
		t.Value, h = b.walk(t.Value, depth)
		return t, h
	case *ast.MappingKeyNode:
		var h int
		t.Value, h = b.walk(t.Value, depth)
		return t, h
	case *ast.MappingNode:
		if !b.enter(t, depth) {
			return t, 0
		}
		h := 0
		for _, mv := range t.Values {
			b.count(mv, 1)
			h = max(h, b.pair(mv, depth+1))
		}
		return t, h + 1
	case *ast.MappingValueNode:
		// A lone pair stands for a one-key mapping.
		if !b.enter(t, depth) {
			return t, 0
		}
		return t, b.pair(t, depth+1) + 1
	case *ast.SequenceNode:
		if !b.enter(t, depth) {
			return t, 0
		}
		h := 0
		for i, v := range t.Values {
			var vh int
			t.Values[i], vh = b.walk(v, depth+1)
			if i < len(t.Entries) && t.Entries[i] != nil && t.Entries[i].Value == v {
				t.Entries[i].Value = t.Values[i]
			}
			h = max(h, vh)
		}
		return t, h + 1
	}
	return n, 0
}

func (b *binder) enter(n ast.Node, depth int) bool {
	if depth+1 > MaxDepth {
		b.fail(n, "nesting is deeper than the limit of %d levels of mappings and lists", MaxDepth)
		return false
	}
	return true
}

func (b *binder) pair(mv *ast.MappingValueNode, depth int) int {
	k, kh := b.walk(mv.Key, depth)
	if key, ok := k.(ast.MapKeyNode); ok {
		mv.Key = key
	}
	var vh int
	mv.Value, vh = b.walk(mv.Value, depth)
	return max(kh, vh)
}

func (b *binder) alias(a *ast.AliasNode, depth int) (ast.Node, int) {
	if a.Value == nil || a.Value.GetToken() == nil {
		return a, 0
	}
	name := a.Value.GetToken().Value
	info, ok := b.anchors[name]
	if !ok {
		return a, 0
	}
	if info.open {
		b.fail(a, "alias *%s is inside the value of its own anchor &%s (line %d): an alias cycle would never end", name, name, info.pos.Line)
		return a, 0
	}
	b.count(a, info.nodes)
	if depth+info.height > MaxDepth {
		b.fail(a, "alias *%s nests the document deeper than the limit of %d levels of mappings and lists", name, MaxDepth)
	}
	return &boundAlias{AliasNode: a, target: info.value}, info.height
}
