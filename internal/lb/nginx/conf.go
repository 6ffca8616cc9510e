package nginx

import (
	"bytes"
	"fmt"
	"strings"
)

// directive is one nginx configuration statement: a name, its arguments,
// and either a block (block != nil, even when empty) or a ';'.
type directive struct {
	Name  string
	Args  []string
	Block []*directive
	// IsBlock tells `name { }` from `name;`, since both have no Block.
	IsBlock bool
	// Line is where the directive starts, for errors; format ignores it.
	Line int
}

// conf is an upstream include file: its top-level directives, of which up
// is the `upstream NAME { }` block zerodown edits. Whatever else the file
// holds is written back as it was read; comments are not kept, which the
// header zerodown writes says.
type conf struct {
	Top []*directive
	up  *directive
}

// header opens every file zerodown writes.
const header = "# Written by zerodown, which owns this file: edits are overwritten.\n" +
	"# zerodown only adds `down` to a server it detaches, removes it when it\n" +
	"# attaches it, sets weight= and adds a server line for a new host;\n" +
	"# directives and other parameters are kept.\n"

// parseError is a syntax error at a line of the file.
type parseError struct {
	file string
	line int
	msg  string
}

func (e *parseError) Error() string {
	return fmt.Sprintf("upstream file %s:%d: %s", e.file, e.line, e.msg)
}

// emptyConf is the upstream of a file that does not exist yet: no servers.
func emptyConf(upstream string) *conf {
	up := &directive{Name: "upstream", Args: []string{upstream}, IsBlock: true}
	return &conf{Top: []*directive{up}, up: up}
}

// parseConf reads data as nginx configuration and finds the upstream block
// named upstream in it; file names data in errors.
func parseConf(file string, data []byte, upstream string) (*conf, error) {
	p := &parser{file: file, data: data, line: 1}
	top, err := p.block(false)
	if err != nil {
		return nil, err
	}
	c := &conf{Top: top}
	for _, d := range top {
		if d.Name != "upstream" || len(d.Args) != 1 || d.Args[0] != upstream {
			continue
		}
		if !d.IsBlock {
			return nil, &parseError{file, d.Line, "upstream " + upstream + " is not a block"}
		}
		if c.up != nil {
			return nil, &parseError{file, d.Line, "a second upstream " + upstream + " block (the first is at line " + fmt.Sprint(c.up.Line) + ")"}
		}
		c.up = d
	}
	if c.up == nil {
		return nil, &parseError{file, p.line, "no `upstream " + upstream + " { ... }` block in the file"}
	}
	for _, d := range c.up.Block {
		if d.Name == "server" && (len(d.Args) == 0 || d.IsBlock) {
			return nil, &parseError{file, d.Line, "a server directive in upstream " + upstream + " needs an address and a ';'"}
		}
	}
	return c, nil
}

// parser is a small tokenizer and parser of nginx's configuration syntax:
// words, quoted strings, `#` comments, ';' and braces.
type parser struct {
	file string
	data []byte
	pos  int
	line int
}

// token kinds besides words.
const (
	tokWord = iota
	tokSemi
	tokOpen
	tokClose
	tokEOF
)

// block parses directives until the closing brace (nested) or the end.
func (p *parser) block(nested bool) ([]*directive, error) {
	var out []*directive
	for {
		kind, word, line, err := p.next()
		if err != nil {
			return nil, err
		}
		switch kind {
		case tokEOF:
			if nested {
				return nil, &parseError{p.file, line, "unexpected end of file, expecting \"}\""}
			}
			return out, nil
		case tokClose:
			if !nested {
				return nil, &parseError{p.file, line, "unexpected \"}\""}
			}
			return out, nil
		case tokSemi, tokOpen:
			return nil, &parseError{p.file, line, fmt.Sprintf("unexpected %q with no directive name", word)}
		}
		d := &directive{Name: word, Line: line}
	args:
		for {
			kind, arg, aline, err := p.next()
			if err != nil {
				return nil, err
			}
			switch kind {
			case tokWord:
				d.Args = append(d.Args, arg)
			case tokSemi:
				break args
			case tokOpen:
				d.IsBlock = true
				if d.Block, err = p.block(true); err != nil {
					return nil, err
				}
				break args
			case tokClose:
				return nil, &parseError{p.file, aline, "unexpected \"}\" after " + d.Name + ", expecting \";\""}
			case tokEOF:
				return nil, &parseError{p.file, aline, "unexpected end of file after " + d.Name + ", expecting \";\" or \"}\""}
			}
		}
		out = append(out, d)
	}
}

