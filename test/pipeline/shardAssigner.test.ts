import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { ShardAssigner, shardFilter } from '../../src/pipeline/sharded.js';
import type { CaptureSink, RawPacket } from '../../src/types.js';

describe('replay --workers: host pairs to shards (least-loaded at first sight)', () => {
  it('keeps every packet of a host pair on the shard it was first given', () => {
    const a = new ShardAssigner(3);
    const first = new Map<number, number>();
    for (let i = 0; i < 3000; i++) {
      const h = (i * 2654435761) % 97; // 97 host pairs, interleaved
      const s = a.shardOf(h, 100 + (i % 1400));
      if (!first.has(h)) first.set(h, s);
      expect(s).toBe(first.get(h));
    }
  });

  it('gives a new pair to the shard with the fewest bytes, so heavy pairs spread', () => {
    const a = new ShardAssigner(2);
    expect(a.shardOf(0xaaaa, 6_000_000)).toBe(0); // an elephant on shard 0
    expect(a.shardOf(0xbbbb, 100)).toBe(1);
    expect(a.shardOf(0xcccc, 100)).toBe(1); // shard 1 still has far fewer bytes
    expect(a.shardOf(0xaaaa, 100)).toBe(0);
    expect(a.bytes).toEqual([6_000_100, 200]);
    // 120 equal connections arriving two at a time (the scaling benchmark's shape): an even split,
    // where hash % 2 gave 45/75 on the real capture
    const b = new ShardAssigner(2);
    for (let c = 0; c < 120; c += 2) {
      for (let k = 0; k < 100; k++) {
        b.shardOf(0x1000 + c, 1448);
        b.shardOf(0x1000 + c + 1, 1448);
      }
    }
    expect(b.bytes[0]).toBe(b.bytes[1]);
  });

  it('falls back to the hash once its table is full, still one shard per pair', () => {
    const a = new ShardAssigner(4, 2);
    a.shardOf(10, 1);
    a.shardOf(11, 1);
    expect(a.shardOf(13, 1)).toBe(13 % 4);
    expect(a.shardOf(13, 50)).toBe(13 % 4);
    expect(a.shardOf(4_000_000_003, 1)).toBe(4_000_000_003 % 4);
  });
});

describe('replay --workers on a file: every shard reads it and keeps its own packets (shardFilter)', () => {
  // An FTP capture: control and data connections between one host pair must meet on one shard.
  const capture = readFileSync('fixtures/ftp/ftps-explicit-tls12/capture.pcap');
  const notTcp: RawPacket = { linktype: 1, ts: { sec: 1, nsec: 0 }, data: Buffer.alloc(60, 0xff), origLen: 60, ifIndex: 0 };

  function readAs(me: number, shards: number) {
    const got = { packets: [] as RawPacket[], secrets: 0, anomalies: [] as string[] };
    const engine: CaptureSink = {
      packet: (p) => got.packets.push({ ...p, data: Buffer.from(p.data) }),
      secrets: () => got.secrets++,
      anomaly: (code) => got.anomalies.push(code),
    };
    const f = shardFilter(engine, me, shards);
    const r = new CaptureReader(f);
    r.push(capture.subarray(0, capture.length - 5)); // cut: one capture-level anomaly
    r.end();
    f.packet(notTcp);
    f.secrets(0x544c534b, Buffer.from('CLIENT_RANDOM x y\n'));
    return { got, total: r.packets + 1 };
  }

  for (const shards of [2, 3]) {
    it(`splits the packets of ${shards} shards without loss or overlap; non-TCP and capture anomalies to shard 0, secrets to all`, () => {
      const parts = Array.from({ length: shards }, (_, me) => readAs(me, shards));
      const all = parts.flatMap((p) => p.got.packets);
      expect(all.length).toBe(parts[0].total);
      // disjoint: every packet (timestamp + bytes) on exactly one shard
      const key = (p: RawPacket) => `${p.ts.sec}.${p.ts.nsec}:${p.data.toString('hex')}`;
      expect(new Set(all.map(key)).size).toBe(all.length);
      expect(parts[0].got.packets).toContain(parts[0].got.packets.find((p) => p.data.equals(notTcp.data)));
      for (let me = 1; me < shards; me++) expect(parts[me].got.packets.some((p) => p.data.equals(notTcp.data))).toBe(false);
      expect(parts[0].got.anomalies).toEqual(['capture_truncated']);
      for (let me = 1; me < shards; me++) expect(parts[me].got.anomalies).toEqual([]);
      for (const p of parts) expect(p.got.secrets).toBe(1);
      // one host pair in this capture (client and server): all its TCP packets on one shard
      expect(parts.filter((p) => p.got.packets.length > 1).length).toBe(1);
    });
  }
});
