package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// bodyBufPool holds buffers for replayable request bodies and body copies.
var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// reqBody is the client's request body as the proxy forwards it: held in
// memory when small enough to be sent again on a retry, else streamed once.
type reqBody struct {
	buf        []byte
	pooled     *[]byte
	stream     io.Reader
	length     int64 // -1: unknown, send chunked
	replayable bool
}

func (b *reqBody) release() {
	if b.pooled != nil {
		bodyBufPool.Put(b.pooled)
		b.pooled = nil
	}
}

// errBodyTooLarge is returned when a body without a declared length grows
// past client.max_body.
var errBodyTooLarge = errors.New("request body too large")

// clientBodyError is a failure reading the client's request body, as
// opposed to a failure sending it to the target: the client is at fault,
// and the target is not.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

func readBody(r *http.Request, maxReplay, maxBody int64) (*reqBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return &reqBody{replayable: true, length: 0}, nil
	}
	var body io.Reader = r.Body
	if r.ContentLength < 0 {
		body = &limitedBody{r: r.Body, left: maxBody}
	}
	if r.ContentLength > maxReplay {
		return &reqBody{stream: body, length: r.ContentLength}, nil
	}
	want := maxReplay + 1
	if r.ContentLength > 0 {
		want = r.ContentLength
	}
	b := &reqBody{}
	if want <= 32<<10 {
		b.pooled = bodyBufPool.Get().(*[]byte)
		b.buf = (*b.pooled)[:want]
	} else {
		b.buf = make([]byte, want)
	}
	n, err := io.ReadFull(body, b.buf)
	switch {
	case r.ContentLength > 0 && err != nil:
		b.release()
		return nil, err
	case r.ContentLength < 0 && err == nil:
		// Longer than we replay: stream what we hold, then the rest.
		b.stream = io.MultiReader(bytesReader(b.buf[:n]), body)
		b.length = -1
		return b, nil
	case r.ContentLength < 0 && err != io.ErrUnexpectedEOF && err != io.EOF:
		b.release()
		return nil, err
	}
	b.buf = b.buf[:n]
	b.length = int64(n)
	b.replayable = true
	return b, nil
}

type limitedBody struct {
	r    io.Reader
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte past the limit proves the body is too large.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

type byteSliceReader struct{ b []byte }

func bytesReader(b []byte) *byteSliceReader { return &byteSliceReader{b} }

func (r *byteSliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// writeStreamBody sends a body that is too large to hold toward the target,
// chunked when its length is unknown. A failure to read the client's body is
// a clientBodyError.
func writeStreamBody(c *upConn, body *reqBody) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	chunked := body.length < 0
	var num [20]byte
	for {
		n, err := body.stream.Read(buf)
		if n > 0 {
			if chunked {
				c.bw.Write(appendHex(num[:0], n))
				c.bw.WriteString("\r\n")
			}
			c.bw.Write(buf[:n])
			if chunked {
				c.bw.WriteString("\r\n")
			}
			if werr := c.bw.Flush(); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return clientBodyError{err}
		}
	}
	if chunked {
		c.bw.WriteString("0\r\n\r\n")
	}
	return c.bw.Flush()
}

func appendHex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
