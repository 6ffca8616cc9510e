package httpdiff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// wireReader reads HTTP/1.1 heads and bodies leniently and keeps the raw
// bytes it consumed. Both ends of the harness use it: the scripted backend
// to see what a proxy forwarded, the clients to see what a proxy answered.
// It is lenient on purpose: a strict parser would refuse the very messages
// the harness must look at and report.
type wireReader struct {
	br     *bufio.Reader
	raw    []byte
	rawCap int // raw bytes kept; beyond it only parsing goes on
}

// maxHeadLines bounds a head so a stream of garbage cannot keep a reader
// looping.
const maxHeadLines = 200

func (w *wireReader) keep(b []byte) {
	if room := w.rawCap - len(w.raw); room > 0 {
		w.raw = append(w.raw, b[:min(len(b), room)]...)
	}
}

// line reads up to and including LF and returns the line without its
// ending; crlf tells whether the ending was CRLF rather than a bare LF.
// The slice is valid until the next read.
func (w *wireReader) line() (line []byte, crlf bool, err error) {
	b, err := w.br.ReadSlice('\n')
	w.keep(b)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, false, errors.New("line too long")
		}
		return b, false, err
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1], true, nil
	}
	return b, false, nil
}

// field is one header field as received, obs-fold continuations joined.
type field struct{ name, value string }

// wireHead is a start line and its header fields, with everything about
// their syntax that two parsers could read differently.
type wireHead struct {
	start     string
	fields    []field
	anomalies []string
}

func (h *wireHead) flag(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, a := range h.anomalies {
		if a == msg {
			return
		}
	}
	h.anomalies = append(h.anomalies, msg)
}

// values returns the values of every field named name, in order.
func (h *wireHead) values(name string) []string {
	var out []string
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

func (h *wireHead) get(name string) string {
	if v := h.values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// hasToken reports whether a comma-separated field such as Connection lists
// tok.
func (h *wireHead) hasToken(name, tok string) bool {
	for _, v := range h.values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// head reads a start line and header fields. Anomalies are recorded, not
// refused: the caller decides what they mean.
func (w *wireReader) head() (*wireHead, error) {
	h := &wireHead{}
	var line []byte
	var crlf bool
	var err error
	// RFC 9112 section 2.2 lets a server skip empty lines before a request.
	for skipped := 0; ; skipped++ {
		line, crlf, err = w.line()
		if err != nil {
			return nil, err
		}
		if len(line) > 0 || skipped == 2 {
			break
		}
	}
	if !crlf {
		h.flag("bare LF line ending")
	}
	h.start = string(line)
	for n := 0; ; n++ {
		if n == maxHeadLines {
			return nil, errors.New("too many header lines")
		}
		line, crlf, err = w.line()
		if err != nil {
			return nil, err
		}
		if !crlf {
			h.flag("bare LF line ending")
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: one parser joins it to the previous field, another
			// reads it as a field of its own.
			h.flag("obs-fold line %q", line)
			if k := len(h.fields); k > 0 {
				h.fields[k-1].value += " " + string(bytes.TrimSpace(line))
			} else {
				h.flag("whitespace before the first header field")
				w.fieldOf(h, bytes.TrimSpace(line))
			}
			continue
		}
		w.fieldOf(h, line)
	}
	return h, nil
}

func (w *wireReader) fieldOf(h *wireHead, line []byte) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		h.flag("malformed header line %q", line)
		return
	}
	name := line[:colon]
	for _, b := range name {
		if !isToken(b) {
			h.flag("malformed header name %q", name)
			break
		}
	}
	value := bytes.Trim(line[colon+1:], " \t")
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7f {
			h.flag("control byte %q in header %s", b, bytes.TrimSpace(name))
			break
		}
	}
	h.fields = append(h.fields, field{string(bytes.TrimSpace(name)), string(value)})
}

// isToken reports whether b may appear in a header name or method (RFC 9110
// tchar).
func isToken(b byte) bool {
	return b > ' ' && b < 0x7f && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(b))
}

var digits = regexp.MustCompile(`^[0-9]+$`)

