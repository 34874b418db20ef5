import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { DecodedPacket, Dir } from '../../src/types.js';
import { ACK, FIN, SYN, handshake, seg, setup, ts } from './helpers.js';

const C2S = 0 as Dir;

/** Segments [start, end) covering 0..n-1 completely, plus arbitrary extra overlapping copies. */
const coveringSegments = (n: number) =>
  fc
    .tuple(
      fc.uniqueArray(fc.integer({ min: 1, max: n - 1 }), { maxLength: Math.min(n - 1, 30) }),
      fc.array(fc.tuple(fc.nat(n - 1), fc.integer({ min: 1, max: 40 })), { maxLength: 15 }),
    )
    .map(([cuts, extras]) => {
      const points = [0, ...cuts.sort((a, b) => a - b), n];
      const segs: Array<[number, number]> = [];
      for (let i = 0; i + 1 < points.length; i++) segs.push([points[i], points[i + 1]]);
      for (const [s, l] of extras) segs.push([s, Math.min(n, s + l)]);
      return segs;
    });

const streamCase = fc
  .tuple(fc.uint8Array({ minLength: 2, maxLength: 300 }), fc.integer({ min: 0, max: 0xffffffff }))
  .chain(([bytes, isn]) =>
    fc.tuple(
      fc.constant(Buffer.from(bytes)),
      fc.constant(isn),
      coveringSegments(bytes.length).chain((segs) => fc.shuffledSubarray(segs, { minLength: segs.length, maxLength: segs.length })),
    ),
  );

