import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as zlib from 'node:zlib';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { once } from 'node:events';
import { Dir } from '../../src/types.js';
import { harness, stripTs } from './helpers.js';
import { TestHpackEncoder, PREFACE, frame, settings, data, headers } from './h2util.js';

function req(enc: TestHpackEncoder, path: string, method = 'GET', extra: [string, string][] = []): Buffer {
  return enc.encode([[':method', method], [':scheme', 'https'], [':authority', 'www.example.com:8443'], [':path', path], ['user-agent', 'h2test'], ...extra]);
}
function resp(enc: TestHpackEncoder, status: string, extra: [string, string][] = []): Buffer {
  return enc.encode([[':status', status], ['content-type', 'text/plain'], ...extra]);
}

/** A conversation with three interleaved streams, CONTINUATION, padding and priority. */
function conversation(): [Dir, Buffer][] {
  const c = new TestHpackEncoder();
  const s = new TestHpackEncoder();
  return [
    [Dir.ToServer, Buffer.concat([PREFACE, settings([[1, 4096]])])],
    [Dir.ToClient, Buffer.concat([settings([[3, 100]]), frame(4, 1, 0)])],
    [Dir.ToServer, Buffer.concat([
      headers(1, req(c, '/one?a=1'), { end: true, priority: true }),
      headers(3, req(c, '/two', 'POST', [['content-type', 'application/json'], ['x-long', 'v'.repeat(100)]]), { split: 20, pad: 3 }),
      headers(5, req(c, '/three'), { end: true }),
      data(3, '{"k":', false, 4),
      frame(6, 0, 0, Buffer.alloc(8)), // PING
      frame(0xfa, 0, 3, 'unknown frame type is ignored'),
      data(3, '1}', true),
    ])],
    [Dir.ToClient, Buffer.concat([
      headers(5, resp(s, '200')),
      headers(1, resp(s, '404')),
      data(5, 'three-', false, 10),
      frame(8, 0, 0, Buffer.from([0, 0, 1, 0])), // WINDOW_UPDATE
      data(1, 'not found', true),
      headers(3, resp(s, '200', [['set-cookie', 'sid=1'], ['set-cookie', 'lang=en']]), { pad: 0 }),
      data(5, 'body', true),
      data(3, 'created', true),
    ])],
  ];
}

function play(conv: [Dir, Buffer][], split?: number, opts?: Parameters<typeof harness>[1]) {
  const h = harness('h2', opts);
  for (const [d, b] of conv) h.send(d, b, split);
  h.close();
  return h;
}

