package loadgen

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"get=1,post=1", "GET", "post=3, get=1", "get=0,post=0", "get=1,get=2", "get=x", "=1",
		"get=1001", ",", "get=+1", "PATCH=1000,DELETE", "get=-1", "g\x00t=1", strings.Repeat("a=1,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mix, err := ParseMix(s)
		if err != nil {
			if mix != nil {
				t.Fatalf("ParseMix(%q) returned entries with an error", s)
			}
			return
		}
		if len(mix) == 0 {
			t.Fatalf("ParseMix(%q): no entry and no error", s)
		}
		seen := map[string]bool{}
		for _, e := range mix {
			if !validToken(e.Method) || e.Method != strings.ToUpper(e.Method) || e.Weight < 1 || e.Weight > MaxMixWeight || seen[e.Method] {
				t.Fatalf("ParseMix(%q): bad entry %+v", s, e)
			}
			seen[e.Method] = true
		}
		// What it accepts makes valid targets.
		var targets []Target
		for _, e := range mix {
			targets = append(targets, Target{URL: "http://127.0.0.1:1/", Method: e.Method, Weight: e.Weight})
		}
		if _, err := New(Config{Targets: targets, Rate: 1}); err != nil {
			t.Fatalf("ParseMix(%q) = %v, rejected by New: %v", s, mix, err)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"Content-Type: application/json", "x-a:b", "Host: example.com", "NoColon", ": v",
		"A: b\r\nC: d", "A B: c", "A:", "A:\tb\t", "Ä: b", "A: \x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, value, err := ParseHeader(s)
		if err != nil {
			return
		}
		if !validToken(name) || strings.ContainsAny(value, "\r\n\x00") || value != strings.TrimSpace(value) {
			t.Fatalf("ParseHeader(%q) = %q, %q", s, name, value)
		}
		if _, err := New(Config{Targets: []Target{{URL: "http://127.0.0.1:1/", Header: http.Header{name: {value}}}}, Rate: 1}); err != nil {
			t.Fatalf("ParseHeader(%q) = %q, %q, rejected by New: %v", s, name, value, err)
		}
	})
}

// The raw client parses answers from untrusted servers: it must not panic
// or hang on anything, and what it accepts must be consistent.
func FuzzRawResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Version: v1\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2000\r\n\r\n", "HTTP/1.1 200\n\n", "garbage", "",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	g, err := New(Config{Targets: []Target{
		{URL: "http://127.0.0.1:1/"},
		{URL: "http://127.0.0.1:1/", ExpectBody: "hello"},
	}, Rate: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, check bool) {
		w := &worker{g: g, buf: make([]byte, 64)}
		l := g.lanes[0]
		if check {
			l = g.lanes[1]
		}
		r := &result{}
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		keep, _, _, err := w.readRaw(br, l, r)
		if r.bytesIn > int64(len(data)) {
			t.Fatalf("counted %d bytes of %d", r.bytesIn, len(data))
		}
		if err != nil {
			return
		}
		if r.code < 200 || r.code > 999 {
			t.Fatalf("accepted status %d", r.code)
		}
		if keep && r.bytesIn == 0 {
			t.Fatal("kept a connection that sent nothing")
		}
	})
}

// The streaming body check agrees with bytes.Contains however the body is
// split into reads.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte("hello world"), []byte("lo w"), uint8(3))
	f.Add([]byte("aaab"), []byte("aab"), uint8(1))
	f.Add([]byte("abc"), []byte("abcd"), uint8(2))
	f.Fuzz(func(t *testing.T, body, sub []byte, split uint8) {
		if len(sub) == 0 || split == 0 {
			return
		}
		var m matcher
		m.reset(&lane{Target: Target{ExpectBody: string(sub)}})
		for i := 0; i < len(body); i += int(split) {
			m.feed(body[i:min(i+int(split), len(body))])
		}
		if want := bytes.Contains(body, sub); m.ok() != want {
			t.Fatalf("body %q sub %q split %d: %v, want %v", body, sub, split, m.ok(), want)
		}
	})
}
