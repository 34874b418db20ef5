/**
 * One rule for control characters in wire text (src/events/text.ts), applied to every event the
 * builder makes: no string of an event holds a character that makes line-splitting tools (Python's
 * str.splitlines, terminals) see a line break or an escape sequence.
 */
import { describe, expect, it } from 'vitest';
import { cleanWireStrings, wireText } from '../../src/events/text.js';
import { buildEvent } from '../../src/events/builder.js';

describe('wireText', () => {
  it('replaces C0 (except TAB), DEL, C1, U+2028 and U+2029 with U+FFFD; keeps other text', () => {
    expect(wireText('a\x85b')).toBe('a\uFFFDb');
    expect(wireText('\x00\x01\x1b[31m\x7f\x80\x9f\u2028\u2029')).toBe('\uFFFD\uFFFD\uFFFD[31m\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD');
    expect(wireText('tab\there, é, ü, 日本, \u00a0 nbsp, emoji \u{1f600}')).toBe('tab\there, é, ü, 日本, \u00a0 nbsp, emoji \u{1f600}');
    expect(wireText('line\r\nbreak')).toBe('line\uFFFD\uFFFDbreak');
    expect(wireText('line\r\nbreak\x0b\x85', true)).toBe('line\r\nbreak\uFFFD\uFFFD');
    const clean = 'nothing to do';
    expect(wireText(clean)).toBe(clean);
  });

  it('every string of every event ends up free of what str.splitlines() splits on', () => {
    const evil = 'x\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e\r\ny';
    const fields = { ftp: { request: { command: 'CWD', arg: evil } }, http: { response: { body: { content: evil } } }, email: { to: { address: [evil] } } };
    const flow = { id: 1, clientIp: '10.0.0.1', clientPort: 1, serverIp: '10.0.0.2', serverPort: 21, ipVersion: 4, communityId: '1:x', start: { sec: 1, nsec: 0 } };
    const ev = buildEvent(flow as never, { sni: `sni${evil}`, resumed: false, established: true }, 'ftp', fields, { sec: 1, nsec: 0 }, false, 0);
    const walk = (v: unknown): string[] => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(walk) : []);
    for (const s of walk(ev)) {
      expect(s.replace(/\r\n/g, '')).not.toMatch(/[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/);
    }
    expect((ev as any).ftp.request.arg).toBe('x\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFDy');
    expect((ev as any).http.response.body.content).toBe('x\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\r\ny');
    expect((ev as any).tls.client.server_name).toBe('sni' + (ev as any).ftp.request.arg.slice(0));
    expect(JSON.stringify(ev).split(/\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]/)).toHaveLength(1);
  });

  it('walks arrays and nested objects in place', () => {
    const o = { a: ['\x85', { b: '\u2028' }], c: 1, d: null };
    cleanWireStrings(o);
    expect(o).toEqual({ a: ['\uFFFD', { b: '\uFFFD' }], c: 1, d: null });
  });
});
