/**
 * The HTTP/3 analyzer alone (RFC 9114): synthetic streams with QPACK literal field lines, unknown
 * frames and stream types, SETTINGS and GOAWAY; and the detection rules on its events, as on HTTP/2.
 */
import { describe, expect, it } from 'vitest';
import { H3Side, Http3Analyzer } from '../../src/analyzers/http/http3.js';
import { resolveHttpOptions } from '../../src/analyzers/http/options.js';
import { buildEvent } from '../../src/events/builder.js';
import { Detector } from '../../src/detect/index.js';
import type { EcsFields, FlowInfo, Timestamp } from '../../src/types.js';

const TS: Timestamp = { sec: 1_800_000_000, nsec: 0 };

function varint(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(0x80000000 | n);
  return b;
}
/** RFC 9204 4.1.1 prefix integer. */
function pint(n: number, bits: number, flags: number): Buffer {
  const max = (1 << bits) - 1;
  if (n < max) return Buffer.from([flags | n]);
  const out = [flags | max];
  let r = n - max;
  while (r >= 128) {
    out.push((r & 0x7f) | 0x80);
    r >>= 7;
  }
  out.push(r);
  return Buffer.from(out);
}
/** A field section of literal field lines with literal names (Section 4.5.6), no dynamic table. */
function fieldSection(h: [string, string][]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  for (const [n, v] of h) parts.push(pint(n.length, 3, 0x20), Buffer.from(n), pint(v.length, 7, 0), Buffer.from(v));
  return Buffer.concat(parts);
}
const frame = (type: number, payload: Buffer): Buffer => Buffer.concat([varint(type), varint(payload.length), payload]);

function analyzer(): { h3: Http3Analyzer; events: EcsFields[]; anomalies: string[] } {
  const events: EcsFields[] = [];
  const anomalies: string[] = [];
  const h3 = new Http3Analyzer({ emit: (_ds, f) => events.push(f) }, { anomaly: (c) => anomalies.push(c) }, resolveHttpOptions({}));
  return { h3, events, anomalies };
}

const REQ: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'shop.example'],
  [':path', "/item?id=1' OR '1'='1"],
  ['user-agent', 'sqlmap/1.7.2#stable (https://sqlmap.org)'],
];

describe('HTTP/3 analyzer', () => {
  it('pairs a request and its response on a request stream, skipping unknown frames and stream types', () => {
    const { h3, events, anomalies } = analyzer();
    // client control stream (2): SETTINGS with QPACK capacity 0; a reserved stream type (0x21) on 6
    h3.onStreamData(2, H3Side.Client, Buffer.concat([varint(0), frame(4, Buffer.concat([varint(1), varint(0)]))]), TS);
    h3.onStreamData(6, H3Side.Client, Buffer.concat([varint(0x21), Buffer.from('whatever')]), TS);
    const req = Buffer.concat([frame(1, fieldSection(REQ)), frame(0x21, Buffer.from([1, 2, 3]))]);
    // split at every byte boundary: the parser keeps partial frame headers
    for (let i = 0; i < req.length; i++) h3.onStreamData(0, H3Side.Client, req.subarray(i, i + 1), TS);
    h3.onStreamEnd(0, H3Side.Client, TS);
    const resp = Buffer.concat([frame(1, fieldSection([[':status', '200'], ['content-type', 'text/html']])), frame(0, Buffer.from('<p>hello</p>'))]);
    h3.onStreamData(0, H3Side.Server, resp, TS);
    expect(events).toHaveLength(0);
    h3.onStreamEnd(0, H3Side.Server, TS);
    // server control stream: GOAWAY 4
    h3.onStreamData(3, H3Side.Server, Buffer.concat([varint(0), frame(7, varint(4))]), TS);
    expect(h3.goaway[H3Side.Server]).toBe(4);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      http: { version: '3', request: { method: 'GET' }, response: { status_code: 200, mime_type: 'text/html', body: { bytes: 12, content: '<p>hello</p>' } } },
      url: { domain: 'shop.example', path: '/item' },
    });
    expect(anomalies).toEqual([]);
  });

  it('counts a gap inside DATA in the body, and stops a stream whose frame boundaries are lost', () => {
    const { h3, events, anomalies } = analyzer();
    h3.onStreamData(0, H3Side.Client, frame(1, fieldSection(REQ.slice(0, 4))), TS);
    const hdr = frame(1, fieldSection([[':status', '200']]));
    h3.onStreamData(0, H3Side.Server, Buffer.concat([hdr, varint(0), varint(100), Buffer.alloc(10)]), TS);
    h3.onStreamGap(0, H3Side.Server, 50, TS);
    h3.onStreamData(0, H3Side.Server, Buffer.alloc(40), TS);
    h3.onStreamGap(0, H3Side.Server, 7, TS); // between frames: boundaries lost
    h3.onStreamEnd(0, H3Side.Server, TS);
    expect(events).toHaveLength(1);
    expect((events[0] as { http: { response: { body: { bytes: number } } } }).http.response.body.bytes).toBe(100);
    expect(anomalies).toContain('http3_gap');
  });

  it('reports a QPACK error and goes on with other streams', () => {
    const { h3, events, anomalies } = analyzer();
    h3.onStreamData(0, H3Side.Client, frame(1, Buffer.from([0, 0, 0xff, 0x7f])), TS); // static index 190
    h3.onStreamData(4, H3Side.Client, frame(1, fieldSection(REQ.slice(0, 4))), TS);
    h3.onClose(TS);
    expect(anomalies).toContain('http3_qpack_error');
    expect(events.map((e) => (e as { http: { request?: { method?: string } } }).http.request?.method)).toContain('GET');
  });

  it('gives events the HTTP/2 detection rules fire on', () => {
    const { h3, events } = analyzer();
    h3.onStreamData(0, H3Side.Client, frame(1, fieldSection(REQ)), TS);
    h3.onStreamData(0, H3Side.Server, frame(1, fieldSection([[':status', '404']])), TS);
    h3.onStreamEnd(0, H3Side.Server, TS);
    const flow: FlowInfo = { id: 1, clientIp: '10.0.0.1', clientPort: 50000, serverIp: '10.0.0.2', serverPort: 443, ipVersion: 4, start: TS, rolesFromHandshake: false, communityId: '1:x' };
    const ev = buildEvent(flow, { version: '1.3', resumed: false, established: true, alpn: 'h3' }, 'http', { ...events[0], network: { transport: 'udp' } }, TS, true, 0);
    const alerts = new Detector().inspect(ev);
    expect(alerts.map((a) => (a.rule as { id: string }).id)).toEqual(expect.arrayContaining(['http.sql_injection', 'http.scanner_user_agent']));
  });
});
