import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { flowHash, hostPairHash } from '../../src/pipeline/flowHash.js';
import type { DecodedPacket } from '../../src/types.js';

function pkt(src: number[], sp: number, dst: number[], dp: number): DecodedPacket {
  return {
    ipVersion: src.length === 4 ? 4 : 6, srcAddr: Buffer.from(src), dstAddr: Buffer.from(dst), protocol: 6, srcPort: sp, dstPort: dp,
    seq: 0, ack: 0, flags: 0, window: 0, payload: Buffer.alloc(0), payloadLen: 0, tunnels: [], vlans: [],
  };
}

const addr = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 });
const port = fc.integer({ min: 0, max: 65535 });

describe('flow hashes', () => {
  it('are the same for both directions of a connection', () => {
    fc.assert(
      fc.property(addr, port, addr, port, (a, ap, b, bp) => {
        expect(flowHash(pkt(a, ap, b, bp))).toBe(flowHash(pkt(b, bp, a, ap)));
        expect(hostPairHash(pkt(a, ap, b, bp))).toBe(hostPairHash(pkt(b, bp, a, ap)));
      }),
    );
  });

  it('hostPairHash keeps every connection between two hosts together; flowHash separates them', () => {
    const a = [10, 0, 0, 1];
    const b = [10, 0, 0, 2];
    const host = new Set<number>();
    const flow = new Set<number>();
    for (let p = 40000; p < 40064; p++) {
      host.add(hostPairHash(pkt(a, p, b, 21)));
      flow.add(flowHash(pkt(a, p, b, 21)));
    }
    expect(host.size).toBe(1);
    expect(flow.size).toBeGreaterThan(50);
  });

  it('spreads flows evenly over shards', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[flowHash(pkt([10, 0, i >> 8, i & 255], 50000 + (i % 7), [10, 1, 0, 1], 443)) % 4]++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
  });
});
