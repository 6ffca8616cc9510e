package h1

import (
	"bufio"
	"io"
)

// Limits on what a chunked body's framing may spend besides its data.
const (
	maxTrailerBytes = 16 << 10
	maxTrailers     = 100
)

// ChunkedReader decodes a chunked body straight from a connection's buffer,
// trailers included, so the connection can carry another message after it.
// Trailers are read and dropped. Anything off the grammar of RFC 9112
// section 7.1 is an error: a chunk size that is not plain hex digits, a
// missing CRLF after chunk data, an extension with a control byte.
type ChunkedReader struct {
	br      *bufio.Reader
	left    int64 // bytes left in the current chunk
	started bool
	done    bool
}

// NewChunkedReader reads a chunked body from br.
func NewChunkedReader(br *bufio.Reader) *ChunkedReader { return &ChunkedReader{br: br} }

// Reset makes cr read a new body from br.
func (cr *ChunkedReader) Reset(br *bufio.Reader) { *cr = ChunkedReader{br: br} }

// Done reports whether the last chunk and the trailers were read.
func (cr *ChunkedReader) Done() bool { return cr.done }

func (cr *ChunkedReader) Read(p []byte) (int, error) {
	if cr.done {
		return 0, io.EOF
	}
	if cr.left == 0 {
		if cr.started {
			line, err := readLine(cr.br, nil)
			if err != nil {
				return 0, NoEOF(err)
			}
			if len(line) != 0 {
				return 0, malformed("missing CRLF after chunk data")
			}
		}
		cr.started = true
		line, err := readLine(cr.br, nil)
		if err != nil {
			return 0, NoEOF(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return 0, malformed("bad chunk size line %s", quote(line))
		}
		if size == 0 {
			if err := cr.skipTrailers(); err != nil {
				return 0, err
			}
			cr.done = true
			return 0, io.EOF
		}
		cr.left = size
	}
	if int64(len(p)) > cr.left {
		p = p[:cr.left]
	}
	n, err := cr.br.Read(p)
	cr.left -= int64(n)
	if err != nil {
		return n, NoEOF(err)
	}
	return n, nil
}

func (cr *ChunkedReader) skipTrailers() error {
	budget := maxTrailerBytes
	for i := 0; ; i++ {
		line, err := readLine(cr.br, &budget)
		if err != nil {
			if err == ErrLineTooLong {
				return malformed("trailers too large")
			}
			return NoEOF(err)
		}
		if len(line) == 0 {
			return nil
		}
		if i >= maxTrailers {
			return malformed("too many trailers")
		}
		colon := indexByte(line, ':')
		if colon <= 0 || !ValidToken(line[:colon]) || !ValidFieldValue(line[colon+1:]) {
			return malformed("bad trailer line %s", quote(line))
		}
	}
}

// parseChunkSize parses chunk-size [ chunk-ext ]: hex digits, at most 15 so
// the size fits in an int64, then nothing or whitespace and ';' extensions.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, false
	}
	if i == len(line) {
		return n, true
	}
	// Whitespace is allowed only before an extension (BWS ";").
	ext := TrimOWS(line[i:])
	if len(ext) == 0 || ext[0] != ';' || !ValidFieldValue(ext) {
		return 0, false
	}
	return n, true
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}
