import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as zlib from 'node:zlib';
import { Dir } from '../../src/types.js';
import { createHttpAnalyzer, detectHttp } from '../../src/analyzers/http/index.js';
import { harness, stripTs } from './helpers.js';

const REQ = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\n${extra}\r\n`;
const RESP = (body: string, extra = '') =>
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('HTTP/1 exchanges', () => {
  it('pairs keep-alive requests and responses in order', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/a?x=1'));
    h.send(Dir.ToClient, RESP('hello'));
    h.send(Dir.ToServer, REQ('/b'));
    h.send(Dir.ToClient, RESP('world!'));
    expect(h.events).toHaveLength(2);
    const [a, b] = h.fields();
    expect(a).toMatchObject({
      http: {
        version: '1.1',
        request: { method: 'GET', headers: { host: 'example.com', 'user-agent': 'test/1.0' } },
        response: { status_code: 200, mime_type: 'text/plain', body: { bytes: 5, content: 'hello' } },
      },
      url: { domain: 'example.com', path: '/a', query: 'x=1', original: '/a?x=1', scheme: 'https' },
      user_agent: { original: 'test/1.0' },
    });
    expect(b.url.path).toBe('/b');
    expect(b.http.response.body.content).toBe('world!');
    expect(h.events[0].dataset).toBe('http');
    expect(h.events[0].decrypted).toBe(true);
    expect(h.anomalies).toEqual([]);
  });

  it('pairs pipelined requests FIFO and uses each request time', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/1') + REQ('/2') + 'HEAD /3 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n');
    h.send(Dir.ToClient, RESP('one') + RESP('two') + 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n' + RESP('x'));
    const f = h.fields().slice(0, 3);
    expect(f.map((x) => x.url.path)).toEqual(['/1', '/2', '/3']);
    expect(f.map((x) => x.http.response.body.bytes)).toEqual([3, 3, 0]);
    expect(f[2].url).toMatchObject({ domain: 'example.com', port: 8443 });
    // the extra response without a request is still reported, and counted
    h.close();
    expect(h.anomalies).toContain('http_response_without_request');
  });

  it('decodes chunked bodies with extensions and trailers', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/c'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '4;ext=1\r\n{"a"\r\n6\r\n:12345\r\n1\r\n}\r\n0\r\nX-Trailer: yes\r\nServer-Timing: db;dur=5\r\nno colon here\r\n\r\n');
    h.send(Dir.ToServer, 'POST /d HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nAuthorization: Bearer abc\r\n\r\n');
    h.send(Dir.ToClient, RESP('ok'));
    const f = h.fields();
    expect(f).toHaveLength(2);
    expect(f[0].http.response.body).toEqual({ bytes: 11, content: '{"a":12345}', magic: hexStart('{"a":12345}') });
    // trailer fields are kept like header fields (names in lower case; a line without a colon is counted)
    expect(f[0].http.response.trailers).toEqual({ 'x-trailer': 'yes', 'server-timing': 'db;dur=5' });
    expect(h.anomalies).toContain('http_malformed');
    // and redacted like them
    expect(f[1].http.request.trailers).toEqual({ authorization: 'Bearer [REDACTED]' });
    expect(f[1].http.request.body.bytes).toBe(2);
    expect(f[1].http.response.trailers).toBeUndefined();
    expect(f[1].http.response.body.content).toBe('ok');
  });

  it('knows HEAD, 204 and 304 responses have no body', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'HEAD / HTTP/1.1\r\nHost: h\r\n\r\n' + REQ('/204') + REQ('/304') + REQ('/next'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n' +
      'HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n' + RESP('after'));
    const f = h.fields();
    expect(f.map((x) => x.http.response.status_code)).toEqual([200, 204, 304, 200]);
    expect(f.map((x) => x.http.response.body.bytes)).toEqual([0, 0, 0, 5]);
    expect(f[3].http.response.body.content).toBe('after');
  });

  it('treats 100 Continue as interim and pairs the final response', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    h.send(Dir.ToClient, 'HTTP/1.1 100 Continue\r\n\r\n');
    expect(h.events).toHaveLength(0);
    h.send(Dir.ToServer, 'hello');
    h.send(Dir.ToClient, 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n');
    const f = h.fields();
    expect(f).toHaveLength(1);
    expect(f[0].http.response.status_code).toBe(201);
    expect(f[0].http.request.body).toEqual({ bytes: 5, content: 'hello', magic: hexStart('hello') });
  });

  it('reads a response without length until the connection ends', () => {
    const h = harness('http/1.0');
    h.send(Dir.ToServer, 'GET /old HTTP/1.0\r\n\r\n');
    h.send(Dir.ToClient, 'HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>');
    h.send(Dir.ToClient, '</html>');
    expect(h.events).toHaveLength(0);
    h.a.onEnd(Dir.ToClient, 'fin', { sec: 9, nsec: 0 });
    const f = h.fields();
    expect(f).toHaveLength(1);
    expect(f[0].http.version).toBe('1.0');
    expect(f[0].http.response.body).toEqual({ bytes: 13, content: '<html></html>', magic: hexStart('<html></html>') });
  });

  it('emits an unanswered request at close', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/lonely'));
    expect(h.events).toHaveLength(0);
    h.close();
    const f = h.fields();
    expect(f).toHaveLength(1);
    expect(f[0].url.path).toBe('/lonely');
    expect(f[0].http.response).toBeUndefined();
  });

  it('stops parsing after 101 Switching Protocols and after a CONNECT tunnel', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    h.send(Dir.ToClient, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello');
    h.send(Dir.ToServer, '\x81\x85garbage GET / HTTP/1.1\r\n\r\n');
    h.close();
    expect(h.fields()).toHaveLength(1);
    expect(h.fields()[0].http.response.status_code).toBe(101);
    expect(h.anomalies).toEqual(['http_tunnel_opaque']);

    const c = harness('http/1.1');
    c.send(Dir.ToServer, 'CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n\x16\x03\x01binary');
    c.send(Dir.ToClient, 'HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03more');
    c.close();
    const f = c.fields();
    expect(f).toHaveLength(1);
    expect(f[0].url).toMatchObject({ domain: 'db.internal', port: 5432, original: 'db.internal:5432' });
    expect(c.anomalies).toEqual(['http_tunnel_opaque']);
  });

  it('tolerates LF-only line endings and folded header lines', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GET /lf HTTP/1.1\nHost: lf.example\nX-Long: a\n  b\n\n');
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok');
    const f = h.fields();
    expect(f).toHaveLength(1);
    expect(f[0].url.domain).toBe('lf.example');
    expect(f[0].http.request.headers['x-long']).toBe('a b');
    expect(f[0].http.response.body.bytes).toBe(2);
  });

  it('joins repeated headers and keeps set-cookie as an array', () => {
    const h = harness('http/1.1', { redactCredentials: false });
    h.send(Dir.ToServer, REQ('/', 'Accept: a\r\nAccept: b\r\n'));
    h.send(Dir.ToClient, RESP('', 'Set-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n'));
    const f = h.fields()[0];
    expect(f.http.request.headers.accept).toBe('a, b');
    expect(f.http.response.headers['set-cookie']).toEqual(['a=1', 'b=2; Path=/']);
  });

  it('parses absolute-form targets', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GET http://proxy.example:8080/p/q?z=9 HTTP/1.1\r\nHost: other\r\n\r\n');
    h.close();
    expect(h.fields()[0].url).toMatchObject({ domain: 'proxy.example', port: 8080, path: '/p/q', query: 'z=9', original: 'http://proxy.example:8080/p/q?z=9' });
  });
});

describe('HTTP/1 content decoding', () => {
  const text = 'The quick brown fox jumps over the lazy dog. '.repeat(40);

  it('captures gzip, deflate (zlib and raw) and br bodies decoded, counting wire bytes', () => {
    const encs: [string, Buffer][] = [
      ['gzip', zlib.gzipSync(text)],
      ['deflate', zlib.deflateSync(text)],
      ['deflate', zlib.deflateRawSync(text)],
      ['br', zlib.brotliCompressSync(text)],
    ];
    for (const [name, body] of encs) {
      const h = harness('http/1.1', { bodyCaptureBytes: 100 });
      h.send(Dir.ToServer, REQ('/z'));
      h.send(Dir.ToClient, Buffer.concat([
        Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: ${name}\r\nContent-Length: ${body.length}\r\n\r\n`),
        body,
      ]));
      const f = h.fields()[0];
      expect(f.http.response.body.bytes).toBe(body.length);
      expect(f.http.response.body.content).toBe(text.slice(0, 100));
      expect(h.anomalies).toEqual([]);
    }
  });

  it('decodes a prefix of a large encoded body and stacked codings', () => {
    let big = '';
    for (let i = 0; big.length < 300_000; i++) big += `line ${i} ${(i * 2654435761) % 1000003}\n`;
    const gz = zlib.gzipSync(big);
    const stacked = zlib.brotliCompressSync(zlib.gzipSync('stacked!'));
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/big') + REQ('/stacked'));
    h.send(Dir.ToClient, Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: ${gz.length}\r\n\r\n`), gz,
      Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip, br\r\nContent-Length: ${stacked.length}\r\n\r\n`), stacked,
    ]), 1400);
    const f = h.fields();
    expect(gz.length).toBeGreaterThan(16 * 1024);
    expect(f[0].http.response.body).toEqual({ bytes: gz.length, content: big.slice(0, 4096), magic: hexStart(big) });
    expect(f[1].http.response.body.content).toBe('stacked!');
    expect(h.anomalies).toEqual([]);
  });

  it('stops at the decode limit on a compression bomb and still captures a prefix', () => {
    const bomb = zlib.gzipSync(Buffer.alloc(8 << 20, 0x61));
    const h = harness('http/1.1', { maxDecodedBodyBytes: 64 * 1024 });
    h.send(Dir.ToServer, REQ('/bomb'));
    h.send(Dir.ToClient, Buffer.concat([
      Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: ${bomb.length}\r\n\r\n`),
      bomb,
    ]));
    const f = h.fields()[0];
    expect(h.anomalies).toContain('http_body_decode_limit');
    expect(f.http.response.body.bytes).toBe(bomb.length);
    expect(f.http.response.body.content).toBe('a'.repeat(4096));
  });

  it('does not capture binary bodies and counts corrupt encodings', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/img') + REQ('/bad'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG');
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope');
    const f = h.fields();
    expect(f[0].http.response.body).toEqual({ bytes: 4, magic: '89504e47' }); // PNG signature, not captured as text
    expect(f[1].http.response.body).toEqual({ bytes: 4 });
    expect(h.anomalies).toContain('http_body_decode_error');
  });

  it('honours bodyCaptureBytes = 0', () => {
    const h = harness('http/1.1', { bodyCaptureBytes: 0 });
    h.send(Dir.ToServer, REQ('/'));
    h.send(Dir.ToClient, RESP('secret text'));
    expect(h.fields()[0].http.response.body).toEqual({ bytes: 11 });
  });
});

describe('HTTP/1 redaction', () => {
  it('redacts authorization, cookies, secret query parameters and form fields', () => {
    const h = harness('http/1.1');
    const form = 'user=bob&password=hunter2&remember=1';
    h.send(Dir.ToServer, `POST /login?token=abc&page=2&api_key=k HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dXNlcjpwYXNz\r\n` +
      `Proxy-Authorization: Bearer xyz\r\nCookie: SESSIONID=s3cr3t; theme=dark\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
      `Content-Length: ${form.length}\r\n\r\n${form}`);
    h.send(Dir.ToClient, RESP('', 'Set-Cookie: SID=abc123; Path=/; HttpOnly\r\n'));
    const f = h.fields()[0];
    expect(f.http.request.headers.authorization).toBe('Basic [REDACTED]');
    expect(f.http.request.headers['proxy-authorization']).toBe('Bearer [REDACTED]');
    expect(f.http.request.headers.cookie).toBe('SESSIONID=[REDACTED]; theme=[REDACTED]');
    expect(f.http.response.headers['set-cookie']).toEqual(['SID=[REDACTED]; Path=/; HttpOnly']);
    expect(f.url.query).toBe('token=[REDACTED]&page=2&api_key=[REDACTED]');
    expect(f.url.original).toBe('/login?token=[REDACTED]&page=2&api_key=[REDACTED]');
    expect(f.http.request.body.content).toBe('user=bob&password=[REDACTED]&remember=1');
    expect(JSON.stringify(h.events)).not.toMatch(/s3cr3t|hunter2|dXNlcjpwYXNz|abc123|xyz/);
  });

  it('keeps values when redaction is off', () => {
    const h = harness('http/1.1', { redactCredentials: false });
    h.send(Dir.ToServer, 'GET /?token=abc HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n');
    h.close();
    const f = h.fields()[0];
    expect(f.url.query).toBe('token=abc');
    expect(f.http.request.headers.authorization).toBe('Basic dXNlcjpwYXNz');
  });
});

