package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// LoadLB reads and parses the load balancer config at path; see ParseLB.
func LoadLB(path string) (*LB, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read load balancer config: %w", err)
	}
	return ParseLB(path, data)
}

// ParseLB parses a load balancer config (docs/lb.md): it expands ${VAR}
// from the environment, decodes strictly, fills defaults and validates. path
// is used in errors only. Problems come back as Errors, one per line, each
// naming file:line:col and the key path. On success every pointer in the
// config is set and every zero value has its default.
func ParseLB(path string, data []byte) (*LB, error) {
	expanded, envErrs := expandEnv(path, data, os.LookupEnv)
	c := newChecker(path)

	file, err := parseYAML(expanded)
	if err != nil {
		return nil, append(envErrs, c.libraryError(err)).sorted()
	}
	root, docErr := c.body(file)
	if docErr != nil {
		return nil, append(envErrs, docErr).sorted()
	}
	// Keys missing at the top are reported at the start of the document.
	c.at[""] = position{1, 1}
	if p := startPos(root); p.Line > 0 {
		c.at[""] = p
	}
	if root != nil {
		c.value(root, reflect.TypeFor[LB](), "", c.at[""], true, false)
	}
	if len(envErrs) > 0 {
		// Unset references were left as written, so the tree has them where
		// the file has them: name the key each one is in.
		pathOn := c.pathsOn()
		for _, e := range envErrs {
			e.Path = pathOn(e.Line, e.Column)
		}
		return nil, envErrs.sorted()
	}
	if len(c.errs) > 0 {
		return nil, c.errs.sorted()
	}

	cfg := &LB{}
	if root != nil {
		if err := decodeYAML(root, cfg); err != nil {
			return nil, Errors{c.libraryError(err)}
		}
	}
	cfg.Path = path
	cfg.PoolOrder = poolOrder(c.pools, cfg.Pools)
	unsharePools(cfg)
	applyDefaults(cfg)
	if errs := validate(cfg, c); len(errs) > 0 {
		return nil, errs.sorted()
	}
	return cfg, nil
}

// parseYAML parses with the library. Duplicate keys are left to the check,
// which names their key path.
func parseYAML(data []byte) (file *ast.File, err error) {
	defer recoverLibrary(&err)
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// decodeYAML fills cfg from the tree the check has approved. The check has
// seen every key and scalar; the library fills the structs.
// DisallowUnknownField stays on in case the two ever disagree about what a
// key is. The check refused duplicate keys; allowing them here lets a key
// override what a << merged, which the library otherwise calls a duplicate.
func decodeYAML(root ast.Node, cfg *LB) (err error) {
	defer recoverLibrary(&err)
	return yaml.NodeToValue(root, cfg, yaml.DisallowUnknownField(), yaml.AllowDuplicateMapKey())
}

// recoverLibrary turns a panic in the YAML library into an error: a broken
// file must not crash a running balancer that reloads it on SIGHUP. None is
// known; the fuzz test would report one as an error without a position.
func recoverLibrary(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("the YAML library failed on this file: %v", r)
	}
}

// body is the one document of the file; nil when it is empty.
func (c *checker) body(file *ast.File) (ast.Node, *Error) {
	var root ast.Node
	for _, doc := range file.Docs {
		body := doc.Body
		switch body.(type) {
		case nil, *ast.CommentGroupNode, *ast.DirectiveNode:
			continue
		}
		if root != nil {
			at := startPos(body)
			if doc.Start != nil && doc.Start.Position != nil {
				at = position{doc.Start.Position.Line, doc.Start.Position.Column}
			}
			return nil, &Error{File: c.file, Line: at.Line, Column: at.Column, Msg: "a second YAML document; the config is one document"}
		}
		root = body
	}
	return root, nil
}

// libraryError converts an error of the YAML library, which carries a
// token, into an Error at that token with the key path written there.
func (c *checker) libraryError(err error) *Error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			at := position{tk.Position.Line, tk.Position.Column}
			return &Error{File: c.file, Line: at.Line, Column: at.Column, Path: c.pathAt[at], Msg: ye.GetMessage()}
		}
	}
	// Not expected: the check runs first and catches what the decoder
	// would report without a position.
	return &Error{File: c.file, Msg: err.Error()}
}

// poolOrder is the pool names in file order, keeping exactly the names the
// decoder produced.
func poolOrder(inFile []string, pools map[string]*Pool) []string {
	order := make([]string, 0, len(pools))
	seen := map[string]bool{}
	for _, name := range inFile {
		if _, ok := pools[name]; ok && !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
	}
	var rest []string
	for name := range pools {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	return append(order, rest...)
}

// unsharePools gives every pool its own struct. An alias (b: *a) decodes
// to the same *Pool as its anchor, and filling in Name would then rename
// both; an empty pool ("hello:") decodes to nil.
func unsharePools(cfg *LB) {
	for name, p := range cfg.Pools {
		cp := Pool{}
		if p != nil {
			cp = *p
			cp.Targets = slices.Clone(p.Targets)
			for i := range cp.Targets {
				cp.Targets[i].Weight = clonePtr(cp.Targets[i].Weight)
			}
			cp.FailOpen = clonePtr(p.FailOpen)
			cp.Retries = clonePtr(p.Retries)
			cp.Health.PassiveFailures = clonePtr(p.Health.PassiveFailures)
		}
		cp.Name = name
		cfg.Pools[name] = &cp
	}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
