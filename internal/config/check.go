package config

import (
	"fmt"
	"math"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// The check walks the YAML syntax tree along the Go types of the config
// before anything is decoded. The library's decoder stops at its first
// problem and visits map keys in random order; the check reports every
// unknown key and wrong type in file order, each at its own position. It
// also records where each key path is written, so that validation of the
// decoded values can point at the right line.
//
// It is stricter than the decoder where the decoder guesses: "2" is not an
// integer, 2.7 is not 2, 0x1F is not the string "0x1F", and 0 is not "use the
// default" (see leaf).

// position is a 1-based line and column, as the YAML library counts them.
type position struct{ Line, Column int }

// aliasBudget bounds the nodes visited through aliases, so that aliases
// nested into one another (a "billion laughs" document) fail fast instead of
// expanding. Configs that share health checks or pools by alias stay far
// below it.
const aliasBudget = 10_000

type checker struct {
	file string
	errs Errors
	// at is where each key path is written: its key, or the start of a list
	// item. Only for nodes reached directly, not through an alias.
	at map[string]position
	// pathAt maps token positions back to key paths, for the errors the
	// YAML library reports with a token only.
	pathAt map[position]string
	// parent links every key path made by key and item to its parent, so a
	// problem with a key that is not written can point at its parent.
	parent  map[string]string
	anchors map[string]ast.Node
	budget  int
	// aliasAt and aliasPath are the alias written in the file that the
	// check is expanding, where a document that expands too far is reported.
	aliasAt   position
	aliasPath string
	// pools is the pool names in file order.
	pools    []string
	poolSeen map[string]bool
}

func newChecker(file string) *checker {
	return &checker{
		file:     file,
		at:       map[string]position{},
		pathAt:   map[position]string{},
		parent:   map[string]string{},
		anchors:  map[string]ast.Node{},
		budget:   aliasBudget,
		poolSeen: map[string]bool{},
	}
}

var (
	durationType   = reflect.TypeFor[Duration]()
	byteSizeType   = reflect.TypeFor[ByteSize]()
	targetSpecType = reflect.TypeFor[TargetSpec]()
	poolsType      = reflect.TypeFor[map[string]*Pool]()
)

func (c *checker) errorf(at position, path, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: at.Line, Column: at.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// key is the path of key k under parent. Keys other than plain words (pool
// names may be anything) are quoted so the path stays unambiguous.
func (c *checker) key(parent, k string) string {
	if !plainKey(k) {
		k = strconv.Quote(k)
	}
	p := k
	if parent != "" {
		p = parent + "." + k
	}
	c.parent[p] = parent
	return p
}

// item is the path of list item i under parent.
func (c *checker) item(parent string, i int) string {
	p := parent + "[" + strconv.Itoa(i) + "]"
	c.parent[p] = parent
	return p
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// where is the position of path, or of its nearest written ancestor when
// the key itself is not in the file (a default, or a value from an alias).
func (c *checker) where(path string) position {
	for {
		if p, ok := c.at[path]; ok {
			return p
		}
		parent, ok := c.parent[path]
		if !ok || path == "" {
			return c.at[""]
		}
		path = parent
	}
}

// pathsOn returns a lookup of the key path written last at or before a
// column of a line: the key whose value holds that column.
func (c *checker) pathsOn() func(line, col int) string {
	type written struct {
		col  int
		path string
	}
	byLine := map[int][]written{}
	for p, s := range c.pathAt {
		byLine[p.Line] = append(byLine[p.Line], written{p.Column, s})
	}
	return func(line, col int) string {
		best, path := 0, ""
		for _, w := range byLine[line] {
			if w.col <= col && w.col > best {
				best, path = w.col, w.path
			}
		}
		return path
	}
}

// mark records that path is written at p.
func (c *checker) mark(path string, p position, direct bool) {
	if !direct || p.Line == 0 {
		return
	}
	if _, ok := c.at[path]; !ok {
		c.at[path] = p
	}
	if _, ok := c.pathAt[p]; !ok {
		c.pathAt[p] = path
	}
}

func tokenPos(n ast.Node) position {
	if n == nil {
		return position{}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

// startPos is where a node starts as a reader sees it. A block mapping's own
// token is the colon after its first key, so it starts at that key instead.
func startPos(n ast.Node) position {
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 {
		return tokenPos(m.Values[0].Key)
	}
	if mv, ok := n.(*ast.MappingValueNode); ok {
		return tokenPos(mv.Key)
	}
	return tokenPos(n)
}

// value checks node n against Go type t. path names it; at is where it is
// written; direct is false for nodes reached through an alias, whose
// positions belong to the anchor's place in the file. optional is true when
// the Go field is a pointer, whose nil already means "not set".
func (c *checker) value(n ast.Node, t reflect.Type, path string, at position, direct, optional bool) {
	if n == nil || c.budget <= 0 {
		return
	}
	if !direct && !c.spend(1) {
		return
	}
	if direct {
		c.mark(path, tokenPos(n), true)
		c.mark(path, startPos(n), true)
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		c.value(v.Value, t, path, at, direct, optional)
		// Registered after its value is walked: an alias can only refer to a
		// finished anchor, so aliases cannot loop.
		if name := anchorName(v.Name); name != "" {
			c.anchors[name] = v.Value
		}
		return
	case *ast.AliasNode:
		name := anchorName(v.Value)
		target, ok := c.anchors[name]
		if !ok || target == nil {
			c.errorf(at, path, "alias *%s refers to no anchor &%s before it", name, name)
			return
		}
		if direct {
			c.aliasAt, c.aliasPath = at, path
		}
		c.value(target, t, path, at, false, optional)
		return
	case *ast.TagNode:
		c.errorf(at, path, "YAML tags such as %s are not supported; quote the value to make it a string", tokenText(v))
		return
	}

	if t.Kind() == reflect.Pointer {
		c.value(n, t.Elem(), path, at, direct, true)
		return
	}
	if _, null := n.(*ast.NullNode); null {
		return // not set: the default applies
	}
	switch {
	case t == targetSpecType:
		if isMapping(n) {
			c.structure(n, t, path, at, direct)
			return
		}
		c.leaf(n, t, path, at, optional)
		return
	case t == durationType || t == byteSizeType:
		c.leaf(n, t, path, at, optional)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		c.structure(n, t, path, at, direct)
	case reflect.Map:
		c.mapping(n, t, path, at, direct)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			c.errorf(at, path, "want a list, got %s", describeNode(n))
			c.collectAnchors(n)
			return
		}
		for i, item := range seq.Values {
			p := c.item(path, i)
			itemAt := startPos(item)
			if !direct {
				itemAt = at
			}
			c.mark(p, itemAt, direct)
			c.value(item, t.Elem(), p, itemAt, direct, false)
		}
	default:
		c.leaf(n, t, path, at, optional)
	}
}

// spend takes n nodes reached through aliases from the budget; false once
// it is used up, which is reported once.
func (c *checker) spend(n int) bool {
	if c.budget <= 0 {
		return false
	}
	if c.budget -= n; c.budget <= 0 {
		c.errorf(c.aliasAt, c.aliasPath, "aliases expand to more than %d nodes", aliasBudget)
		return false
	}
	return true
}

// entry is one key of a mapping, with merge keys (<<) already followed.
type entry struct {
	key    ast.MapKeyNode
	value  ast.Node
	direct bool
	// merge is the << the entry came through; nil for a key written out.
	merge ast.MapKeyNode
}

// entries lists the keys of mapping n in file order; the keys of a merged
// mapping come where its << is.
func (c *checker) entries(n ast.Node, path string, at position, direct bool, depth int) ([]entry, bool) {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		return nil, false
	}
	var out []entry
	for _, mv := range values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if !mv.Key.IsMergeKey() {
			out = append(out, entry{mv.Key, mv.Value, direct, nil})
			continue
		}
		if direct {
			c.aliasAt, c.aliasPath = tokenPos(mv.Key), path
		}
		for _, src := range c.mergeSources(mv.Value, path, at) {
			if depth > 10 {
				c.errorf(at, path, "merge keys (<<) nest too deeply")
				break
			}
			sub, ok := c.entries(src, path, at, false, depth+1)
			if !ok {
				c.errorf(tokenPos(mv.Key), path, "<< wants a mapping or a list of mappings, got %s", describeNode(src))
				continue
			}
			if !c.spend(len(sub)) {
				return out, true
			}
			for i := range sub {
				sub[i].merge = mv.Key
			}
			out = append(out, sub...)
		}
	}
	c.duplicates(out, path)
	return out, true
}

// duplicates refuses keys set twice, except a key written out after the
// << that merged it: the usual override, where YAML and the library agree.
// Elsewhere the library keeps the last value, while YAML refuses a repeated
// key and keeps the first of two merged ones.
func (c *checker) duplicates(entries []entry, path string) {
	seen := map[string]entry{}
	for _, e := range entries {
		k, _ := keyString(e.key)
		prev, dup := seen[k]
		seen[k] = e
		if !dup || prev.merge != nil && e.merge == nil {
			continue
		}
		p := c.key(path, k)
		switch {
		case e.merge == nil:
			first := tokenPos(prev.key)
			c.errorf(tokenPos(e.key), p, "duplicate key (first at %d:%d)", first.Line, first.Column)
		case prev.merge == nil:
			c.errorf(tokenPos(e.merge), p, "set again by a << after it; put << first, so keys written out override it")
		default:
			c.errorf(tokenPos(e.merge), p, "set by two merged mappings; set it once")
		}
	}
}

// mergeSources resolves the value of a merge key to the mappings it names.
func (c *checker) mergeSources(n ast.Node, path string, at position) []ast.Node {
	var out []ast.Node
	var add func(n ast.Node, inList bool)
	add = func(n ast.Node, inList bool) {
		switch v := n.(type) {
		case *ast.AliasNode:
			name := anchorName(v.Value)
			target, ok := c.anchors[name]
			if !ok || target == nil {
				c.errorf(tokenPos(v), path, "alias *%s refers to no anchor &%s before it", name, name)
				return
			}
			add(target, inList)
		case *ast.AnchorNode:
			add(v.Value, inList)
			if name := anchorName(v.Name); name != "" {
				c.anchors[name] = v.Value
			}
		case *ast.SequenceNode:
			if inList {
				out = append(out, n) // reported by the caller
				return
			}
			for _, item := range v.Values {
				add(item, true)
			}
		default:
			out = append(out, n)
		}
	}
	add(n, false)
	return out
}

// structure checks a mapping against the yaml tags of struct type t.
func (c *checker) structure(n ast.Node, t reflect.Type, path string, at position, direct bool) {
	entries, ok := c.entries(n, path, at, direct, 0)
	if !ok {
		c.errorf(at, path, "want a mapping, got %s", describeNode(n))
		c.collectAnchors(n)
		return
	}
	fields, names := yamlFields(t)
	for _, e := range entries {
		k, isString := keyString(e.key)
		p := c.key(path, k)
		keyAt := tokenPos(e.key)
		c.mark(p, keyAt, e.direct)
		ft, known := fields[k]
		if !known || !isString {
			hint := suggest(k, names)
			if net.ParseIP(k) != nil || strings.HasPrefix(k, "[") {
				// Inside a flow mapping, YAML reads 127.0.0.1:8101 as a key
				// and a value; quoting keeps it one string.
				hint = fmt.Sprintf(" (an address inside { } must be quoted: \"%s:...\")", k)
			}
			c.errorf(keyAt, p, "unknown key%s", hint)
			c.collectAnchors(e.value)
			continue
		}
		c.value(e.value, ft, p, keyAt, e.direct, false)
	}
}

// mapping checks a mapping with names as keys: the pools.
func (c *checker) mapping(n ast.Node, t reflect.Type, path string, at position, direct bool) {
	entries, ok := c.entries(n, path, at, direct, 0)
	if !ok {
		c.errorf(at, path, "want a mapping, got %s", describeNode(n))
		c.collectAnchors(n)
		return
	}
	for _, e := range entries {
		k, isString := keyString(e.key)
		p := c.key(path, k)
		keyAt := tokenPos(e.key)
		c.mark(p, keyAt, e.direct)
		if !isString {
			// The decoder would turn 0x10 into "16"; a name must read as written.
			c.errorf(keyAt, p, "a name must be a string; quote it")
			c.collectAnchors(e.value)
			continue
		}
		if t == poolsType && !c.poolSeen[k] {
			c.poolSeen[k] = true
			c.pools = append(c.pools, k)
		}
		c.value(e.value, t.Elem(), p, keyAt, e.direct, false)
	}
}

// leaf checks a scalar against a Go type the config stores it in.
func (c *checker) leaf(n ast.Node, t reflect.Type, path string, at position, optional bool) {
	v, ok := scalarValue(n)
	if !ok {
		c.errorf(at, path, "want %s, got %s", describeType(t), describeNode(n))
		c.collectAnchors(n)
		return
	}
	// Zero means "use the default" for the non-pointer numbers and durations
	// (all of which have defaults), so a zero written out would silently
	// become something else; refuse it. Pointer fields keep their zero.
	positive := func(zero, negative bool, got string) {
		switch {
		case optional:
		case negative:
			c.errorf(at, path, "must not be negative, got %s", got)
		case zero:
			c.errorf(at, path, "must be greater than 0 (leave the key out for the default)")
		}
	}
	switch {
	case t == durationType:
		d, err := parseDuration(v)
		if err != nil {
			c.errorf(at, path, "%v", err)
			return
		}
		positive(d == 0, d < 0, d.String())
	case t == byteSizeType:
		s, err := parseByteSize(v)
		if err != nil {
			c.errorf(at, path, "%v", err)
			return
		}
		positive(s == 0, false, "")
	case t == targetSpecType:
		if _, ok := v.(string); !ok {
			c.errorf(at, path, `want "host:port" or {address, weight}, got %s`, describeScalar(n, v))
		}
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok && !keepsText(v, tokenText(n)) {
			c.errorf(at, path, "want a string, got %s; quote it to keep it as written", describeScalar(n, v))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.errorf(at, path, "want true or false, got %s", describeScalar(n, v))
		}
	case t.Kind() == reflect.Int:
		var i int64
		switch v := v.(type) {
		case int64:
			i = v
		case uint64:
			if v > math.MaxInt {
				c.errorf(at, path, "%d is too large", v)
				return
			}
			i = int64(v)
		default:
			c.errorf(at, path, "want an integer, got %s", describeScalar(n, v))
			return
		}
		if i > math.MaxInt || i < math.MinInt {
			c.errorf(at, path, "%d is too large", i)
			return
		}
		positive(i == 0, i < 0, strconv.FormatInt(i, 10))
	default:
		// Only reached if a field of a type this check does not know is
		// added to the config; the decoder still checks it.
	}
}

// collectAnchors records the anchors under a node the check does not walk
// (an unknown key, a wrong type), so that aliases to them do not add a
// second, misleading error.
func (c *checker) collectAnchors(n ast.Node) {
	if n == nil {
		return
	}
	ast.Walk(anchorVisitor(c.anchors), n)
}

type anchorVisitor map[string]ast.Node

func (a anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if v, ok := n.(*ast.AnchorNode); ok {
		if name := anchorName(v.Name); name != "" {
			a[name] = v.Value
		}
	}
	return a
}

func anchorName(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return ""
	}
	return n.GetToken().Value
}

func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

// scalarValue is the Go value of a scalar node as the YAML library decodes
// it; ok is false for mappings, lists and other non-scalars.
func scalarValue(n ast.Node) (v any, ok bool) {
	switch n := n.(type) {
	case *ast.NullNode:
		return nil, true
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		if n.Value == nil {
			return "", true
		}
		return n.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.(ast.ScalarNode).GetValue(), true
	}
	return nil, false
}

func tokenText(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return ""
	}
	return n.GetToken().Value
}