describe('tcp reassembly properties', () => {
  it('any permutation, duplication or overlap of segments covering a stream delivers exactly that stream', () => {
    fc.assert(
      fc.property(streamCase, ([bytes, isn, segs]) => {
        const { table, flows, anomalies } = setup();
        handshake(table, isn, 1);
        for (const [s, e] of segs) table.processSegment(seg(true, isn + 1 + s, bytes.subarray(s, e)), ts(2));
        expect(flows[0].bytes(C2S).equals(bytes)).toBe(true);
        expect(flows[0].gaps(C2S)).toEqual([]);
        expect(anomalies.count('tcp_overlap_conflict')).toBe(0);
        expect(table.stats.bufferedBytes).toBe(0);
      }),
      { numRuns: Number(process.env.TCP_FUZZ_RUNS ?? 300) },
    );
  });

  it('with lost segments, every delivered byte is at its true position and holes become gaps', () => {
    const lossy = streamCase.chain(([bytes, isn, segs]) =>
      fc.tuple(fc.constant(bytes), fc.constant(isn), fc.subarray(segs), fc.boolean(), fc.integer({ min: 1, max: 64 })),
    );
    fc.assert(
      fc.property(lossy, ([bytes, isn, segs, withAcks, perDirLimit]) => {
        const { table, flows } = setup({ maxBufferedPerDirection: perDirLimit });
        handshake(table, isn, 1);
        for (const [s, e] of segs) {
          table.processSegment(seg(true, isn + 1 + s, bytes.subarray(s, e)), ts(2));
          if (withAcks) table.processSegment(seg(false, 2, '', ACK, { ack: isn + 1 + e }), ts(2));
        }
        table.closeAll();
        const got = flows[0].stream(C2S);
        const want = bytes.toString('latin1');
        const maxEnd = segs.reduce((m, [, e]) => Math.max(m, e), 0);
        expect(got.length).toBe(maxEnd);
        for (let i = 0; i < got.length; i++) if (got[i] !== '?' || want[i] === '?') expect(got[i]).toBe(want[i]);
        expect(table.stats.bufferedBytes).toBe(0);
        expect(flows[0].closes()).toHaveLength(1);
      }),
      { numRuns: Number(process.env.TCP_FUZZ_RUNS ?? 300) },
    );
  });

  it('never throws on arbitrary segments and closes every flow exactly once', () => {
    const anyPacket = fc.record({
      fromA: fc.boolean(),
      port: fc.integer({ min: 0, max: 3 }),
      seq: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 200 })),
      ack: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 200 })),
      flags: fc.integer({ min: 0, max: 255 }),
      payload: fc.uint8Array({ maxLength: 40 }),
      lenDelta: fc.integer({ min: -50, max: 50 }),
      t: fc.integer({ min: 0, max: 1000 }),
      v6: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(anyPacket, { maxLength: 80 }),
        fc.record({
          maxFlows: fc.integer({ min: 1, max: 4 }),
          maxBufferedPerDirection: fc.integer({ min: 0, max: 100 }),
          maxSegmentsPerDirection: fc.integer({ min: 1, max: 8 }),
          maxBufferedTotal: fc.integer({ min: 0, max: 200 }),
          idleTimeoutSec: fc.integer({ min: 1, max: 400 }),
          closedTimeoutSec: fc.integer({ min: 0, max: 20 }),
        }),
        (pkts, opts) => {
          const { table, flows, anomalies } = setup(opts);
          for (const q of pkts) {
            const addrA = q.v6 ? Buffer.alloc(16, 1) : Buffer.from([1, 1, 1, 1]);
            const addrB = q.v6 ? Buffer.alloc(16, 2) : Buffer.from([2, 2, 2, 2]);
            const p: DecodedPacket = seg(q.fromA, q.seq, Buffer.from(q.payload), q.flags, {
              ack: q.ack,
              payloadLen: Math.max(0, q.payload.length + q.lenDelta),
              ep: { a: addrA, aPort: 1000 + q.port, b: addrB, bPort: 443 },
            });
            table.processSegment(p, ts(q.t));
            expect(table.stats.bufferedBytes).toBeGreaterThanOrEqual(0);
            expect(table.activeFlows).toBeLessThanOrEqual(opts.maxFlows);
          }
          table.closeAll();
          expect(anomalies.count('tcp_internal_error')).toBe(0);
          expect(table.activeFlows).toBe(0);
          expect(table.stats.bufferedBytes).toBe(0);
          for (const f of flows) {
            expect(f.closes()).toHaveLength(1);
            expect(f.events.at(-1)?.t).toBe('close');
            const ends = f.ends();
            expect(ends.filter(([d]) => d === 0).length).toBe(1);
            expect(ends.filter(([d]) => d === 1).length).toBe(1);
            // Nothing after a direction's end.
            for (const d of [0, 1]) {
              const i = f.events.findIndex((e) => e.t === 'end' && e.dir === d);
              expect(f.events.slice(i + 1).some((e) => (e.t === 'data' || e.t === 'gap') && e.dir === d)).toBe(false);
            }
            for (const e of f.events) if (e.t === 'gap') expect(e.len).toBeGreaterThan(0);
            for (const e of f.events) if (e.t === 'data') expect(e.bytes.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: Number(process.env.TCP_FUZZ_RUNS ?? 400) },
    );
  });

  it('treats every truncation of a segment (snapped capture) as data plus a gap of the rest', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat(100), (bytes, cut) => {
        const data = Buffer.from(bytes);
        const k = Math.min(cut, data.length);
        const { table, flows } = setup();
        handshake(table, 0, 0);
        table.processSegment(seg(true, 1, data.subarray(0, k), ACK, { payloadLen: data.length }), ts(2));
        table.processSegment(seg(true, 1 + data.length, 'Z', ACK | FIN), ts(2));
        expect(flows[0].stream(C2S)).toBe(data.subarray(0, k).toString('latin1') + '?'.repeat(data.length - k) + 'Z');
        expect(flows[0].ends()).toEqual([[C2S, 'fin']]);
      }),
      { numRuns: 200 },
    );
  });

  it('reassembles a shuffled stream that wraps around 2^32', () => {
    fc.assert(
      fc.property(streamCase, fc.integer({ min: 1, max: 300 }), ([bytes, , segs], back) => {
        const isn = (0x100000000 - back) >>> 0; // stream crosses the wrap
        const { table, flows } = setup();
        table.processSegment(seg(true, isn, '', SYN), ts(1));
        for (const [s, e] of segs) table.processSegment(seg(true, isn + 1 + s, bytes.subarray(s, e)), ts(2));
        expect(flows[0].bytes(C2S).equals(bytes)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});
