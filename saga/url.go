package saga

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	goyaml "github.com/goccy/go-yaml/ast"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// An http action's url is the one template whose text decides where pushbackd connects, so
// it is compiled with rules of its own:
//
//   - The origin (scheme, user info, host, port) is written out in the url, up to the "/"
//     (or "?") that ends it, or comes from one leading `${ }` whose expression reads only
//     settings: the base URL an operator configured, optionally with a base path. Checked
//     at load, so a saga that would let a sender choose the host never runs.
//   - Every other `${ }` is escaped for where it lands: in the path as one segment
//     (everything but letters, digits and -._~ percent-encoded, and a segment of only "."
//     or ".." encoded so it cannot climb), in the query as a key or value (url.QueryEscape). A `${ }` in the fragment is refused.
//   - `${ urlpath(x) }` and `${ urlquery(x) }` escape for themselves and are inserted as
//     they return: urlpath keeps x's slashes (each segment escaped, "." and ".." refused),
//     for the deliberate case of a sub-path.
//
// Where a `${ }` lands is known at load from the literal text, except after a settings
// origin, whose value may hold a path or a query: render decides those from the text
// built so far, which only trusted text (literals and the origin) can move from the path
// into the query, since every inserted value is escaped.

// urlPlace is the part of a URL that text appended at some point lands in.
type urlPlace uint8

const (
	placeOrigin   urlPlace = iota // scheme, user info, host, port
	placePath                     // after the first "/" following "://"
	placeQuery                    // after "?"
	placeFragment                 // after "#"
	placeUnknown                  // after a settings origin, at load: its value decides
)

// urlPlaceAfter says where text appended to prefix lands. Scanning the whole prefix each
// time is simplest and costs nothing next to the request itself.
func urlPlaceAfter(prefix string) urlPlace {
	switch {
	case strings.Contains(prefix, "#"):
		return placeFragment
	case strings.Contains(prefix, "?"):
		return placeQuery
	}
	i := strings.Index(prefix, "://")
	if i < 0 || !strings.Contains(prefix[i+3:], "/") {
		return placeOrigin
	}
	return placePath
}

// Functions that escape for themselves; a `${ }` whose outermost call is one of them is
// inserted as it returns.
const (
	fnURLPath  = "urlpath"
	fnURLQuery = "urlquery"
)

// urlTemplate is a compiled url with its escaping decided per part.
type urlTemplate struct {
	parts []urlPart
}

type urlPart struct {
	lit  string
	prog *program // nil for literal text
	// origin: the leading `${ }` of settings, inserted as it is.
	origin bool
	// escapes: fnURLPath or fnURLQuery when the expression is a call to it, "" otherwise.
	escapes string
	column  int // template column of the expression, for render errors
}

