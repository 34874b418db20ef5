import { describe, expect, it } from 'vitest';
import { ShardAssigner } from '../../src/pipeline/sharded.js';

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
