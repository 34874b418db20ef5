import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Dir } from '../../src/types.js';
import { Harness, loadSession, rsaKeys, type Chunk } from './helpers.js';
import { Reader } from '../../src/tls/reader.js';

const sessions = [
  'tls13-aes128gcm',
  'tls13-chacha-hrr',
  'tls12-ecdhe-gcm',
  'tls12-rsa-cbc',
  'tls12-rsa-cbc-resumed',
  'tls13-keyupdate',
  'tls13-early-data',
  'tls13-early-data-rejected',
  'tls12-renegotiation',
  'tls10-ecdhe-cbc',
  'tls11-rsa-cbc',
].map(loadSession);
const keys = rsaKeys();
const STATUSES = ['decrypted', 'partial', 'no_key', 'missing_handshake', 'unsupported_cipher', 'integrity_failure'];

function run(chunks: Chunk[], keylog: string, gaps: [number, Dir, number][] = []): Harness {
  const h = new Harness({ keylog, rsa: keys });
  chunks.forEach((c, i) => {
    for (const [at, dir, len] of gaps) if (at === i) h.handler.onGap(dir, len, { sec: 1, nsec: 0 });
    h.handler.onData(c.dir, c.data, { sec: 1000 + i, nsec: 0 });
  });
  h.close();
  return h;
}

function assertSane(h: Harness): void {
  expect(h.anomalies.count('tls_internal_error')).toBe(0);
  expect(h.events).toHaveLength(1);
  expect(STATUSES).toContain((h.events[0].fields as any).decryption.status);
}

describe('TlsFlowHandler never falls over', () => {
  it('on random bytes, gaps and ends in both directions', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ dir: fc.constantFrom(Dir.ToServer, Dir.ToClient), data: fc.uint8Array({ maxLength: 200 }) }),
            fc.record({ dir: fc.constantFrom(Dir.ToServer, Dir.ToClient), gap: fc.integer({ min: 1, max: 5000 }) }),
          ),
          { maxLength: 30 },
        ),
        (ops) => {
          const h = new Harness({ rsa: keys });
          for (const op of ops) {
            if ('gap' in op) h.handler.onGap(op.dir, op.gap, { sec: 1, nsec: 0 });
            else h.handler.onData(op.dir, Buffer.from(op.data), { sec: 1, nsec: 0 });
          }
          h.close();
          assertSane(h);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('on random bytes that look like TLS records', () => {
    const recordish = fc
      .tuple(fc.integer({ min: 20, max: 24 }), fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 120 }))
      .map(([t, v, body]) => Buffer.concat([Buffer.from([t, 3, v, body.length >> 8, body.length & 0xff]), Buffer.from(body)]));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(Dir.ToServer, Dir.ToClient), recordish), { maxLength: 30 }), (recs) => {
        const h = run(recs.map(([dir, data]) => ({ dir, data })), sessions[0].keylog);
        assertSane(h);
      }),
      { numRuns: 300 },
    );
  });

  it('on every truncation of real sessions', () => {
    for (const s of sessions) {
      const total = s.chunks.reduce((n, c) => n + c.data.length, 0);
      for (let cut = 0; cut <= total; cut += 97) {
        const chunks: Chunk[] = [];
        let left = cut;
        for (const c of s.chunks) {
          if (left <= 0) break;
          chunks.push({ dir: c.dir, data: c.data.subarray(0, Math.min(left, c.data.length)) });
          left -= c.data.length;
        }
        assertSane(run(chunks, s.keylog));
      }
    }
  });

  it('on real sessions with corrupted bytes and random gaps', () => {
    fc.assert(
      fc.property(
        fc.nat(sessions.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(8), fc.constantFrom(Dir.ToServer, Dir.ToClient), fc.integer({ min: 1, max: 3000 })), { maxLength: 2 }),
        (si, muts, gaps) => {
          const s = sessions[si];
          const chunks = s.chunks.map((c) => ({ dir: c.dir, data: Buffer.from(c.data) }));
          for (const [ci, bi, v] of muts) {
            const c = chunks[ci % chunks.length];
            if (c.data.length) c.data[bi % c.data.length] = v;
          }
          assertSane(run(chunks, s.keylog, gaps));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('Reader.skipU16List16', () => {
  it('moves and fails exactly like u16List16, for any bytes at any position', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(40), (bytes, at) => {
        const b = Buffer.from(bytes);
        const start = Math.min(at, b.length);
        const a = new Reader(b, start);
        const s = new Reader(b, start);
        a.u16List16();
        s.skipU16List16();
        expect([s.ok, s.pos]).toEqual([a.ok, a.pos]);
      }),
      { numRuns: 2000 },
    );
  });
});
