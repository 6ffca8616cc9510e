// A backend for zerodown's backend tests, written against nothing but Node's
// own http module. Usage: node node-server.js PORT
//
//   GET  /healthz               200 "ok"
//   GET  /hello                 200 "hello from node"
//   POST /echo                  the request body, as received
//   POST /sha256                "<hex sha256 of the body> <length>"
//   GET  /stream?n=2&every=2000 n lines, one every `every` ms, chunked
//   GET  /ws                    WebSocket (upgrade done by hand): echoes frames
'use strict';

const http = require('http');
const crypto = require('crypto');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node node-server.js PORT');
  process.exit(2);
}

// The RFC 6455 constant every server appends to Sec-WebSocket-Key.
const wsGUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function readBody(req, done) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => done(Buffer.concat(chunks)));
}

function send(res, status, body, type) {
  res.writeHead(status, { 'Content-Type': type || 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://backend');
  if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, 'ok\n');
  if (req.method === 'GET' && url.pathname === '/hello') return send(res, 200, 'hello from node\n');
  if (req.method === 'POST' && url.pathname === '/echo') {
    return readBody(req, (body) => send(res, 200, body, 'application/octet-stream'));
  }
  if (req.method === 'POST' && url.pathname === '/sha256') {
    return readBody(req, (body) => {
      const sum = crypto.createHash('sha256').update(body).digest('hex');
      send(res, 200, `${sum} ${body.length}\n`);
    });
  }
  if (req.method === 'GET' && url.pathname === '/stream') {
    const n = Number(url.searchParams.get('n') || '2');
    const every = Number(url.searchParams.get('every') || '2000');
    // No Content-Length: Node answers chunked and sends each write at once.
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    let i = 1;
    let timer;
    res.on('close', () => clearTimeout(timer));
    const line = () => {
      res.write(`line ${i} of ${n} from node\n`);
      if (i === n) return res.end();
      i++;
      timer = setTimeout(line, every);
    };
    return line();
  }
  send(res, 404, 'not found\n');
});

// Node's parser rejects bad framing (a repeated Content-Length, both
// Content-Length and chunked) before any handler runs; say which rule it was.
server.on('clientError', (err, socket) => {
  if (!socket.writable) return socket.destroy();
  const body = `bad request: ${err.code || err.message}\n`;
  socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
});

server.on('upgrade', (req, socket, head) => {
  const key = req.headers['sec-websocket-key'];
  if (req.url !== '/ws' || (req.headers.upgrade || '').toLowerCase() !== 'websocket' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + wsGUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\n' +
    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = head;
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const frame = parseFrame(buf);
      if (!frame) return;
      buf = buf.subarray(frame.size);
      if (frame.opcode === 0x8) { // close: answer with the same code, then hang up
        socket.end(encodeFrame(0x8, frame.payload));
        return;
      }
      if (frame.opcode === 0x9) { // ping
        socket.write(encodeFrame(0xA, frame.payload));
      } else if (frame.opcode === 0x1 || frame.opcode === 0x2) {
        socket.write(encodeFrame(frame.opcode, frame.payload));
      }
    }
  });
  socket.on('error', () => socket.destroy());
});

// parseFrame decodes one complete, unfragmented client frame from buf, or
// returns null when more bytes are needed.
function parseFrame(buf) {
  if (buf.length < 2) return null;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let off = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    off = 10;
  }
  const maskLen = masked ? 4 : 0;
  if (buf.length < off + maskLen + len) return null;
  const payload = Buffer.from(buf.subarray(off + maskLen, off + maskLen + len));
  if (masked) {
    const mask = buf.subarray(off, off + 4);
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
  }
  return { opcode, payload, size: off + maskLen + len };
}

// encodeFrame builds one final, unmasked server frame.
function encodeFrame(opcode, payload) {
  let head;
  if (payload.length < 126) {
    head = Buffer.from([0x80 | opcode, payload.length]);
  } else if (payload.length < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(payload.length, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([head, payload]);
}

server.listen(port, '127.0.0.1', () => console.error(`node backend listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
