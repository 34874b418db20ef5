/**
 * The native fetch's decoding (src/kafka/fetch.ts), without a broker: record batches made by the
 * native producer's encoder (produce.ts, the bytes `publish` sends), none and gzip; a batch cut at
 * the answer's end; records before the fetch offset; an unsupported codec and a corrupt batch
 * counted and skipped; aborted transactions skipped (read committed); CRCs not checked (as
 * kafkajs); a Fetch v4 answer with an error; and BrokerConnection reading a large answer, sent in
 * small pieces, into the buffer its frameBuffer gave. The fetch against the real broker (moves,
 * worker failures, cut connections): run-workers.test.ts, --fetch native.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { decodeFetchAnswer, decodeRecordBatches, type FetchCounts } from '../../src/kafka/fetch.js';
import { BrokerConnection, encodeRecordBatch, type OutRecord } from '../../src/kafka/produce.js';

function batch(records: OutRecord[], base: number, o: { compression?: 'none' | 'gzip'; producerId?: number; attributes?: number } = {}): Buffer {
  const b = Buffer.concat(encodeRecordBatch(records, { compression: o.compression, producerId: o.producerId, now: 1_700_000_000_000 }).segments);
  b.writeBigInt64BE(BigInt(base), 0);
  if (o.attributes !== undefined) b.writeInt16BE(b.readInt16BE(21) | o.attributes, 21);
  return b;
}

const recs = (n: number, tag: string): OutRecord[] =>
  Array.from({ length: n }, (_, i) => ({ key: i % 2 ? `k${i}` : null, value: Buffer.alloc(100 + i, `${tag}${i}`), headers: { 'content-type': 'application/vnd.tcpdump.pcap', h2: `v${i}` }, timestamp: 1_700_000_000_000 + i }));

function values(rs: { value: Buffer | null }[]): string[] {
  return rs.map((r) => r.value!.toString('latin1'));
}

describe('decodeRecordBatches', () => {
  it('decodes batches without compression and with gzip: keys, values, headers, offsets, timestamps', () => {
    for (const compression of ['none', 'gzip'] as const) {
      const a = recs(3, 'a');
      const b = recs(2, 'b');
      const buf = Buffer.concat([batch(a, 10, { compression }), batch(b, 13, { compression })]);
      const counts: FetchCounts = {};
      const d = decodeRecordBatches(buf, 't', 5, 10, counts);
      expect(d.next, compression).toBe(15);
      expect(counts).toEqual({});
      expect(d.records.map((r) => r.offset)).toEqual(['10', '11', '12', '13', '14']);
      expect(values(d.records)).toEqual(values([...a, ...b] as { value: Buffer }[]));
      expect(d.records.map((r) => r.key?.toString() ?? null)).toEqual([null, 'k1', null, null, 'k1']);
      expect(d.records[1].headers['content-type'].toString()).toBe('application/vnd.tcpdump.pcap');
      expect(d.records[4].headers.h2.toString()).toBe('v1');
      expect(d.records.map((r) => r.timestamp)).toEqual([0, 1, 2, 0, 1].map((x) => 1_700_000_000_000 + x));
      expect(d.records.every((r) => r.partition === 5 && r.topic === 't')).toBe(true);
      if (compression === 'none') {
        // no copy: the values are slices of the answer
        expect(d.records[0].value!.buffer).toBe(buf.buffer);
      }
    }
  });

  it('leaves a batch cut at the answer\'s end for the next fetch, and skips records before the fetch offset', () => {
    const first = batch(recs(3, 'x'), 0);
    const second = batch(recs(3, 'y'), 3);
    const whole = Buffer.concat([first, second]);
    for (const cut of [first.length + 5, first.length + 20, whole.length - 1]) {
      const d = decodeRecordBatches(whole.subarray(0, cut), 't', 0, 0, {});
      expect(d.records.map((r) => r.offset)).toEqual(['0', '1', '2']);
      expect(d.next).toBe(3);
    }
    // nothing whole: no records, no new position
    const none = decodeRecordBatches(first.subarray(0, first.length - 1), 't', 0, 0, {});
    expect(none).toEqual({ records: [], next: undefined });
    // a fetch from offset 4 gets a batch starting at 3: its first record is skipped
    const mid = decodeRecordBatches(whole, 't', 0, 4, {});
    expect(mid.records.map((r) => r.offset)).toEqual(['4', '5']);
    expect(mid.next).toBe(6);
  });

  it('counts and skips a batch of an unsupported codec and a corrupt batch, and decodes the batches around them', () => {
    const snappy = batch(recs(2, 's'), 2, { attributes: 2 });
    const corrupt = batch(recs(2, 'c'), 4);
    corrupt[61] = 0x7e; // the first record's length varint: far past the batch
    const buf = Buffer.concat([batch(recs(2, 'a'), 0), snappy, corrupt, batch(recs(2, 'b'), 6)]);
    const counts: FetchCounts = {};
    const d = decodeRecordBatches(buf, 't', 0, 0, counts);
    expect(counts).toEqual({ kafka_fetch_codec_unsupported: 1, kafka_fetch_batch_corrupt: 1 });
    expect(d.records.map((r) => r.offset)).toEqual(['0', '1', '6', '7']);
    expect(d.next).toBe(8);
  });

  it('does not check CRCs (as kafkajs): a batch with a wrong CRC is decoded', () => {
    const b = batch(recs(2, 'z'), 0);
    b.writeUInt32BE((b.readUInt32BE(17) ^ 0xffffffff) >>> 0, 17);
    const counts: FetchCounts = {};
    expect(decodeRecordBatches(b, 't', 0, 0, counts).records).toHaveLength(2);
    expect(counts).toEqual({});
  });

  it('skips the batches of an aborted transaction and control batches (read committed)', () => {
    const TX = 0x10;
    const CONTROL = 0x20;
    const abortMarker = batch([{ key: Buffer.from([0, 0, 0, 0]), value: Buffer.alloc(6) }], 4, { producerId: 7, attributes: TX | CONTROL });
    const buf = Buffer.concat([
      batch(recs(2, 'kept'), 0, { producerId: 9, attributes: TX }), // a committed transaction's batch
      batch(recs(2, 'aborted'), 2, { producerId: 7, attributes: TX }),
      abortMarker,
      batch(recs(2, 'after'), 5, { producerId: 7, attributes: TX }), // producer 7's next transaction
    ]);
    const d = decodeRecordBatches(buf, 't', 0, 0, {}, [{ producerId: '7', firstOffset: 2 }]);
    expect(d.records.map((r) => r.offset)).toEqual(['0', '1', '5', '6']);
    expect(d.next).toBe(7);
  });
});

describe('decodeFetchAnswer', () => {
  it('reads a Fetch v4 answer: per partition its error, high watermark and records', () => {
    const recsA = batch(recs(2, 'p0'), 40);
    const parts: Buffer[] = [];
    const i32 = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(v);
      return b;
    };
    const i64 = (v: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt(v));
      return b;
    };
    const i16 = (v: number): Buffer => {
      const b = Buffer.alloc(2);
      b.writeInt16BE(v);
      return b;
    };
    const str = (s: string): Buffer => Buffer.concat([i16(s.length), Buffer.from(s)]);
    parts.push(i32(25), i32(1), str('t'), i32(2));
    parts.push(i32(0), i16(0), i64(42), i64(42), i32(-1), i32(recsA.length), recsA);
    parts.push(i32(1), i16(6 /* NOT_LEADER_OR_FOLLOWER */), i64(-1), i64(-1), i32(-1), i32(-1));
    const a = decodeFetchAnswer(Buffer.concat(parts), 't', new Map([[0, 41], [1, 0]]), {});
    expect(a.throttleMs).toBe(25);
    expect(a.partitions.map((p) => ({ p: p.partition, e: p.error, hw: p.highWatermark, n: p.next, offs: p.records.map((r) => r.offset) }))).toEqual([
      { p: 0, e: 0, hw: 42, n: 42, offs: ['41'] },
      { p: 1, e: 6, hw: -1, n: undefined, offs: [] },
    ]);
  });
});

