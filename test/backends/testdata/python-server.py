"""A backend for zerodown's backend tests, written against nothing but
Python's http.server. Usage: python3 python-server.py PORT

  GET  /healthz               200 "ok"
  GET  /hello                 200 "hello from python"
  POST /echo                  the request body, as received
  POST /sha256                "<hex sha256 of the body> <length>"
  GET  /stream?n=2&every=2000 n lines, one every `every` ms, chunked
  GET  /ws                    WebSocket (upgrade done by hand): echoes frames

http.server reads no request bodies itself, so this script decodes both
Content-Length and chunked bodies; it rejects a request carrying both, or
more than one Content-Length, as RFC 9112 asks of a server.
"""

import base64
import hashlib
import http.server
import signal
import struct
import sys
import time
import urllib.parse

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class BadRequest(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "python-backend"

    def log_message(self, fmt, *args):
        pass

    def send_body(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        lengths = self.headers.get_all("Content-Length") or []
        te = ",".join(self.headers.get_all("Transfer-Encoding") or []).strip().lower()
        if te and lengths:
            raise BadRequest("both Transfer-Encoding and Content-Length")
        if len(lengths) > 1:
            raise BadRequest("Content-Length %r sent more than once" % lengths)
        if te:
            if te != "chunked":
                raise BadRequest("unsupported Transfer-Encoding %r" % te)
            return self.read_chunked()
        if not lengths:
            return b""
        try:
            n = int(lengths[0])
        except ValueError:
            raise BadRequest("bad Content-Length %r" % lengths[0])
        body = self.rfile.read(n)
        if len(body) != n:
            raise BadRequest("body ended after %d of %d bytes" % (len(body), n))
        return body

    def read_chunked(self):
        parts = []
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\r\n"):
                raise BadRequest("bad chunk size line %r" % line)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size line %r" % line)
            if size == 0:
                break
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                raise BadRequest("chunk cut short")
            parts.append(data)
        while True:  # trailer section
            line = self.rfile.readline(1024)
            if line in (b"\r\n", b""):
                break
        return b"".join(parts)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            return self.send_body(200, b"ok\n")
        if url.path == "/hello":
            return self.send_body(200, b"hello from python\n")
        if url.path == "/stream":
            return self.stream(urllib.parse.parse_qs(url.query))
        if url.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        self.send_body(404, b"not found\n")

    def do_POST(self):
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            return self.send_body(400, ("bad request: %s\n" % e).encode())
        path = urllib.parse.urlsplit(self.path).path
        if path == "/echo":
            return self.send_body(200, body, "application/octet-stream")
        if path == "/sha256":
            return self.send_body(200, ("%s %d\n" % (hashlib.sha256(body).hexdigest(), len(body))).encode())
        self.send_body(404, b"not found\n")

    def stream(self, query):
        n = int(query.get("n", ["2"])[0])
        every = int(query.get("every", ["2000"])[0]) / 1000.0
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(1, n + 1):
            if i > 1:
                time.sleep(every)  # the pause between chunks is the point
            line = ("line %d of %d from python\n" % (i, n)).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.close_connection = True
            return self.send_body(400, b"no Sec-WebSocket-Key\n")
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = self.read_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:  # close: answer with the same code, then hang up
                self.wfile.write(encode_frame(0x8, payload))
                return
            if opcode == 0x9:
                self.wfile.write(encode_frame(0xA, payload))
            elif opcode in (0x1, 0x2):
                self.wfile.write(encode_frame(opcode, payload))

    def read_frame(self):
        """Reads one unfragmented client frame; None when the peer is gone."""
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode = head[0] & 0x0F
        masked = head[1] & 0x80
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.rfile.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if masked else b"\0\0\0\0"
        data = self.rfile.read(n)
        if len(data) < n:
            return None
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def encode_frame(opcode, payload):
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 python-server.py PORT")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("python backend listening on 127.0.0.1:%s" % sys.argv[1], file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
