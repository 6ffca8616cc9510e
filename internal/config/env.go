package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/token"
)

// expandEnv replaces ${VAR} with the value of the environment variable VAR
// and $$ with $, before the YAML is parsed, so a variable can stand for any
// scalar (a port, a number of retries), not only for strings.
//
// It works line by line and refuses values with line breaks, so every line
// keeps its number and the columns left of a reference stay right: the
// positions in later errors still point into the file as written. Comments
// are left alone (found with the YAML lexer, which knows about quotes), so a
// commented-out ${VAR} does not need to be set. A reference whose variable is
// unset is an error and is left as written, so the document still parses and
// the error can name the key it is in.
//
// Values are inserted verbatim: a value with YAML syntax in it (": ", " #")
// changes the document, so quote a reference that may contain such text.
func expandEnv(file string, data []byte, lookup func(string) (string, bool)) ([]byte, Errors) {
	if !bytes.Contains(data, []byte("$")) {
		return data, nil
	}
	// commentAt[line] is the column of the # that starts a comment on it.
	commentAt := map[int]int{}
	for _, tk := range tokenize(string(data)) {
		if tk.Type == token.CommentType && tk.Position != nil {
			if _, ok := commentAt[tk.Position.Line]; !ok {
				commentAt[tk.Position.Line] = tk.Position.Column
			}
		}
	}
	var (
		out  bytes.Buffer
		errs Errors
	)
	out.Grow(len(data))
	for i, line := range strings.Split(string(data), "\n") {
		if i > 0 {
			out.WriteByte('\n')
		}
		lineNo := i + 1
		end := len(line)
		if col, ok := commentAt[lineNo]; ok {
			end = byteIndex(line, col)
		}
		out.WriteString(expandLine(line[:end], func(at int, msg string) {
			errs = append(errs, &Error{
				File: file, Line: lineNo,
				Column: utf8.RuneCountInString(line[:at]) + 1,
				Msg:    msg,
			})
		}, lookup))
		out.WriteString(line[end:])
	}
	return out.Bytes(), errs
}

// tokenize runs the library's lexer. Should it panic, comments are not
// known and references in them are expanded too; the parser then reports
// the broken file.
func tokenize(src string) (tokens token.Tokens) {
	defer func() {
		if recover() != nil {
			tokens = nil
		}
	}()
	return lexer.Tokenize(src)
}

// expandLine expands one line (without its comment). fail gets the byte
// offset of a bad reference.
func expandLine(s string, fail func(at int, msg string), lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) || (s[i+1] != '$' && s[i+1] != '{') {
			b.WriteByte(c)
			i++
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i += 2
			continue
		}
		closing := strings.IndexByte(s[i+2:], '}')
		if closing < 0 {
			fail(i, "unterminated ${ (write $$ for a literal $)")
			b.WriteString(s[i:])
			break
		}
		ref := s[i : i+2+closing+1]
		name := ref[2 : len(ref)-1]
		val, ok := "", false
		switch {
		case !validEnvName(name):
			fail(i, fmt.Sprintf("invalid variable name in %s (write $$ for a literal $)", ref))
		default:
			val, ok = lookup(name)
			switch {
			case !ok:
				fail(i, fmt.Sprintf("environment variable %s is not set", name))
			case strings.ContainsAny(val, "\r\n"):
				ok = false
				fail(i, fmt.Sprintf("environment variable %s contains a line break, which cannot be inserted into one line", name))
			}
		}
		if ok {
			b.WriteString(val)
		} else {
			b.WriteString(ref)
		}
		i += len(ref)
	}
	return b.String()
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// byteIndex converts a 1-based column, counted in runes as the YAML library
// counts them, to a byte offset in line.
func byteIndex(line string, col int) int {
	n := 1
	for i := range line {
		if n == col {
			return i
		}
		n++
	}
	return len(line)
}
