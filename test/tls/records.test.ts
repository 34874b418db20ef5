import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Dir } from '../../src/types.js';
import { RecordDeframer, type RecordSink } from '../../src/tls/records.js';
import { Anomalies, loadSession, splitRecords, streamOf } from './helpers.js';

interface Got {
  records: { type: number; version: number; header: Buffer; fragment: Buffer }[];
  lost: [number, number][];
}

function deframer(opts?: ConstructorParameters<typeof RecordDeframer>[2]) {
  const got: Got = { records: [], lost: [] };
  const sink: RecordSink = {
    record: (type, version, header, fragment) => got.records.push({ type, version, header: Buffer.from(header), fragment: Buffer.from(fragment) }),
    lost: (bytes, records) => got.lost.push([bytes, records]),
  };
  const an = new Anomalies();
  return { d: new RecordDeframer(sink, an, opts), got, an };
}

function rec(type: number, len: number, fill = 0xaa, version = 0x0303): Buffer {
  const b = Buffer.alloc(5 + len, fill);
  b[0] = type;
  b.writeUInt16BE(version, 1);
  b.writeUInt16BE(len, 3);
  return b;
}

const stream = streamOf(loadSession('tls13-aes128gcm'), Dir.ToClient);
const expected = splitRecords(stream);

describe('RecordDeframer', () => {
  it('yields every record of a real stream pushed in one chunk, as views into the chunk', () => {
    const seen: Buffer[] = [];
    const d = new RecordDeframer({ record: (_t, _v, h) => seen.push(h), lost: () => {} }, new Anomalies());
    d.push(stream);
    expect(seen).toHaveLength(expected.length);
    // zero-copy: the header view shares memory with the input chunk
    expect(seen[0].buffer).toBe(stream.buffer);
  });

  it('yields the same records when fed one byte at a time', () => {
    const { d, got } = deframer();
    for (const b of stream) d.push(Buffer.from([b]));
    expect(got.records.map((r) => Buffer.concat([r.header, r.fragment]))).toEqual(expected);
    expect(d.buffered).toBe(0);
  });

  it('yields the same records for any split of the stream', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 12 }), (cuts) => {
        const { d, got } = deframer();
        const pts = [0, ...cuts.sort((a, b) => a - b), stream.length];
        for (let i = 0; i + 1 < pts.length; i++) d.push(stream.subarray(pts[i], pts[i + 1]));
        expect(got.records.map((r) => Buffer.concat([r.header, r.fragment]))).toEqual(expected);
      }),
      { numRuns: 60 },
    );
  });

  it('accepts a 64 KiB - 1 record and counts it as oversize', () => {
    const { d, got, an } = deframer();
    const big = rec(23, 0xffff);
    d.push(big.subarray(0, 30000));
    d.push(big.subarray(30000));
    expect(got.records).toHaveLength(1);
    expect(got.records[0].fragment.length).toBe(0xffff);
    expect(an.count('tls_record_oversize')).toBe(1);
  });

  it('treats an impossible content type as malformed and resynchronises on the next records', () => {
    const { d, got, an } = deframer();
    d.push(Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), rec(23, 100), rec(23, 50)]));
    expect(an.count('tls_record_malformed')).toBe(1);
    expect(an.count('tls_resync')).toBe(1);
    expect(got.records.map((r) => r.fragment.length)).toEqual([100, 50]);
    expect(got.lost[0][1]).toBe(-1);
  });

  it('rejects a record length above the configured maximum', () => {
    const { d, got, an } = deframer({ maxRecordLength: 1000 });
    d.push(rec(23, 2000));
    expect(got.records).toHaveLength(0);
    expect(an.count('tls_record_malformed')).toBe(1);
  });

  it('knows the next boundary when a gap falls inside a record of known length', () => {
    const { d, got, an } = deframer();
    const a = rec(23, 100, 1);
    const b = rec(23, 60, 2);
    d.push(a.subarray(0, 30));
    d.gap(40);
    d.push(Buffer.concat([a.subarray(70), b]));
    expect(got.lost).toEqual([[105, 1]]);
    expect(got.records.map((r) => r.fragment[0])).toEqual([2]);
    expect(an.count('tls_resync')).toBe(0);
  });

  it('resynchronises after a gap at a record boundary, confirmed by a second header', () => {
    const { d, got, an } = deframer();
    d.push(rec(23, 20, 1));
    d.gap(500);
    const tail = rec(23, 100, 2).subarray(37); // the end of a record whose start was lost
    d.push(tail);
    d.push(rec(23, 30, 3));
    expect(got.records.map((r) => r.fragment[0])).toEqual([1]); // not yet confirmed
    d.push(rec(21, 10, 4));
    expect(got.records.map((r) => r.fragment[0])).toEqual([1, 3, 4]);
    expect(an.count('tls_resync')).toBe(1);
    expect(got.lost).toEqual([[500 + tail.length, -1]]);
  });

  it('does not accept a candidate header whose follower is implausible', () => {
    const { d, got } = deframer();
    d.gap(10);
    // A fake header (23 03 03 00 04) followed after 4 bytes by garbage, then real records.
    d.push(Buffer.concat([Buffer.from('170303000401020304ffffffffff', 'hex'), rec(22, 8, 7), rec(22, 8, 8)]));
    expect(got.records.map((r) => r.fragment[0])).toEqual([7, 8]);
  });

  it('handles thousands of garbage/record alternations in one chunk without deep recursion', () => {
    const { d, got, an } = deframer();
    const unit = Buffer.concat([Buffer.from([0]), rec(23, 1, 1), rec(23, 1, 2)]);
    d.push(Buffer.concat(Array.from({ length: 20000 }, () => unit)));
    expect(got.records).toHaveLength(40000);
    expect(an.count('tls_resync')).toBe(20000);
  });

  it('counts a stream that ends inside a record', () => {
    const { d, an } = deframer();
    d.push(rec(23, 100).subarray(0, 50));
    d.end();
    expect(an.count('tls_record_truncated')).toBe(1);
  });

  it('never throws and never loops on random bytes, gaps and ends', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 70000 })), { maxLength: 20 }),
        (ops) => {
          const { d } = deframer();
          for (const op of ops) {
            if (typeof op === 'number') d.gap(op);
            else d.push(Buffer.from(op));
          }
          d.end();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never throws on random bytes mixed with real records', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom(...expected), fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u))), { maxLength: 15 }), (parts) => {
        const { d } = deframer({ maxResyncBufferBytes: 256 });
        for (const p of parts) d.push(p);
        d.gap(3);
        for (const p of parts) d.push(p);
      }),
      { numRuns: 300 },
    );
  });
});
