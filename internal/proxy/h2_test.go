package proxy

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Exchange sends one HTTP/2 request with exactly the header fields given
// — pseudo-headers included, valid or not — and returns the :status of the
// answer, or "reset" when the stream or connection was refused.
func h2Exchange(t *testing.T, addr string, fields [][2]string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "reset"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					return h.Value
				}
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return "reset"
		}
	}
}

// TestH2RequestsValidated: an HTTP/2 request's pseudo-headers are not
// HTTP/1.1 text; a space in :method, :path or :authority, or a Host beside
// :authority that names another host, would reach the target as a broken
// request line or two Hosts. They are refused before anything is written.
func TestH2RequestsValidated(t *testing.T) {
	b := newScriptedBackend(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	cfg := testConfig(t, b.addr())
	withTLS(t, cfg)
	srv, _ := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", b.addr()) == "healthy" })
	addr := srv.ListenerAddrs()[0]
	base := func(method, path, authority string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", method}, {":scheme", "https"}, {":path", path}, {":authority", authority}}, extra...)
	}
	cases := []struct {
		name   string
		fields [][2]string
		ok     bool
	}{
		{"valid", base("GET", "/?id=valid", "example.com"), true},
		{"same host beside authority", base("GET", "/?id=samehost", "example.com", [2]string{"host", "example.com"}), true},
		{"space in path", base("GET", "/?id=sp HTTP/1.1\r\nX: y", "example.com"), false},
		{"space in path 2", base("GET", "/a b?id=sp2", "example.com"), false},
		{"space in method", base("GE T", "/?id=meth", "example.com"), false},
		{"space in authority", base("GET", "/?id=auth", "exa mple.com"), false},
		{"other host beside authority", base("GET", "/?id=twohosts", "example.com", [2]string{"host", "evil.example"}), false},
		{"path not absolute", base("GET", "id=rel", "example.com"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(b.requests())
			status := h2Exchange(t, addr, c.fields)
			reached := len(b.requests()) - before
			if c.ok && (status != "200" || reached != 1) {
				t.Fatalf("valid request: status %s, reached the target %d times", status, reached)
			}
			if !c.ok {
				if status == "200" || reached != 0 {
					t.Fatalf("invalid request answered %s and reached the target %d times: %q", status, reached, b.requests())
				}
			}
		})
	}
	for _, r := range b.requests() {
		if n := len(r.header("Host")); n != 1 {
			t.Fatalf("target saw %d Host headers:\n%s", n, r.head)
		}
	}
}