describe('BrokerConnection with a frameBuffer', () => {
  it('reads a large answer sent in small pieces into the buffer frameBuffer gave, and a small one after it intact', async () => {
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const small = Buffer.alloc(5000);
    for (let i = 0; i < small.length; i++) small[i] = (i * 13) & 0xff;
    const server = createServer((s: Socket) => {
      let got = Buffer.alloc(0);
      s.on('data', (d) => {
        got = Buffer.concat([got, d]);
        const ids: number[] = [];
        while (got.length >= 4 && got.length >= 4 + got.readInt32BE(0)) {
          ids.push(got.readInt32BE(8));
          got = got.subarray(4 + got.readInt32BE(0));
        }
        if (ids.length < 2) return;
        // answer 1: 300,000 bytes, then answer 2: 5,000 bytes (not read into a frameBuffer), all in 1,000-byte writes
        const a1 = Buffer.concat([Buffer.alloc(8), big]);
        a1.writeInt32BE(4 + big.length, 0);
        a1.writeInt32BE(ids[0], 4);
        const a2 = Buffer.concat([Buffer.alloc(8), small]);
        a2.writeInt32BE(4 + small.length, 0);
        a2.writeInt32BE(ids[1], 4);
        const all = Buffer.concat([a1, a2]);
        let off = 0;
        const more = (): void => {
          if (off >= all.length) return;
          s.write(all.subarray(off, off + 1000));
          off += 1000;
          setImmediate(more);
        };
        more();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const given: Buffer[] = [];
    const conn = new BrokerConnection('127.0.0.1', (server.address() as AddressInfo).port, {
      clientId: 'test',
      connectionTimeoutMs: 3000,
      requestTimeoutMs: 10_000,
      maxInFlight: 2,
      frameBuffer: (size) => {
        const b = Buffer.alloc(size + 100);
        given.push(b);
        return b;
      },
    });
    try {
      const [r1, r2] = await Promise.all([conn.request(1, 4, [Buffer.from('x')]), conn.request(1, 4, [Buffer.from('y')])]);
      expect(given).toHaveLength(1);
      expect(r1.buffer).toBe(given[0].buffer);
      expect(r1.equals(big)).toBe(true);
      // kept across reads (the socket reads into one reused buffer): copied, so intact
      expect(r2.equals(small)).toBe(true);
      expect(r2.buffer).not.toBe(given[0].buffer);
    } finally {
      conn.close();
      server.close();
    }
  });
});
