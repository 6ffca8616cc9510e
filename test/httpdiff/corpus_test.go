package httpdiff

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// side says whose bytes are at fault in a case.
type side int

const (
	clientSide  side = iota // the client sends something odd; the backend answers well
	backendSide             // the client is well-behaved; the backend's answer is odd
)

// caseSpec is one entry of the corpus.
type caseSpec struct {
	name string
	side side
	// plain marks well-formed exchanges: every proxy must pass them, so a
	// failure with HAProxy means the harness is wrong.
	plain bool
	// strict: the backend answers every request well, so each client must
	// get its own complete answer, not merely some error.
	strict bool
	// cut: the scripted answer to A is cut short (invariant 4).
	cut   bool
	build func(ids caseIDs) plan
	// fault scripts the backend's answer to request A; nil answers it well.
	fault func(ids caseIDs, rec *record) *answer
}

// caseIDs are the ids of one case's requests: A, B, C are sent as requests;
// S is a request hidden in A's bytes, which a proxy may treat as a
// pipelined request of its own or as part of A, but must not forward
// hidden in A.
type caseIDs struct {
	rig        string // the prefix of every id sent through one proxy
	prefix     string // the prefix of this case's ids
	A, B, C, S string
}

func newIDs(rig string, idx int) caseIDs {
	p := fmt.Sprintf("%s%02d", rig, idx)
	return caseIDs{rig: rig, prefix: p, A: p + "a", B: p + "b", C: p + "c", S: p + "s"}
}

// keep and fresh name the follow-up requests: on the case's connection and
// on connections of their own.
func (ids caseIDs) keep(k int) string  { return fmt.Sprintf("%sk%d", ids.prefix, k) }
func (ids caseIDs) fresh(k int) string { return fmt.Sprintf("%sv%d", ids.prefix, k) }

// sent is a request the client sends, for reading its answer (HEAD has no
// body; an HTTP/1.0 client knows no chunked coding) and for counting what
// reached the backend.
type sent struct {
	id, method string
	http10     bool
}

// plan is what the client does on the case's connection.
type plan struct {
	writes     [][]byte // written in order
	reqs       []sent   // the requests those bytes hold
	maybe      []sent   // requests hidden in them: see caseIDs
	expect100  bool     // wait for 100 Continue between writes[0] and writes[1]
	closeWrite bool     // half-close after the writes
	echo       []byte   // after a 101, send this and expect it back
	bigBody    int      // then stream this many body bytes while reading the answer
}

func one(stream string, reqs ...sent) plan {
	return plan{writes: [][]byte{[]byte(stream)}, reqs: reqs}
}

// req is the head of a request for id with the usual fields and extra
// lines.
func req(method, id string, lines ...string) string {
	return reqProto(method, id, "HTTP/1.1", lines...)
}