describe('HTTP/2 exchanges', () => {
  it('emits one event per stream for interleaved streams with CONTINUATION and padding', () => {
    const h = play(conversation());
    expect(h.anomalies).toEqual([]);
    const f = h.fields();
    expect(f.map((x) => x.url.path)).toEqual(['/one', '/three', '/two']);
    const [one, three, two] = f;
    expect(one).toMatchObject({
      http: { version: '2', request: { method: 'GET' }, response: { status_code: 404, body: { bytes: 9, content: 'not found' } } },
      url: { domain: 'www.example.com', port: 8443, query: 'a=1', original: '/one?a=1', scheme: 'https' },
      user_agent: { original: 'h2test' },
    });
    expect(three.http.response.body).toEqual({ bytes: 10, content: 'three-body', magic: hexStart('three-body') });
    expect(two.http.request).toMatchObject({ method: 'POST', body: { bytes: 7, content: '{"k":1}' } });
    expect(two.http.request.headers['x-long']).toBe('v'.repeat(100));
    expect(two.http.response.headers['set-cookie']).toEqual(['sid=[REDACTED]', 'lang=[REDACTED]']);
    expect(two.http.response.body.content).toBe('created');
    expect(two.http.response.mime_type).toBe('text/plain');
    expect(one.http.request.headers[':method']).toBeUndefined();
  });

  it('gives the same events when fed byte by byte or in odd chunks', () => {
    const whole = play(conversation());
    for (const split of [1, 5, 9, 17]) {
      const h = play(conversation(), split);
      expect(stripTs(h.events)).toEqual(stripTs(whole.events));
      expect(h.anomalies).toEqual([]);
    }
  });

  it('gives the same events for random chunkings', () => {
    const whole = stripTs(play(conversation()).events);
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 12 }), (cuts) => {
      const h = harness('h2');
      let k = 0;
      for (const [d, b] of conversation()) {
        for (let i = 0; i < b.length;) {
          const n = cuts[k++ % cuts.length];
          h.send(d, b.subarray(i, i + n));
          i += n;
        }
      }
      h.close();
      expect(h.anomalies).toEqual([]);
      expect(stripTs(h.events)).toEqual(whole);
    }), { numRuns: 200 });
  });

  it('emits a reset stream with what is known', () => {
    const c = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/reset'), { end: true })]));
    h.send(Dir.ToClient, frame(3, 0, 1, Buffer.from([0, 0, 0, 8])));
    expect(h.events).toHaveLength(1);
    expect(h.fields()[0].url.path).toBe('/reset');
    expect(h.fields()[0].http.response).toBeUndefined();
  });

  it('accepts trailers and ignores 1xx interim headers', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/t'), { end: true })]));
    h.send(Dir.ToClient, Buffer.concat([
      headers(1, s.encode([[':status', '103'], ['link', '</a.css>']])),
      headers(1, resp(s, '200')),
      data(1, 'abc', false),
      headers(1, s.encode([['grpc-status', '0']]), { end: true }),
    ]));
    const f = h.fields();
    expect(f).toHaveLength(1);
    expect(f[0].http.response.status_code).toBe(200);
    expect(f[0].http.response.body.bytes).toBe(3);
    expect(f[0].http.response.trailers).toEqual({ 'grpc-status': '0' });
    expect(f[0].http.request.trailers).toBeUndefined();
  });

  it('reports pushed exchanges', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/page'), { end: true })]));
    const promised = Buffer.concat([Buffer.from([0, 0, 0, 2]), s.encode([[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.example.com'], [':path', '/style.css']])]);
    h.send(Dir.ToClient, Buffer.concat([
      frame(5, 0x4, 1, promised),
      headers(1, resp(s, '200')),
      data(1, 'page', true),
      headers(2, s.encode([[':status', '200'], ['content-type', 'text/css']])),
      data(2, 'b{}', true),
    ]));
    const f = h.fields();
    expect(f.map((x) => x.url.path)).toEqual(['/page', '/style.css']);
    expect(f[1].http.request.pushed).toBe(true);
    expect(f[1].http.response.body.content).toBe('b{}');
  });

  it('decodes gzip DATA and counts wire bytes, with a large DATA frame streamed', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const text = 'lorem ipsum dolor sit amet '.repeat(20000);
    const gz = zlib.gzipSync(text);
    const big = Buffer.alloc(1 << 20, 0x41);
    const conv: [Dir, Buffer][] = [
      [Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/gz'), { end: true }), headers(3, req(c, '/big'), { end: true })])],
      [Dir.ToClient, Buffer.concat([
        headers(1, resp(s, '200', [['content-encoding', 'gzip']])),
        data(1, gz, true),
        headers(3, s.encode([[':status', '200'], ['content-type', 'application/octet-stream']])),
        data(3, big, true, 200),
      ])],
    ];
    const h = play(conv, 4000);
    const f = h.fields();
    expect(f[0].http.response.body.bytes).toBe(gz.length);
    expect(f[0].http.response.body.content).toBe(text.slice(0, 4096));
    expect(f[1].http.response.body).toEqual({ bytes: big.length, magic: hexStart(big) });
  });

  it('honours SETTINGS_HEADER_TABLE_SIZE for dynamic table size updates', () => {
    const c = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToClient, settings([[1, 8192]]));
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, c.encode([[':method', 'GET'], [':path', '/big-table']], { sizeUpdate: 8192 }), { end: true })]));
    h.close();
    expect(h.anomalies).toEqual([]);
    expect(h.fields()[0].url.path).toBe('/big-table');

    const c2 = new TestHpackEncoder();
    const h2 = harness('h2');
    h2.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, c2.encode([[':method', 'GET'], [':path', '/x']], { sizeUpdate: 8192 }), { end: true })]));
    h2.close();
    expect(h2.anomalies).toEqual(['http2_compression_error']);
  });

  it('poisons a direction after an HPACK error but still emits complete exchanges', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/ok'), { end: true })]));
    h.send(Dir.ToClient, Buffer.concat([headers(1, resp(s, '200')), data(1, 'fine', true)]));
    h.send(Dir.ToServer, Buffer.concat([
      headers(3, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), { end: true }), // bad index
      headers(5, req(c, '/after'), { end: true }),
    ]));
    h.send(Dir.ToClient, Buffer.concat([headers(5, resp(s, '200')), data(5, 'x', true)]));
    h.close();
    expect(h.anomalies).toContain('http2_compression_error');
    expect(h.fields().map((x) => x.url?.path)).toEqual(['/ok']);
  });

  it('redacts credentials in HTTP/2 headers and the path', () => {
    const c = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, c.encode([
      [':method', 'GET'], [':scheme', 'https'], [':authority', 'api.example'], [':path', '/v1?access_token=tok123&x=2'],
      ['authorization', 'Bearer tok456'], ['cookie', 'a=1'], ['cookie', 'b=2'],
    ], { neverIndex: ['authorization'] }), { end: true })]));
    h.close();
    const f = h.fields()[0];
    expect(f.url.query).toBe('access_token=[REDACTED]&x=2');
    expect(f.url.original).toBe('/v1?access_token=[REDACTED]&x=2');
    expect(f.http.request.headers.authorization).toBe('Bearer [REDACTED]');
    expect(f.http.request.headers.cookie).toBe('a=[REDACTED]; b=[REDACTED]');
    expect(JSON.stringify(f)).not.toMatch(/tok123|tok456/);
  });

  it('bounds concurrent streams', () => {
    const c = new TestHpackEncoder();
    const h = harness('h2', { maxPendingExchanges: 2 });
    h.send(Dir.ToServer, Buffer.concat([PREFACE, ...[1, 3, 5, 7].map((sid) => headers(sid, req(c, `/${sid}`), { end: true }))]));
    h.close();
    expect(h.events).toHaveLength(2);
    expect(h.anomalies).toEqual(['http2_too_many_streams', 'http2_too_many_streams']);
  });

  it('stops a direction at a gap and emits pending streams at close', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/g'), { end: true })]));
    h.send(Dir.ToClient, headers(1, resp(s, '200')));
    h.a.onGap(Dir.ToClient, 100, { sec: 1, nsec: 0 });
    h.send(Dir.ToClient, data(1, 'late', true));
    h.close();
    expect(h.anomalies).toEqual(['http2_gap']);
    expect(h.fields()[0].http.response.status_code).toBe(200);
  });

  it('keeps frame sync across a gap inside a DATA frame', () => {
    const c = new TestHpackEncoder();
    const s = new TestHpackEncoder();
    const h = harness('h2');
    h.send(Dir.ToServer, Buffer.concat([PREFACE, headers(1, req(c, '/g'), { end: true }), headers(3, req(c, '/h'), { end: true })]));
    const d = data(1, 'x'.repeat(100), true);
    h.send(Dir.ToClient, Buffer.concat([headers(1, resp(s, '200')), d.subarray(0, 30)]));
    h.a.onGap(Dir.ToClient, 50, { sec: 1, nsec: 0 });
    h.send(Dir.ToClient, Buffer.concat([d.subarray(80), headers(3, resp(s, '200')), data(3, 'ok', true)]));
    expect(h.anomalies).toEqual([]);
    const f = h.fields();
    expect(f[0].http.response.body).toEqual({ bytes: 100, content: 'x'.repeat(21), magic: hexStart('x'.repeat(16)) });
    expect(f[1].http.response.body.content).toBe('ok');
  });

  it('counts a bad preface', () => {
    const h = harness('h2');
    h.send(Dir.ToServer, 'GET / HTTP/1.1\r\n\r\n');
    h.close();
    expect(h.anomalies).toEqual(['http2_bad_preface']);
    expect(h.events).toHaveLength(0);
  });

  it('never throws on random frames, truncations and mutations', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 80 })), { maxLength: 12 }), (steps) => {
      const h = harness('h2');
      h.send(Dir.ToServer, PREFACE);
      for (const [toServer, b] of steps) h.a.onData(toServer ? Dir.ToServer : Dir.ToClient, Buffer.from(b), { sec: 1, nsec: 0 });
      h.close();
    }), { numRuns: 500 });
    // Random well-formed frame headers with random payloads (exercises every frame type).
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 7 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 15 }), (frames) => {
      const h = harness('h2');
      h.send(Dir.ToServer, PREFACE);
      for (const [toServer, type, flags, sid, p] of frames) h.send(toServer ? Dir.ToServer : Dir.ToClient, frame(type, flags, sid, Buffer.from(p)));
      h.close();
    }), { numRuns: 1000 });
    const conv = conversation();
    const client = Buffer.concat(conv.filter(([d]) => d === Dir.ToServer).map(([, b]) => b));
    const server = Buffer.concat(conv.filter(([d]) => d === Dir.ToClient).map(([, b]) => b));
    for (let n = 0; n <= server.length; n += 7) {
      const h = harness('h2');
      h.send(Dir.ToServer, client.subarray(0, Math.min(n, client.length)));
      h.send(Dir.ToClient, server.subarray(0, n));
      h.close();
    }
    fc.assert(fc.property(fc.integer({ min: 0, max: server.length - 1 }), fc.integer({ min: 0, max: 255 }), (pos, v) => {
      const m = Buffer.from(server);
      m[pos] = v;
      const h = harness('h2');
      h.send(Dir.ToServer, client);
      h.send(Dir.ToClient, m, 11);
      h.close();
      expect(h.events.length).toBeLessThanOrEqual(4);
    }), { numRuns: 500 });
  });
});