describe('HTTP/1 robustness', () => {
  const conversation: [Dir, string][] = [
    [Dir.ToServer, REQ('/a') + 'POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
    [Dir.ToClient, 'HTTP/1.1 100 Continue\r\n\r\n' + RESP('first') +
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ];
  const gz = zlib.gzipSync('compressed text body');
  const tail = Buffer.concat([Buffer.from(`${gz.length.toString(16)}\r\n`), gz, Buffer.from('\r\n0\r\n\r\n')]);

  function run(split?: number) {
    const h = harness('http/1.1');
    for (const [d, s] of conversation) h.send(d, s, split);
    h.send(Dir.ToClient, tail, split);
    h.send(Dir.ToServer, 'HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n', split);
    h.send(Dir.ToClient, 'HTTP/1.1 304 Not Modified\r\n\r\n', split);
    h.close();
    return h;
  }

  it('gives the same events when fed byte by byte', () => {
    const whole = run();
    expect(whole.events).toHaveLength(3);
    expect(whole.fields()[1].http.response.body.content).toBe('compressed text body');
    expect(whole.fields()[1].http.request.body).toEqual({ bytes: 3, content: 'abc', magic: hexStart('abc') });
    for (const split of [1, 2, 3, 7, 13]) {
      const h = run(split);
      expect(stripTs(h.events)).toEqual(stripTs(whole.events));
      expect(h.anomalies).toEqual(whole.anomalies);
    }
  });

  it('gives the same events for any chunking of random valid conversations', () => {
    const reqKind = fc.constantFrom('get', 'head', 'post-cl', 'post-chunked');
    const respKind = fc.constantFrom('cl', 'chunked', '204', '304', 'continue', 'gzip');
    const conv = fc.array(fc.tuple(reqKind, respKind, fc.string({ maxLength: 30 })), { minLength: 1, maxLength: 6 });
    fc.assert(fc.property(conv, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }), (msgs, cuts) => {
      const qs: string[] = [];
      const rs: string[] = [];
      msgs.forEach(([rk, sk, body], i) => {
        let q = '';
        let r = '';
        const b = Buffer.from(body, 'utf8').toString('latin1');
        if (rk === 'get') q += REQ(`/g${i}?i=${i}`);
        else if (rk === 'head') q += `HEAD /h${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
        else if (rk === 'post-cl') q += `POST /p${i} HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: ${b.length}\r\n\r\n${b}`;
        else q += `POST /c${i} HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${b.length ? `${b.length.toString(16)}\r\n${b}\r\n` : ''}0\r\n\r\n`;
        const noBody = rk === 'head';
        if (sk === 'cl') r += `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${b.length}\r\n\r\n${noBody ? '' : b}`;
        else if (sk === 'chunked') r += `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${noBody ? '' : `${b.length ? `${b.length.toString(16)};x=y\r\n${b}\r\n` : ''}0\r\nT: 1\r\n\r\n`}`;
        else if (sk === '204' || sk === '304') r += `HTTP/1.1 ${sk} X\r\n\r\n`;
        else if (sk === 'continue') r += `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`;
        else {
          const gz = zlib.gzipSync(body).toString('latin1');
          r += `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: ${noBody ? 99 : gz.length}\r\n\r\n${noBody ? '' : gz}`;
        }
        qs.push(q);
        rs.push(r);
      });
      const feed = (split: boolean) => {
        const h = harness('http/1.1');
        if (!split) {
          h.send(Dir.ToServer, qs.join(''));
          h.send(Dir.ToClient, rs.join(''));
        } else {
          // Each request, then its response (the server answers after reading), in random pieces.
          let k = 0;
          for (let m = 0; m < qs.length; m++) {
            for (const [d, str] of [[Dir.ToServer, qs[m]], [Dir.ToClient, rs[m]]] as [Dir, string][]) {
              const b = Buffer.from(str, 'latin1');
              for (let i = 0; i < b.length;) {
                const n = cuts[k++ % cuts.length];
                h.send(d, b.subarray(i, i + n));
                i += n;
              }
            }
          }
        }
        h.close();
        return h;
      };
      const whole = feed(false);
      const pieces = feed(true);
      expect(whole.events).toHaveLength(msgs.length);
      expect(whole.anomalies).toEqual([]);
      expect(stripTs(pieces.events)).toEqual(stripTs(whole.events));
      expect(pieces.anomalies).toEqual([]);
    }), { numRuns: 300 });
  });

  it('resyncs after a malformed request line', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GARBAGE LINE\r\nmore junk\r\n' + REQ('/good'));
    h.send(Dir.ToClient, RESP('ok'));
    expect(h.anomalies).toContain('http_malformed');
    expect(h.fields()).toHaveLength(1);
    expect(h.fields()[0].url.path).toBe('/good');
  });

  it('resyncs responses at the next status line', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/1') + REQ('/2'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\nstuff\r\n' + RESP('two'));
    expect(h.anomalies).toContain('http_malformed');
    const f = h.fields();
    expect(f).toHaveLength(2);
    expect(f[0].http.response.status_code).toBe(200);
    expect(f[0].http.response.body).toBeUndefined();
    expect(f[1].url.path).toBe('/2');
    expect(f[1].http.response.body.content).toBe('two');
  });

  it('keeps sync across a gap inside a body of known length', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/big') + REQ('/after'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789');
    h.a.onGap(Dir.ToClient, 80, { sec: 1, nsec: 0 });
    h.send(Dir.ToClient, '0123456789' + RESP('next'));
    const f = h.fields();
    expect(f).toHaveLength(2);
    expect(f[0].http.response.body.bytes).toBe(100);
    expect(f[0].http.response.body.content).toBe('0123456789');
    expect(f[1].http.response.body.content).toBe('next');
    expect(h.anomalies).toEqual([]);
  });

  it('after a gap inside a body, never makes an exchange from body bytes that look like HTTP', () => {
    // The body is a transcript holding status lines; the gap is reported longer than the bytes
    // lost (TLS counts lost ciphertext), so the estimated end of the body falls inside it.
    const transcript = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n'.repeat(20);
    for (const [lost, reported] of [[40, 60], [40, 40], [40, 5000]]) {
      const h = harness('http/1.1');
      h.send(Dir.ToServer, REQ('/transcript.txt'));
      const head = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${transcript.length}\r\n\r\n`;
      h.send(Dir.ToClient, head + transcript.slice(0, 100));
      h.a.onGap(Dir.ToClient, reported, { sec: 1, nsec: 0 });
      h.send(Dir.ToClient, transcript.slice(100 + lost));
      h.send(Dir.ToServer, REQ('/next'));
      h.send(Dir.ToClient, RESP('next'));
      const f = h.fields();
      expect(f.map((x) => x.url?.path), `lost ${lost}, reported ${reported}`).toEqual(['/transcript.txt', '/next']);
      expect(f[0].http.response.status_code).toBe(200);
      expect(f[1].http.response.body.content).toBe('next');
      expect(h.anomalies).not.toContain('http_response_without_request');
    }
  });

  it('resyncs after a gap in the headers and marks the message incomplete', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GET /cut HTTP/1.1\r\nHost: h\r\nX-A: ');
    h.a.onGap(Dir.ToServer, 50, { sec: 1, nsec: 0 });
    h.send(Dir.ToServer, 'tail of something\r\n\r\n' + REQ('/fine'));
    h.send(Dir.ToClient, RESP('r1') + RESP('r2'));
    expect(h.anomalies).toContain('http_gap_resync');
    const f = h.fields();
    expect(f.map((x) => x.url.path)).toEqual(['/cut', '/fine']);
  });

  it('counts oversized header blocks and keeps going', () => {
    const h = harness('http/1.1', { maxHeaderBytes: 200 });
    h.send(Dir.ToServer, `GET /huge HTTP/1.1\r\nX-Big: ${'x'.repeat(500)}\r\n\r\n` + REQ('/small'));
    h.send(Dir.ToClient, RESP('a') + RESP('b'));
    expect(h.anomalies).toContain('http_header_too_large');
    expect(h.fields().some((f) => f.url?.path === '/small')).toBe(true);
  });

  it('bounds pending pipelined requests', () => {
    const h = harness('http/1.1', { maxPendingExchanges: 3 });
    h.send(Dir.ToServer, REQ('/1') + REQ('/2') + REQ('/3') + REQ('/4') + REQ('/5'));
    expect(h.anomalies.filter((a) => a === 'http_too_many_pending')).toHaveLength(2);
    expect(h.events).toHaveLength(2);
  });

  it('never throws on random bytes in either direction', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 3 })), { maxLength: 20 }),
      (steps) => {
        const h = harness('http/1.1');
        for (const [toServer, bytes, gap] of steps) {
          const d = toServer ? Dir.ToServer : Dir.ToClient;
          h.a.onData(d, Buffer.from(bytes), { sec: 1, nsec: 0 });
          if (gap === 3) h.a.onGap(d, bytes.length + 1, { sec: 1, nsec: 0 });
        }
        h.close();
      },
    ), { numRuns: 500 });
  });

  it('never throws on random mutations and truncations of a valid conversation', () => {
    const full = Buffer.from(conversation[1][1] + tail.toString('latin1'), 'latin1');
    const req = Buffer.from(conversation[0][1], 'latin1');
    for (let n = 0; n <= full.length; n += 3) {
      const h = harness('http/1.1');
      h.send(Dir.ToServer, req.subarray(0, Math.min(n, req.length)));
      h.send(Dir.ToClient, full.subarray(0, n));
      h.close();
      expect(h.events.length).toBeGreaterThanOrEqual(n >= req.length ? 2 : 0);
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: full.length - 1 }), fc.integer({ min: 0, max: 255 }), (pos, val) => {
      const m = Buffer.from(full);
      m[pos] = val;
      const h = harness('http/1.1');
      h.send(Dir.ToServer, req);
      h.send(Dir.ToClient, m, 5);
      h.close();
    }), { numRuns: 300 });
  });
});