// keepsText reports whether the decoder's string for a non-string scalar is
// the text as written: "200" is, "0x1F" (31) and "1e3" (1000) are not.
func keepsText(v any, text string) bool {
	var s string
	switch v := v.(type) {
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	case float64:
		s = fmt.Sprint(v)
	case bool:
		s = strconv.FormatBool(v)
	default:
		return false
	}
	return s == text
}

// keyString is a mapping key as text; isString is false for keys that are
// not plain strings (numbers, ? complex keys).
func keyString(k ast.MapKeyNode) (s string, isString bool) {
	if sn, ok := k.(*ast.StringNode); ok {
		return sn.Value, true
	}
	return tokenText(k), false
}

func describeNode(n ast.Node) string {
	if isMapping(n) {
		return "a mapping"
	}
	if _, ok := n.(*ast.SequenceNode); ok {
		return "a list"
	}
	if v, ok := scalarValue(n); ok {
		return describeScalar(n, v)
	}
	return "a " + n.Type().YAMLName()
}

// describeScalar names a scalar as written: "the integer 0x1F", not 31.
func describeScalar(n ast.Node, v any) string {
	text := tokenText(n)
	switch v.(type) {
	case int64, uint64:
		return "the integer " + text
	case float64:
		return "the number " + text
	case bool:
		return "the boolean " + text
	}
	return describeValue(v)
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 2s"
	case t == byteSizeType:
		return "a size such as 64KiB"
	case t == targetSpecType:
		return `"host:port" or {address, weight}`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	}
	return "a mapping"
}

// yamlFields maps the yaml keys of struct type t to field types; names is
// the keys in field order, for suggestions.
func yamlFields(t reflect.Type) (fields map[string]reflect.Type, names []string) {
	fields = map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	return fields, names
}

// suggest names the closest valid key, or lists them all.
func suggest(k string, names []string) string {
	best, bestD := "", 3 // more than two edits away is no longer a typo
	for _, n := range names {
		if d := editDistance(strings.ToLower(k), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	return " (want one of: " + strings.Join(sorted, ", ") + ")"
}

func editDistance(a, b string) int {
	ar, br := []rune(a), []rune(b)
	if len(ar) > 64 || len(br) > 64 {
		return math.MaxInt // not a typo; and bounds the work
	}
	prev := make([]int, len(br)+1)
	cur := make([]int, len(br)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ar); i++ {
		cur[0] = i
		for j := 1; j <= len(br); j++ {
			cost := 1
			if ar[i-1] == br[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(br)]
}
