package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file, at the place it is written.
type Error struct {
	File string
	// Line and Column are 1-based (columns count characters); 0 when the
	// problem has no place in the file.
	Line, Column int
	// Path is the key path, such as "pools.hello.health.interval" or
	// "listeners[0].routes[1].pool"; empty for the document as a whole.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config file, in file order.
type Errors []*Error

// maxShown bounds the message: past this many, the rest are likely echoes of
// one mistake.
const maxShown = 20

// Error lists the problems one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == maxShown {
			fmt.Fprintf(&b, "\n%s: and %d more problems", e.File, len(es)-maxShown)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the individual *Error values.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted orders the problems by place and drops exact repeats (the same
// mistake reached twice, e.g. through an alias and its anchor).
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Column < es[j].Column
	})
	out := es[:0]
	seen := map[Error]bool{}
	for _, e := range es {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}