describe('HTTP/1 edge cases', () => {
  it('counts Transfer-Encoding with Content-Length and frames by chunked', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' + REQ('/next'));
    h.send(Dir.ToClient, RESP('a') + RESP('b'));
    expect(h.anomalies).toEqual(['http_te_and_content_length']);
    const f = h.fields();
    expect(f.map((x) => x.url.path)).toEqual(['/s', '/next']);
    expect(f[0].http.request.body.bytes).toBe(5);
  });

  it('redacts the password in absolute-form userinfo', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, 'GET http://bob:pw123@proxy.example/x?pwd=1 HTTP/1.1\r\n\r\n');
    h.close();
    const u = h.fields()[0].url;
    expect(u.original).toBe('http://bob:[REDACTED]@proxy.example/x?pwd=[REDACTED]');
    expect(u.domain).toBe('proxy.example');
    expect(JSON.stringify(u)).not.toContain('pw123');
  });

  it('reports a response seen without its request (capture started mid-connection)', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToClient, RESP('orphan'));
    expect(h.anomalies).toEqual(['http_response_without_request']);
    const f = h.fields()[0];
    expect(f.http.response.body.content).toBe('orphan');
    expect(f.http.request).toBeUndefined();
  });

  it('reports a message cut by the end of the stream', () => {
    const h = harness('http/1.1');
    h.send(Dir.ToServer, REQ('/cut'));
    h.send(Dir.ToClient, 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345');
    h.close();
    expect(h.anomalies).toEqual(['http_truncated_message']);
    expect(h.fields()[0].http.response.body.bytes).toBe(5);
  });

  it('gives up detection when the stream starts with a gap', () => {
    const h = harness(undefined);
    h.a.onGap(Dir.ToServer, 10, { sec: 1, nsec: 0 });
    h.send(Dir.ToServer, REQ('/x'));
    h.close();
    expect(h.events).toHaveLength(0);
    expect(h.anomalies).toEqual(['http_not_detected']);
  });
});