// urlTemplate checks a templated url against the rules above and compiles its parts. src
// is the url's text, t the template compiled from it (nil if it did not compile: the
// template's own errors are reported already).
func (c *compiler) urlTemplate(src string, t *template, pos yamlconf.Pos, label string) *urlTemplate {
	segs, err := parseTemplate(src)
	if err != nil || t == nil || len(segs) != len(t.parts) {
		return nil
	}
	label += ": " // label names the url already, e.g. `step "x": http.url`
	u := &urlTemplate{parts: make([]urlPart, len(segs))}
	place, prefix := placeOrigin, ""
	ok := true
	for i, seg := range segs {
		p := &u.parts[i]
		if !seg.isExpr {
			p.lit = seg.lit
			if i == 0 && !hasHTTPScheme(seg.lit) {
				c.errorf(pos, "%sa url with ${ } must start with http:// or https:// and the host, or with one ${ } of settings that holds the base URL, as in \"${ settings.base }/loans/${ body.id }\" (template column 1)", label)
				return nil
			}
			if place == placeUnknown {
				// The origin's value decides, unless this text starts a query or fragment:
				// whatever the origin holds, what follows "?" or "#" is not in the path.
				if !strings.ContainsAny(seg.lit, "?#") {
					continue
				}
				prefix = "http://origin/"
			}
			prefix += seg.lit
			place = urlPlaceAfter(prefix)
			continue
		}
		p.prog, p.column = t.parts[i].prog, seg.offset+1
		shown := "${ " + strings.TrimSpace(seg.expr) + " }"
		tree, perr := parser.Parse(seg.expr)
		if perr != nil {
			return nil // compileExpr reported it
		}
		p.escapes = escapingCall(tree.Node)
		if i == 0 {
			if reads := untrustedReads(tree.Node); len(reads) > 0 {
				c.errorf(pos, "%sthe scheme and host come from %s, which reads %s: sender data may not choose where pushbackd connects; put the base URL in settings and start the url with it, as in \"${ settings.base }/loans/${ body.id }\" (template column %d)",
					label, shown, strings.Join(reads, " and "), p.column)
				return nil
			}
			p.origin, place = true, placeUnknown
			continue
		}
		switch place {
		case placeOrigin:
			c.errorf(pos, "%s%s would be part of the scheme, user info, host or port: sender data may not choose where pushbackd connects; write the origin out up to its first / (https://api.example.com/...), or start the url with one ${ } of settings holding the base URL (template column %d)", label, shown, p.column)
			ok = false
		case placeFragment:
			c.errorf(pos, "%s%s is in the fragment (after #), which is never sent: remove it (template column %d)", label, shown, p.column)
			ok = false
		case placeQuery:
			if p.escapes == fnURLPath {
				c.errorf(pos, "%s%s: urlpath() leaves & and = as they are, which would add query parameters: use urlquery() in the query (template column %d)", label, shown, p.column)
				ok = false
			}
		}
	}
	if !ok {
		return nil
	}
	return u
}

func hasHTTPScheme(s string) bool {
	s = strings.ToLower(s)
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// escapingCall names the url function an expression's outermost node calls, if any.
func escapingCall(n ast.Node) string {
	call, ok := n.(*ast.CallNode)
	if !ok {
		return ""
	}
	if id, ok := call.Callee.(*ast.IdentifierNode); ok && (id.Value == fnURLPath || id.Value == fnURLQuery) {
		return id.Value
	}
	return ""
}

// untrustedReads lists what an expression reads besides settings: the environment's other
// names (sender data, downstream answers, vars computed from either) and secret(). A
// let-variable that shadows one of those names counts too: refusing a clear expression
// that happens to reuse a name is cheaper than reasoning about scopes.
func untrustedReads(n ast.Node) []string {
	names := envNames()
	var w readsWalker
	w.names = names
	ast.Walk(&n, &w)
	return w.reads
}

// envNames are the names expressions see, from Env's expr tags, settings excepted.
func envNames() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeFor[Env]()
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("expr"); tag != "" && tag != "settings" {
			out[tag] = true
		}
	}
	return out
}

type readsWalker struct {
	names map[string]bool
	reads []string
}

func (w *readsWalker) Visit(node *ast.Node) {
	read := ""
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if w.names[n.Value] || n.Value == "$env" {
			read = n.Value
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "secret" {
			read = "secret()"
		}
	}
	if read != "" && !slices.Contains(w.reads, read) {
		w.reads = append(w.reads, read)
	}
}