// lintFraming adds to h's anomalies everything that gives a message more
// than one possible framing: the checks behind invariant 2.
func lintFraming(h *wireHead, request bool) {
	cl := h.values("Content-Length")
	te := h.values("Transfer-Encoding")
	if len(cl) > 1 {
		h.flag("%d Content-Length fields %q", len(cl), cl)
	}
	for _, v := range cl {
		if !digits.MatchString(v) {
			h.flag("malformed Content-Length %q", v)
		}
	}
	if len(te) > 1 {
		h.flag("%d Transfer-Encoding fields %q", len(te), te)
	}
	for _, v := range te {
		if !strings.EqualFold(v, "chunked") {
			h.flag("Transfer-Encoding %q", v)
		}
	}
	if len(cl) > 0 && len(te) > 0 {
		h.flag("Content-Length beside Transfer-Encoding")
	}
	if request {
		if n := len(h.values("Host")); n != 1 {
			h.flag("%d Host fields", n)
		}
	}
}

// bodyFraming is how a lenient recipient frames the body: chunked when any
// Transfer-Encoding mentions chunked, else the first Content-Length read
// loosely. Being loose here makes a proxy's mistake visible as a second
// request or a short body instead of a refusal.
func bodyFraming(h *wireHead) (chunked bool, length int64, hasLength bool) {
	for _, v := range h.values("Transfer-Encoding") {
		if strings.Contains(strings.ToLower(v), "chunked") {
			return true, 0, false
		}
	}
	if cl := h.values("Content-Length"); len(cl) > 0 {
		v := strings.TrimPrefix(strings.TrimSpace(strings.Split(cl[0], ",")[0]), "+")
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return false, n, true
		}
	}
	return false, 0, false
}

// readN reads exactly n body bytes and returns up to keep of them.
func (w *wireReader) readN(n int64, keep int) ([]byte, error) {
	var body []byte
	var buf [32 << 10]byte
	for n > 0 {
		k, err := w.br.Read(buf[:min(int64(len(buf)), n)])
		w.keep(buf[:k])
		if room := keep - len(body); room > 0 {
			body = append(body, buf[:min(k, room)]...)
		}
		n -= int64(k)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return body, err
		}
	}
	return body, nil
}

var chunkSizeLine = regexp.MustCompile(`^[0-9A-Fa-f]+([ \t]*;.*)?$`)

// maxChunks bounds a chunked body so garbage cannot loop forever.
const maxChunks = 100_000

// chunked reads a chunked body, trailers included, and returns up to keep
// bytes of it. Syntax a strict parser would refuse is flagged on h; a size
// even a lenient parser cannot read ends the body with an error.
func (w *wireReader) chunked(h *wireHead, keep int) ([]byte, error) {
	var body []byte
	for i := 0; i < maxChunks; i++ {
		line, crlf, err := w.line()
		if err != nil {
			return body, noEOF(err)
		}
		if !crlf {
			h.flag("bare LF in chunked body")
		}
		if !chunkSizeLine.Match(line) {
			h.flag("malformed chunk size %q", line)
		}
		s := string(line)
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		size, err := strconv.ParseUint(strings.Trim(s, " \t"), 16, 63)
		if err != nil {
			h.flag("unreadable chunk size %q", line)
			return body, fmt.Errorf("chunk size %q: %w", line, err)
		}
		if size == 0 {
			for n := 0; ; n++ {
				line, _, err := w.line()
				if err != nil {
					return body, noEOF(err)
				}
				if len(line) == 0 {
					return body, nil
				}
				if n == maxHeadLines {
					return body, errors.New("too many trailer lines")
				}
			}
		}
		data, err := w.readN(int64(size), keep-len(body))
		body = append(body, data...)
		if err != nil {
			return body, err
		}
		line, _, err = w.line()
		if err != nil {
			return body, noEOF(err)
		}
		if len(line) != 0 {
			h.flag("missing CRLF after chunk data")
			return body, errors.New("missing CRLF after chunk data")
		}
	}
	return body, errors.New("too many chunks")
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
