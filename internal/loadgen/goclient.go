package loadgen

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// newTemplate builds the request each Go-client request is a shallow copy
// of; nothing in it is modified after this.
func newTemplate(l *lane) *http.Request {
	req, err := http.NewRequest(l.method, l.URL, nil)
	if err != nil {
		panic("loadgen: validated URL does not parse: " + err.Error())
	}
	req.Header = l.header
	req.Host = l.host
	if len(l.Body) > 0 || methodWantsBody(l.method) {
		req.ContentLength = int64(len(l.Body))
		if len(l.Body) == 0 {
			req.Body = http.NoBody
		}
	}
	return req
}

// traceState is what httptrace tells about one request. Its hooks may run
// on the transport's goroutines, even after the request ended, so every
// field is atomic and each request gets its own.
type traceState struct {
	start        time.Time
	conns        atomic.Int32 // GotConn calls: more than one is a retry
	reused       atomic.Bool
	wrote        atomic.Int32
	connectStart atomic.Int64 // ns since start
	connectDone  atomic.Int64
	firstByte    atomic.Int64
}

func (ts *traceState) hooks() *httptrace.ClientTrace {
	since := func() int64 { return int64(time.Since(ts.start)) + 1 } // +1: 0 means "not yet"
	return &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			ts.conns.Add(1)
			if info.Reused {
				ts.reused.Store(true)
			}
		},
		ConnectStart: func(string, string) { ts.connectStart.CompareAndSwap(0, since()) },
		ConnectDone:  func(string, string, error) { ts.connectDone.CompareAndSwap(0, since()) },
		WroteRequest: func(httptrace.WroteRequestInfo) { ts.wrote.Add(1) },
		GotFirstResponseByte: func() {
			ts.firstByte.CompareAndSwap(0, since())
		},
	}
}

// doGo sends one request with net/http.
func (w *worker) doGo(l *lane, r *result) {
	g := w.g
	ctx, cancel := context.WithTimeout(g.abortCtx, g.cfg.Timeout)
	defer cancel()
	ts := &traceState{start: r.start}
	ctx = httptrace.WithClientTrace(ctx, ts.hooks())
	req := l.tmpl.WithContext(ctx)
	if len(l.Body) > 0 {
		body := l.Body
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	r.bytesOut = approxRequestBytes(l)
	resp, err := g.hc.Do(req)
	defer func() {
		// A second connection, or the request written twice, means the
		// transport retried it after a reused connection failed.
		r.retried = ts.conns.Load() > 1 || ts.wrote.Load() > 1
		if cs, cd := ts.connectStart.Load(), ts.connectDone.Load(); cs > 0 && cd >= cs {
			r.connect = time.Duration(cd - cs)
		}
		if fb := ts.firstByte.Load(); fb > 0 {
			r.ttfb = r.start.Add(time.Duration(fb - 1))
		}
	}()
	if err != nil {
		r.end = time.Now()
		r.err = err
		r.outcome = classifyErr(ctx, err, false, ts.firstByte.Load() > 0, ts.conns.Load() > 0)
		return
	}
	r.code = resp.StatusCode
	if vs := resp.Header[g.verKey]; len(vs) > 0 {
		r.version, r.hasVer = internVersion(&w.lastVer, vs[0]), true
	}
	r.bytesIn = approxHeaderBytes(resp)
	check := l.check && r.code >= 200 && r.code <= 299
	if check {
		w.m.reset(l)
	}
	var n int64
	for {
		k, err2 := resp.Body.Read(w.buf)
		n += int64(k)
		if check && k > 0 {
			w.m.feed(w.buf[:k])
		}
		if err2 == io.EOF {
			break
		}
		if err2 != nil {
			err = err2
			break
		}
	}
	resp.Body.Close()
	r.end = time.Now()
	r.bytesIn += n
	if err != nil {
		r.err = err
		r.outcome = classifyErr(ctx, err, true, true, true)
		return
	}
	r.outcome = statusOutcome(r.code)
	if r.outcome == OK && check && !w.m.ok() {
		r.outcome = BodyMismatch
	}
}

// internVersion returns v, reusing *last when equal so that the common case
// (the same version as the previous answer) keeps no new string alive.
func internVersion(last *string, v string) string {
	if len(v) > maxVersionLen {
		v = v[:maxVersionLen]
	}
	if v == *last {
		return *last
	}
	*last = v
	return v
}

// approxRequestBytes is the size of the request on the wire.
func approxRequestBytes(l *lane) int64 { return int64(len(l.raw)) }

// approxHeaderBytes estimates the status line and headers of an answer:
// net/http does not expose their size on the wire.
func approxHeaderBytes(resp *http.Response) int64 {
	n := int64(len(resp.Proto) + len(resp.Status) + 4)
	for k, vs := range resp.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n + 2
}