describe('HTTP/2 recorded from node:http2', () => {
  it('matches what the client saw, for real h2 bytes', async () => {
    const server = http2.createServer();
    server.on('stream', (stream, hdrs) => {
      const path = hdrs[':path'] as string;
      if (path.startsWith('/gzip')) {
        stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-encoding': 'gzip' });
        stream.end(zlib.gzipSync(JSON.stringify({ hello: 'world', path })));
      } else if (path === '/echo') {
        const chunks: Buffer[] = [];
        stream.on('data', (d: Buffer) => chunks.push(d));
        stream.on('end', () => {
          stream.respond({ ':status': 201, 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
          stream.end(Buffer.concat(chunks));
        });
      } else {
        stream.respond({ ':status': 200, 'content-type': 'text/html; charset=utf-8' });
        stream.end(`<p>${path}</p>`.repeat(path === '/large' ? 5000 : 1));
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const serverPort = (server.address() as net.AddressInfo).port;

    const rec: [Dir, Buffer][] = [];
    const proxy = net.createServer((down) => {
      const up = net.connect(serverPort, '127.0.0.1');
      down.on('data', (d: Buffer) => { rec.push([Dir.ToServer, Buffer.from(d)]); up.write(d); });
      up.on('data', (d: Buffer) => { rec.push([Dir.ToClient, Buffer.from(d)]); down.write(d); });
      down.on('end', () => up.end());
      up.on('end', () => down.end());
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const proxyPort = (proxy.address() as net.AddressInfo).port;

    const client = http2.connect(`http://127.0.0.1:${proxyPort}`);
    const seen: { path: string; status: number; body: Buffer }[] = [];
    const request = (path: string, method = 'GET', body?: string) => new Promise<void>((resolve, reject) => {
      const r = client.request({ ':method': method, ':path': path, ':authority': 'app.example:8443', 'user-agent': 'node-h2-test', ...(body ? { 'content-type': 'text/plain' } : {}) });
      let status = 0;
      const chunks: Buffer[] = [];
      r.on('response', (h) => { status = h[':status'] as number; });
      r.on('data', (d: Buffer) => chunks.push(d));
      r.on('end', () => { seen.push({ path, status, body: Buffer.concat(chunks) }); resolve(); });
      r.on('error', reject);
      if (body) r.end(body); else r.end();
    });
    await Promise.all([request('/index?q=1'), request('/gzip'), request('/echo', 'POST', 'ping-pong'), request('/large')]);
    await request('/second-round');
    client.close();
    await once(client, 'close');
    await new Promise((r) => setTimeout(r, 50));
    proxy.close();
    server.close();

    const h = harness('h2');
    for (const [d, b] of rec) h.send(d, b);
    h.close();
    expect(h.anomalies).toEqual([]);
    const byPath = new Map(h.fields().map((f) => [f.url.original, f]));
    expect(byPath.size).toBe(5);
    for (const s of seen) {
      const f = byPath.get(s.path)!;
      expect(f.http.version).toBe('2');
      expect(f.http.response.status_code).toBe(s.status);
      expect(f.http.response.body.bytes).toBe(s.body.length);
      expect(f.url.domain).toBe('app.example');
      expect(f.url.port).toBe(8443);
      expect(f.user_agent.original).toBe('node-h2-test');
    }
    expect(byPath.get('/gzip').http.response.body.content).toBe(JSON.stringify({ hello: 'world', path: '/gzip' }));
    expect(byPath.get('/echo').http.request.body).toEqual({ bytes: 9, content: 'ping-pong', magic: hexStart('ping-pong') });
    expect(byPath.get('/echo').http.response.headers['set-cookie']).toEqual(['a=[REDACTED]', 'b=[REDACTED]']);
    expect(byPath.get('/index?q=1').url).toMatchObject({ path: '/index', query: 'q=1' });
    expect(byPath.get('/large').http.response.body.content).toHaveLength(4096);
    expect(byPath.get('/large').http.response.mime_type).toBe('text/html');

    // Without ALPN the preface decides HTTP/2; byte-by-byte feeding gives the same events.
    const sniffed = harness(undefined);
    for (const [d, b] of rec) sniffed.send(d, b, 1);
    sniffed.close();
    expect(stripTs(sniffed.events)).toEqual(stripTs(h.events));
  });
});

/** body.magic: hex of the first 16 bytes of the (decoded) body. */
function hexStart(s: string | Buffer): string {
  return Buffer.from(s).subarray(0, 16).toString('hex');
}
