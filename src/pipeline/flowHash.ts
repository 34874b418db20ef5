import type { DecodedPacket } from '../types.js';

/**
 * Direction-independent 32-bit flow hash (FNV-1a over the ordered endpoints), so both directions
 * of a connection land on the same shard / Kafka partition.
 *
 * - `flowHash` covers the innermost IP 5-tuple: the Kafka packets topic's partitioning (CONTRACT.md).
 * - `hostPairHash` covers only the two addresses: every connection between two hosts lands on the
 *   same shard. Worker sharding inside one process uses it, because protocols with several
 *   connections (FTP control + data channels, TLS resumption across connections without a key
 *   log) need their connections in one engine.
 */
export function flowHash(p: DecodedPacket): number {
  return hash(p, true);
}

export function hostPairHash(p: DecodedPacket): number {
  return hash(p, false);
}

function hash(p: DecodedPacket, withPorts: boolean): number {
  let a = p.srcAddr,
    ap = p.srcPort,
    b = p.dstAddr,
    bp = p.dstPort;
  const c = Buffer.compare(a, b);
  if (c > 0 || (c === 0 && withPorts && ap > bp)) {
    [a, b] = [b, a];
    [ap, bp] = [bp, ap];
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < a.length; i++) h = Math.imul(h ^ a[i], 0x01000193);
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  if (withPorts) {
    h = Math.imul(h ^ (ap >>> 8), 0x01000193);
    h = Math.imul(h ^ (ap & 0xff), 0x01000193);
    h = Math.imul(h ^ (bp >>> 8), 0x01000193);
    h = Math.imul(h ^ (bp & 0xff), 0x01000193);
    h = Math.imul(h ^ p.protocol, 0x01000193);
  }
  // final avalanche (murmur3 fmix32) so `% shards` uses all bits
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