func reqProto(method, id, proto string, lines ...string) string {
	var b strings.Builder
	b.WriteString(method + " /r/" + id + " " + proto + "\r\nHost: h\r\nX-Req-Id: " + id + "\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func cl(n int) string { return "Content-Length: " + strconv.Itoa(n) }

// hidden is the classic smuggling payload: a body that ends where one
// framing says and a request that starts where the other says.
func hidden(ids caseIDs, lines ...string) plan {
	body := "0\r\n\r\n" + req("GET", ids.S)
	p := one(req("POST", ids.A, append([]string{cl(len(body))}, lines...)...)+body, sent{id: ids.A, method: "POST"})
	p.maybe = []sent{{id: ids.S, method: "GET"}}
	return p
}

// chunkCase sends a chunked body whose first chunk has the given size
// line, then a pipelined request that shows whether the connection stayed
// in step.
func chunkCase(sizeLine, data string) func(caseIDs) plan {
	return func(ids caseIDs) plan {
		body := sizeLine + "\r\n" + data + "\r\n0\r\n\r\n"
		p := one(req("POST", ids.A, "Transfer-Encoding: chunked")+body+req("GET", ids.S), sent{id: ids.A, method: "POST"})
		p.maybe = []sent{{id: ids.S, method: "GET"}}
		return p
	}
}

// injected is a whole response hidden in a faulty answer; a client that
// gets it got bytes meant for nobody.
const injected = "HTTP/1.1 200 OK\r\nX-Resp-Id: injected\r\nContent-Length: 9\r\n\r\ninjected\n"

func respHead(status, id string, lines ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\r\nX-Resp-Id: " + id + "\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func idBody(id string) string { return "id=" + id + "\n" }

// staged writes parts with a pause between them: the later bytes arrive
// after the proxy has read what looks like a whole answer.
func staged(pause time.Duration, parts ...string) *answer {
	a := &answer{pause: pause}
	for _, p := range parts {
		a.parts = append(a.parts, []byte(p))
	}
	return a
}

// stagger is long enough that the first part is read alone, short enough
// that the next request is already waiting for the connection.
const stagger = 30 * time.Millisecond

func corpus() []caseSpec {
	get1 := func(ids caseIDs) plan { return one(req("GET", ids.A), sent{id: ids.A, method: "GET"}) }
	getA := func(line string) func(caseIDs) plan {
		return func(ids caseIDs) plan { return one(req("GET", ids.A, line), sent{id: ids.A, method: "GET"}) }
	}
	post := func(lines []string, body string) func(caseIDs) plan {
		return func(ids caseIDs) plan {
			return one(req("POST", ids.A, lines...)+body, sent{id: ids.A, method: "POST"})
		}
	}
	return []caseSpec{
		// Well-formed exchanges: the harness's own check.
		{name: "plain GET", plain: true, strict: true, build: get1},
		{name: "plain POST", plain: true, strict: true, build: post([]string{cl(5)}, "hello")},
		{name: "pipelined GET GET", plain: true, strict: true, build: func(ids caseIDs) plan {
			return one(req("GET", ids.A)+req("GET", ids.B), sent{id: ids.A, method: "GET"}, sent{id: ids.B, method: "GET"})
		}},
		{name: "pipelined GET POST GET", plain: true, strict: true, build: func(ids caseIDs) plan {
			return one(req("GET", ids.A)+req("POST", ids.B, cl(5))+"hello"+req("GET", ids.C),
				sent{id: ids.A, method: "GET"}, sent{id: ids.B, method: "POST"}, sent{id: ids.C, method: "GET"})
		}},
		{name: "HEAD", plain: true, strict: true, build: func(ids caseIDs) plan {
			return one(req("HEAD", ids.A), sent{id: ids.A, method: "HEAD"})
		}},
		{name: "Expect 100-continue", plain: true, strict: true, build: func(ids caseIDs) plan {
			return plan{
				writes:    [][]byte{[]byte(req("POST", ids.A, cl(5), "Expect: 100-continue")), []byte("hello")},
				reqs:      []sent{{id: ids.A, method: "POST"}},
				expect100: true,
			}
		}},

		// Request smuggling: two framings in one request.
		{name: "CL.TE", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding: chunked") }},
		{name: "TE.CL", build: func(ids caseIDs) plan {
			chunk := req("GET", ids.S)
			size := fmt.Sprintf("%x", len(chunk))
			body := size + "\r\n" + chunk + "\r\n0\r\n\r\n"
			p := one(req("POST", ids.A, cl(len(size)+2), "Transfer-Encoding: chunked")+body, sent{id: ids.A, method: "POST"})
			p.maybe = []sent{{id: ids.S, method: "GET"}}
			return p
		}},
		{name: "TE.TE xchunked", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding: xchunked") }},
		{name: "TE.TE space before colon", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding : chunked") }},
		{name: "TE.TE chunked, identity", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding: chunked, identity") }},
		{name: "TE.TE duplicate", build: func(ids caseIDs) plan {
			return hidden(ids, "Transfer-Encoding: chunked", "Transfer-Encoding: identity")
		}},
		{name: "TE.TE tab", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding:\tchunked") }},
		{name: "TE.TE obs-fold", build: func(ids caseIDs) plan { return hidden(ids, "Transfer-Encoding:\r\n chunked") }},
		{name: "TE.TE leading space", build: func(ids caseIDs) plan {
			// Whitespace before the first field: RFC 9112 section 2.2 says
			// reject or ignore the line, never read it as a field.
			body := "0\r\n\r\n" + req("GET", ids.S)
			stream := "POST /r/" + ids.A + " HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: h\r\nX-Req-Id: " + ids.A +
				"\r\n" + cl(len(body)) + "\r\n\r\n" + body
			p := one(stream, sent{id: ids.A, method: "POST"})
			p.maybe = []sent{{id: ids.S, method: "GET"}}
			return p
		}},

		// Content-Length spellings.
		{name: "CL duplicate equal", build: post([]string{cl(5), cl(5)}, "hello")},
		{name: "CL duplicate unequal", build: func(ids caseIDs) plan {
			body := "hello" + req("GET", ids.S)
			p := one(req("POST", ids.A, cl(5), cl(len(body)))+body, sent{id: ids.A, method: "POST"})
			p.maybe = []sent{{id: ids.S, method: "GET"}}
			return p
		}},
		{name: "CL +5", build: post([]string{"Content-Length: +5"}, "hello")},
		{name: "CL -1", build: func(ids caseIDs) plan {
			p := one(req("POST", ids.A, "Content-Length: -1")+req("GET", ids.S), sent{id: ids.A, method: "POST"})
			p.maybe = []sent{{id: ids.S, method: "GET"}}
			return p
		}},
		{name: "CL 0x5", build: post([]string{"Content-Length: 0x5"}, "hello")},
		{name: "CL inner space", build: post([]string{"Content-Length: 1 0"}, "helloworld")},
		{name: "CL trailing space", strict: true, build: post([]string{"Content-Length: 5  "}, "hello")},

		// Chunk sizes.
		{name: "chunk size -1", build: chunkCase("-1", "hello")},
		{name: "chunk size +5", build: chunkCase("+5", "hello")},
		{name: "chunk size 0x5", build: chunkCase("0x5", "hello")},
		{name: "chunk size with trailing space", build: chunkCase("5 ", "hello")},
		{name: "chunk size overflowing 64 bits", build: chunkCase("10000000000000005", "hello")},
		{name: "chunk without CRLF", build: chunkCase("5", "helloXX")},

		// Head syntax.
		{name: "obs-fold", build: getA("X-Folded: a\r\n b")},
		{name: "bare LF", build: func(ids caseIDs) plan {
			return one("GET /r/"+ids.A+" HTTP/1.1\nHost: h\nX-Req-Id: "+ids.A+"\n\n", sent{id: ids.A, method: "GET"})
		}},
		{name: "bare CR in header", build: getA("X-Bad: a\rb")},
		{name: "NUL in header", build: getA("X-Bad: a\x00b")},
		{name: "space in target", build: func(ids caseIDs) plan {
			return one("GET /r/"+ids.A+" x HTTP/1.1\r\nHost: h\r\nX-Req-Id: "+ids.A+"\r\n\r\n", sent{id: ids.A, method: "GET"})
		}},
		{name: "two Host fields", build: getA("Host: evil")},
		{name: "absolute-form target", strict: true, build: func(ids caseIDs) plan {
			return one("GET http://h/r/"+ids.A+" HTTP/1.1\r\nHost: h\r\nX-Req-Id: "+ids.A+"\r\n\r\n", sent{id: ids.A, method: "GET"})
		}},
		{name: "CONNECT", build: func(ids caseIDs) plan {
			return one("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nX-Req-Id: "+ids.A+"\r\n\r\n", sent{id: ids.A, method: "CONNECT"})
		}},

		// Connection handling.
		{name: "half-close, answer after 1s", strict: true, build: func(ids caseIDs) plan {
			p := get1(ids)
			p.closeWrite = true
			return p
		}, fault: func(ids caseIDs, rec *record) *answer {
			a := okAnswer(ids.A, rec.method, false)
			a.delay = time.Second
			return a
		}},
		{name: "WebSocket upgrade", strict: true, build: func(ids caseIDs) plan {
			p := one(req("GET", ids.A, "Connection: Upgrade", "Upgrade: websocket",
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"), sent{id: ids.A, method: "GET"})
			p.echo = []byte("ping " + ids.A)
			return p
		}, fault: func(ids caseIDs, rec *record) *answer { return websocketAnswer(ids.A, rec) }},

		// Backend faults.
		{name: "HEAD answer with a body", side: backendSide, build: func(ids caseIDs) plan {
			return one(req("HEAD", ids.A), sent{id: ids.A, method: "HEAD"})
		}, fault: func(ids caseIDs, _ *record) *answer {
			return staged(stagger, respHead("200 OK", ids.A, cl(len(injected))), injected)
		}},
		{name: "bytes past Content-Length", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(stagger, respHead("200 OK", ids.A, cl(len(idBody(ids.A))))+idBody(ids.A), injected)
		}},
		{name: "204 with a body", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(stagger, respHead("204 No Content", ids.A), injected)
		}},
		{name: "304 with a body", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(stagger, respHead("304 Not Modified", ids.A, cl(len(injected))), injected)
		}},
		{name: "answer with Content-Length +3", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(0, respHead("200 OK", ids.A, "Content-Length: +3")+"abc")
		}},
		{name: "answer header with bare CR", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(0, respHead("200 OK", ids.A, "X-Bad: a\rb", cl(len(idBody(ids.A))))+idBody(ids.A))
		}},
		{name: "answer header with NUL", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			return staged(0, respHead("200 OK", ids.A, "X-Bad: a\x00b", cl(len(idBody(ids.A))))+idBody(ids.A))
		}},
		{name: "answer with unequal Content-Lengths", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			body := idBody(ids.A)
			return staged(0, respHead("200 OK", ids.A, cl(len(body)), cl(len(body)+len(injected)))+body+injected)
		}},
		{name: "answer chunked with Content-Length", side: backendSide, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			body := idBody(ids.A)
			chunks := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			return staged(0, respHead("200 OK", ids.A, "Transfer-Encoding: chunked", cl(len(body)))+chunks)
		}},
		{name: "truncated chunked answer", side: backendSide, cut: true, build: get1, fault: truncatedChunked},
		{name: "truncated chunked answer, HTTP/1.0 client", side: backendSide, cut: true, build: get10, fault: truncatedChunked},
		{name: "truncated length answer", side: backendSide, cut: true, build: get1, fault: truncatedLength},
		{name: "truncated length answer, HTTP/1.0 client", side: backendSide, cut: true, build: get10, fault: truncatedLength},
		{name: "close-delimited answer", side: backendSide, strict: true, build: get1, fault: func(ids caseIDs, _ *record) *answer {
			a := staged(0, respHead("200 OK", ids.A, "Content-Type: text/plain")+idBody(ids.A))
			a.close = true
			return a
		}},
		// An upload that fits in the loopback socket buffers is written
		// whole before the proxy need read anything; one past them (Linux
		// caps a send buffer at 4 MiB by default, and an unread receive
		// buffer does not grow) shows whether the proxy reads an answer
		// that comes while it is still sending.
		{name: "early 413 during a 2 MiB upload", side: backendSide, strict: true, build: upload(2 << 20), fault: early413},
		{name: "early 413 during an 8 MiB upload", side: backendSide, strict: true, build: upload(8 << 20), fault: early413},
		{name: "POST closed unanswered on a reused connection", side: backendSide, build: post([]string{cl(5)}, "hello"),
			fault: func(caseIDs, *record) *answer { return &answer{close: true} }},
	}
}

func upload(size int) func(caseIDs) plan {
	return func(ids caseIDs) plan {
		return plan{writes: [][]byte{[]byte(req("POST", ids.A, cl(size)))}, reqs: []sent{{id: ids.A, method: "POST"}}, bigBody: size}
	}
}

// early413 answers before reading the body, leaves it unread and closes a
// moment later, as Go's net/http does with a body it will not read.
func early413(ids caseIDs, _ *record) *answer {
	body := idBody(ids.A)
	a := staged(0, respHead("413 Content Too Large", ids.A, "Connection: close", cl(len(body)))+body)
	a.early, a.close, a.linger = true, true, 200*time.Millisecond
	return a
}

func get10(ids caseIDs) plan {
	return one(reqProto("GET", ids.A, "HTTP/1.0"), sent{id: ids.A, method: "GET", http10: true})
}

func truncatedChunked(ids caseIDs, _ *record) *answer {
	a := staged(0, respHead("200 OK", ids.A, "Transfer-Encoding: chunked")+"40\r\n"+idBody(ids.A))
	a.close = true
	return a
}

func truncatedLength(ids caseIDs, _ *record) *answer {
	a := staged(0, respHead("200 OK", ids.A, cl(64))+idBody(ids.A))
	a.close = true
	return a
}