// next returns the next token, skipping blanks and comments.
func (p *parser) next() (kind int, word string, line int, err error) {
	p.skipBlanks()
	line = p.line
	if p.pos >= len(p.data) {
		return tokEOF, "", line, nil
	}
	switch c := p.data[p.pos]; c {
	case ';':
		p.pos++
		return tokSemi, ";", line, nil
	case '{':
		p.pos++
		return tokOpen, "{", line, nil
	case '}':
		p.pos++
		return tokClose, "}", line, nil
	case '"', '\'':
		p.pos++
		var b strings.Builder
		for {
			if p.pos >= len(p.data) {
				return 0, "", line, &parseError{p.file, line, "unterminated quoted string"}
			}
			ch := p.data[p.pos]
			p.pos++
			switch {
			case ch == c:
				// nginx wants a separator after a closing quote.
				if p.pos < len(p.data) && !bytes.ContainsRune([]byte(" \t\r\n;{}"), rune(p.data[p.pos])) {
					return 0, "", p.line, &parseError{p.file, p.line, fmt.Sprintf("unexpected %q after a quoted string", p.data[p.pos])}
				}
				return tokWord, b.String(), line, nil
			case ch == '\\' && p.pos < len(p.data):
				b.WriteString(unescape(p.data[p.pos]))
				if p.data[p.pos] == '\n' {
					p.line++
				}
				p.pos++
			default:
				if ch == '\n' {
					p.line++
				}
				b.WriteByte(ch)
			}
		}
	}
	var b strings.Builder
	for p.pos < len(p.data) {
		ch := p.data[p.pos]
		if bytes.IndexByte([]byte(" \t\r\n;{}"), ch) >= 0 {
			break
		}
		p.pos++
		if ch == '\\' && p.pos < len(p.data) {
			if p.data[p.pos] == '\n' {
				p.line++
			}
			b.WriteString(unescape(p.data[p.pos]))
			p.pos++
			continue
		}
		b.WriteByte(ch)
	}
	return tokWord, b.String(), line, nil
}

// skipBlanks moves past white space and comments, counting lines.
func (p *parser) skipBlanks() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '\n':
			p.line++
		case ' ', '\t', '\r':
		case '#':
			for p.pos < len(p.data) && p.data[p.pos] != '\n' {
				p.pos++
			}
			continue
		default:
			return
		}
		p.pos++
	}
}

// unescape is nginx's reading of a backslash followed by c: \" \' \\ stand
// for the character, \t \r \n for the control, anything else is kept with
// its backslash.
func unescape(c byte) string {
	switch c {
	case '"', '\'', '\\':
		return string(c)
	case 't':
		return "\t"
	case 'r':
		return "\r"
	case 'n':
		return "\n"
	}
	return "\\" + string(c)
}

// format writes c back: the header, then every top-level directive, one
// per line, blocks indented.
func (c *conf) format() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	writeDirectives(&b, c.Top, 0)
	return b.Bytes()
}

func writeDirectives(b *bytes.Buffer, ds []*directive, depth int) {
	for _, d := range ds {
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString(quote(d.Name))
		for _, a := range d.Args {
			b.WriteByte(' ')
			b.WriteString(quote(a))
		}
		if !d.IsBlock {
			b.WriteString(";\n")
			continue
		}
		b.WriteString(" {\n")
		writeDirectives(b, d.Block, depth+1)
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString("}\n")
	}
}

// quote writes a word as is when nginx reads it back the same, else
// double-quoted with the escapes unescape reverses.
func quote(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\r\n;{}#\"'\\") {
		return w
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(w); i++ {
		switch c := w[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
