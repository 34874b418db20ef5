import type { DecodedPacket, RawPacket } from '../types.js';
import { decodePacket } from '../decode/index.js';

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

/**
 * `flowHash` / `hostPairHash` of an untunnelled Ethernet / IPv4 / TCP frame straight from its
 * bytes, or -1 when the frame is anything else (VLAN, IPv6, tunnels, fragments, short): the caller
 * then decodes it and uses `flowHash` / `hostPairHash`. Same values as those of the decoded packet,
 * so a flow's packets agree whichever path they take. For the sharding reader thread, which needs
 * nothing but the hash.
 */
export function flowHashEthIpv4Tcp(f: Buffer): number {
  return rawHash(f, 0, f.length, true);
}

export function hostPairHashEthIpv4Tcp(f: Buffer): number {
  return rawHash(f, 0, f.length, false);
}

/**
 * `hostPairHashEthIpv4Tcp` of the frame at f[o, o + len) (a record inside a capture chunk, with no
 * view made for it): the sharding reader's fast path.
 */
export function hostPairHashEthIpv4TcpAt(f: Uint8Array, o: number, len: number): number {
  return rawHash(f, o, len, false);
}

function rawHash(f: Uint8Array, o: number, len: number, withPorts: boolean): number {
  if (len < 14 + 20 + 4 || f[o + 12] !== 0x08 || f[o + 13] !== 0x00) return -1;
  const vihl = f[o + 14];
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20 || f[o + 23] !== 6 || ((f[o + 20] << 8) | f[o + 21]) & 0x3fff) return -1;
  const t = o + 14 + ihl;
  if (len < 14 + ihl + 20) return -1;
  let a = o + 26,
    b = o + 30,
    ap = (f[t] << 8) | f[t + 1],
    bp = (f[t + 2] << 8) | f[t + 3];
  let c = 0;
  for (let i = 0; i < 4 && c === 0; i++) c = f[a + i] - f[b + i];
  if (c > 0 || (c === 0 && withPorts && ap > bp)) {
    a = o + 30;
    b = o + 26;
    const x = ap;
    ap = bp;
    bp = x;
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ f[a + i], 0x01000193);
  for (let i = 0; i < 4; i++) h = Math.imul(h ^ f[b + i], 0x01000193);
  if (withPorts) {
    h = Math.imul(h ^ (ap >>> 8), 0x01000193);
    h = Math.imul(h ^ (ap & 0xff), 0x01000193);
    h = Math.imul(h ^ (bp >>> 8), 0x01000193);
    h = Math.imul(h ^ (bp & 0xff), 0x01000193);
    h = Math.imul(h ^ 6, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Anomalies are counted by the engine that decodes the packet for real, not by a sharder. */
const IGNORE = { anomaly(): void {} };

/**
 * Shard hash of a captured frame (`hostPairHash`, or `flowHash` with `withPorts`): from its bytes
 * for plain Ethernet/IPv4/TCP, else after decoding it into `scratch`; -1 when it is neither TCP
 * nor UDP (UDP: QUIC, whose connection's paths between the same two hosts share a host pair).
 */
export function packetHash(p: RawPacket, withPorts: boolean, scratch: DecodedPacket): number {
  if (p.linktype === 1) {
    const h = rawHash(p.data, 0, p.data.length, withPorts);
    if (h >= 0) return h;
  }
  const kind = decodePacket(p, scratch, IGNORE);
  return kind === 'tcp' || kind === 'udp' ? hash(scratch, withPorts) : -1;
}