describe('safety net', () => {
  it('counts a failure inside the analyzer instead of throwing, and stops that connection', () => {
    const anomalies: string[] = [];
    let calls = 0;
    const a = createHttpAnalyzer('http/1.1', { emit: () => { calls++; throw new Error('sink failed'); } }, { anomaly: (c) => anomalies.push(c) });
    const ts = { sec: 1, nsec: 0 };
    expect(() => {
      a.onData(Dir.ToServer, Buffer.from(REQ('/a') + REQ('/b')), ts);
      a.onData(Dir.ToClient, Buffer.from(RESP('x') + RESP('y')), ts);
      a.onClose(ts);
    }).not.toThrow();
    expect(anomalies).toEqual(['http_internal_error']);
    expect(calls).toBe(1);
  });
});

describe('detectHttp', () => {
  it('recognises the h2 preface, request lines, and rejects others', () => {
    expect(detectHttp(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00'))).toBe('h2');
    expect(detectHttp(Buffer.from('GET / HTTP/1.1\r\n'))).toBe('http1');
    expect(detectHttp(Buffer.from('PROPFIND /x HTTP/1.1'))).toBe('http1');
    expect(detectHttp(Buffer.from('PRI * HTTP/2.0'))).toBeUndefined();
    expect(detectHttp(Buffer.from('HELO mail'))).toBeUndefined();
    expect(detectHttp(Buffer.from([0x16, 0x03, 0x01]))).toBeUndefined();
    expect(detectHttp(Buffer.alloc(0))).toBeUndefined();
  });

  it('picks the analyzer from the first client bytes when ALPN is absent', () => {
    const h = harness(undefined);
    h.send(Dir.ToServer, 'GE', 1);
    h.send(Dir.ToServer, 'T /sniffed HTTP/1.1\r\nHost: s\r\n\r\n');
    h.send(Dir.ToClient, RESP('y'));
    expect(h.fields()[0].url.path).toBe('/sniffed');
    const n = harness(undefined);
    n.send(Dir.ToServer, 'EHLO example\r\n');
    n.close();
    expect(n.events).toHaveLength(0);
    expect(n.anomalies).toEqual(['http_not_detected']);
  });
});

/** body.magic: hex of the first 16 bytes of the (decoded) body. */
function hexStart(s: string | Buffer): string {
  return Buffer.from(s).subarray(0, 16).toString('hex');
}
