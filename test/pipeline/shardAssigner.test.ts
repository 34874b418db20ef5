import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CaptureReader } from '../../src/capture/index.js';
import { ShardAssigner, packetRouter } from '../../src/pipeline/sharded.js';
import type { RawPacket } from '../../src/types.js';

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

describe('replay --workers: the dispatcher gives every packet one shard (packetRouter)', () => {
  // An FTP capture: control and data connections between one host pair must meet on one shard.
  const capture = readFileSync('fixtures/ftp/ftps-explicit-tls12/capture.pcap');
  const notTcp: RawPacket = { linktype: 1, ts: { sec: 1, nsec: 0 }, data: Buffer.alloc(60, 0xff), origLen: 60, ifIndex: 0 };

  for (const shards of [2, 3, 8]) {
    it(`puts each packet on one of ${shards} shards, a host pair's all on one, non-TCP on shard 0, the same way every time`, () => {
      const split = () => {
        const route = packetRouter(shards);
        const got: number[] = [];
        const r = new CaptureReader({ packet: (p) => got.push(route(p)), secrets: () => {}, anomaly: () => {} });
        r.push(capture);
        r.end();
        got.push(route(notTcp));
        return got;
      };
      const a = split();
      expect(a.length).toBeGreaterThan(10);
      expect(a.every((s) => Number.isInteger(s) && s >= 0 && s < shards)).toBe(true);
      // one host pair in this capture (client and server): all its TCP packets on one shard
      expect(new Set(a.slice(0, -1)).size).toBe(1);
      expect(a[a.length - 1]).toBe(0);
      expect(split()).toEqual(a);
    });
  }
});
