package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ParseContentLength parses a Content-Length value: one to eighteen ASCII
// digits and nothing else. strconv would also take "+5", which another
// parser may read differently; a list such as "5, 5" is refused too.
func ParseContentLength[T ~string | ~[]byte](v T) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// BodyAllowed reports whether a response to method with status may carry a
// body (RFC 9112 section 6.3): never for HEAD, 1xx, 204 or 304.
func BodyAllowed(method string, status int) bool {
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// ErrLineTooLong is returned for a head or trailer line longer than the
// reader's buffer.
var ErrLineTooLong = errors.New("line too long")

// readLine returns one line without its CRLF or bare LF; the slice is valid
// until the next read. budget, when not nil, is reduced by the line's length
// and ErrLineTooLong returned once it goes below zero.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if budget != nil {
		*budget -= len(line)
		if *budget < 0 {
			return nil, ErrLineTooLong
		}
	}
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, ErrLineTooLong
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// NoEOF turns a clean EOF in the middle of a message into ErrUnexpectedEOF.
func NoEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// MalformedError is a message the codec refuses to parse.
type MalformedError struct{ Msg string }

func (e *MalformedError) Error() string { return e.Msg }

func malformed(format string, args ...any) error {
	return &MalformedError{fmt.Sprintf(format, args...)}
}

func quote(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return fmt.Sprintf("%q", b)
}
