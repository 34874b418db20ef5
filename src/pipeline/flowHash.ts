import type { DecodedPacket } from '../types.js';

/**
 * Direction-independent 32-bit flow hash of the innermost IP 5-tuple (FNV-1a over the ordered
 * endpoints), so both directions of a connection land on the same shard / Kafka partition.
 * Only the shard choice depends on it; flow identity uses the full tuple.
 */
export function flowHash(p: DecodedPacket): number {
  let a = p.srcAddr, ap = p.srcPort, b = p.dstAddr, bp = p.dstPort;
  if (compare(a, ap, b, bp) > 0) {
    [a, b] = [b, a];
    [ap, bp] = [bp, ap];
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < a.length; i++) h = Math.imul(h ^ a[i], 0x01000193);
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  h = Math.imul(h ^ (ap >>> 8), 0x01000193);
  h = Math.imul(h ^ (ap & 0xff), 0x01000193);
  h = Math.imul(h ^ (bp >>> 8), 0x01000193);
  h = Math.imul(h ^ (bp & 0xff), 0x01000193);
  h = Math.imul(h ^ p.protocol, 0x01000193);
  return h >>> 0;
}

function compare(a: Buffer, ap: number, b: Buffer, bp: number): number {
  const c = Buffer.compare(a, b);
  return c !== 0 ? c : ap - bp;
}
