package proxy

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"

	"github.com/zerodown/zerodown/internal/proxy/h1"
)

// upConn is one HTTP/1.1 connection to a target. The proxy speaks HTTP/1.1
// to targets itself instead of going through http.Transport: a pooled
// connection with its own buffers needs no goroutines or channels per
// request, which is most of the cost of httputil.ReverseProxy.
type upConn struct {
	conn      net.Conn
	fd        int // conn's descriptor for peekIdle; -1 when unknown
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince int64 // Unix nanoseconds
	uses      int
	cut       atomic.Bool // closed because the deregistration delay ran out
	// watch is set while a request uses the connection; see watchBox.
	watch atomic.Pointer[watchBox]

	head   h1.ResponseHead  // reused for every response on this connection
	chunks h1.ChunkedReader // likewise, for chunked answers
	sent   int64            // bytes written to the connection, ever
}

const (
	upReadBuffer  = 16 << 10
	upWriteBuffer = 8 << 10
)

func newUpConn(c net.Conn) *upConn {
	uc := &upConn{
		conn: c,
		fd:   upstreamFD(c),
		br:   bufio.NewReaderSize(c, upReadBuffer),
	}
	uc.bw = bufio.NewWriterSize(uc, upWriteBuffer)
	return uc
}

// Write counts what reaches the connection, so a failed send can tell
// whether the target got any of the request.
func (c *upConn) Write(p []byte) (int, error) {
	n, err := c.conn.Write(p)
	c.sent += int64(n)
	return n, err
}

// watchBox lets the server's watchdog end an exchange whose client went
// away or whose response head is late, without a timer or context callback
// per request. Whoever swaps it out of upConn.watch first owns the
// connection's fate: the watchdog closes it, the request path pools it.
type watchBox struct {
	ctx      context.Context
	deadline atomic.Int64 // unix nanoseconds for the response head; 0 once it arrived
	timedOut atomic.Bool
}

// readHead reads the next response head into c.head; see
// h1.ReadResponseHead.
func (c *upConn) readHead() (gotBytes bool, err error) {
	return h1.ReadResponseHead(c.br, &c.head)
}