// render builds the url for one run.
func (u *urlTemplate) render(ev *evaluator) (string, error) {
	var b strings.Builder
	place := placeOrigin
	for _, p := range u.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			place = urlPlaceAfter(b.String())
			continue
		}
		v, err := ev.eval(p.prog)
		if err != nil {
			return "", err
		}
		s := stringify(v)
		if p.origin {
			if !strings.Contains(s, "://") {
				// Most likely a setting the partner lacks: say so, rather than let the text
				// after it be taken for a host.
				return "", fmt.Errorf("${ %s } gave no base URL (nothing of the form scheme://host): check that the setting exists for this partner or site", strings.TrimSpace(p.prog.src))
			}
			b.WriteString(s)
			place = urlPlaceAfter(b.String())
			continue
		}
		shown := "${ " + strings.TrimSpace(p.prog.src) + " }"
		switch place {
		case placeOrigin:
			// Only after a settings origin without a path: the value would run on into its
			// host or port.
			return "", fmt.Errorf("%s would be part of the host: the base URL before it has no / after the host; end the base URL with / or write / before %s (template column %d)", shown, shown, p.column)
		case placeFragment:
			return "", fmt.Errorf("%s is in the fragment (after #), which is never sent: remove it (template column %d)", shown, p.column)
		case placePath:
			if p.escapes == "" {
				s = escapeSegment(s)
			}
			// urlquery leaves dots alone; no escaping makes a lone dot segment safe.
			s = encodeDotSegment(s)
		case placeQuery:
			switch p.escapes {
			case "":
				s = url.QueryEscape(s)
			case fnURLPath:
				return "", fmt.Errorf("%s: urlpath() leaves & and = as they are, which would add query parameters: use urlquery() in the query (template column %d)", shown, p.column)
			}
		}
		b.WriteString(s)
	}
	out := b.String()
	if seg := dotSegment(out); seg != "" {
		return "", fmt.Errorf("the url's path has a %q segment, which would climb the path: write the path out without it", seg)
	}
	return out, nil
}

// escapeSegment percent-encodes everything in s but RFC 3986's unreserved characters.
// url.PathEscape would leave "@", ":", "=", "&" and the like, which are legal in a path but
// mean something to the next parser that splits a URL or a route; data needs none of them.
func escapeSegment(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") // QueryEscape writes a space as "+" and "+" as %2B
}

// encodeDotSegment percent-encodes a value that is only "." or "..", which a server (or a
// proxy before it) would otherwise resolve, climbing out of the path the saga meant.
func encodeDotSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return s
}

// dotSegment returns a "." or ".." segment of u's path, or "". The escaping above never
// makes one; this catches literal text next to urlpath's slashes ("/a/." + "/b").
func dotSegment(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	rest := u[i+3:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return ""
	}
	path := rest[j:]
	if k := strings.IndexAny(path, "?#"); k >= 0 {
		path = path[:k]
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return seg
		}
	}
	return ""
}

var errDotSegment = errors.New(`a "." or ".." segment would climb the path`)

// urlPathFunc escapes each "/"-separated segment of its argument and keeps the slashes;
// a "." or ".." segment is an error, not something to encode: the author asked for a path.
func urlPathFunc(params ...any) (any, error) {
	segs := strings.Split(stringify(params[0]), "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("urlpath: %w", errDotSegment)
		}
		segs[i] = escapeSegment(seg)
	}
	return strings.Join(segs, "/"), nil
}

func urlQueryFunc(params ...any) (any, error) {
	return url.QueryEscape(stringify(params[0])), nil
}

// checkHostHeader applies the url rule to a Host header: it decides which virtual host the
// request reaches, so sender data may not choose it either. It reports whether the
// headers' names are known at load; headers built whole by one expression are not, and
// may not set Host at all (render refuses it).
func (c *compiler) checkHostHeader(headers *value, n goyaml.Node, label string) bool {
	if headers == nil || headers.kind != vMap {
		return headers == nil || headers.kind != vTemplate
	}
	for i, k := range headers.keys {
		v := headers.vals[i]
		if !strings.EqualFold(k, "host") || v.kind != vTemplate {
			continue
		}
		for _, p := range v.t.parts {
			if p.prog == nil {
				continue
			}
			tree, err := parser.Parse(p.prog.src)
			if err != nil {
				continue
			}
			if reads := untrustedReads(tree.Node); len(reads) > 0 {
				c.d.Errorf(n, "%s.%s: the Host header comes from ${ %s }, which reads %s: sender data may not choose the host pushbackd calls; put it in settings",
					label, k, strings.TrimSpace(p.prog.src), strings.Join(reads, " and "))
			}
		}
	}
	return true
}
