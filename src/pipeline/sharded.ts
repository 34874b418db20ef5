/**
 * `replay --workers N`: the host-pair assignment of packets to N engine shards, and their
 * stats merge (the engines run in threads fed by one reader: src/pipeline/fanout.ts).
 *
 * Affinity: every packet of a host pair goes to one shard (all connections between two hosts meet:
 * FTP data channels and their control connection, session resumption across connections). A host
 * pair seen for the first time goes to the shard with the fewest bytes so far (least-loaded at
 * first sight, as Suricata's autofp schedulers balance flows), so a few heavy host pairs cannot
 * leave one shard with most of the work the way `hash % N` can; once the table of pairs is full,
 * new pairs fall back to their hash. The key is the 32-bit host-pair hash (pairs that collide
 * simply share a shard). The assignment is a deterministic function of the packets in capture
 * order, so the same capture gives the same split every time (and the same events for every N).
 */
import type { DecodedPacket, RawPacket } from '../types.js';
import { newDecodedPacket } from '../decode/index.js';
import { hostPairHashEthIpv4TcpAt, packetHash } from './flowHash.js';
import type { EngineStats } from './engine.js';
import { emptyDetectorStats } from '../detect/index.js';

/** Host pairs remembered for least-loaded assignment; beyond, new pairs go by hash. */
const MAX_ASSIGNED_PAIRS = 1 << 20;

/**
 * Host pair -> shard: least-loaded (bytes so far) at first sight, then fixed. Exported for tests.
 * The table is open addressing over typed arrays (the hash is already mixed: its low bits index
 * it), looked up once per packet by the dispatcher: a Map's lookup was ~3 % of that thread.
 */
export class ShardAssigner {
  /** Host-pair hashes by slot; a slot is taken when its shard is not 0. */
  private keys = new Uint32Array(1024);
  /** Shard + 1 by slot (0: empty). */
  private vals = new Uint16Array(1024);
  private size = 0;
  readonly bytes: number[];

  constructor(
    readonly shards: number,
    private readonly maxPairs = MAX_ASSIGNED_PAIRS,
  ) {
    if (shards > 0xfffe) throw new Error(`ShardAssigner: ${shards} shards`);
    this.bytes = new Array<number>(shards).fill(0);
  }

  /** Shard of a packet of `len` bytes whose host-pair hash is `h` (unsigned 32-bit). */
  shardOf(h: number, len: number): number {
    const keys = this.keys,
      vals = this.vals,
      mask = keys.length - 1;
    let i = h & mask;
    let v: number;
    while ((v = vals[i]) !== 0 && keys[i] !== h) i = (i + 1) & mask;
    let s: number;
    if (v !== 0) {
      s = v - 1;
    } else if (this.size < this.maxPairs) {
      s = 0;
      for (let k = 1; k < this.shards; k++) if (this.bytes[k] < this.bytes[s]) s = k;
      keys[i] = h;
      vals[i] = s + 1;
      if (++this.size * 2 > keys.length) this.grow();
    } else {
      s = h % this.shards;
    }
    this.bytes[s] += len;
    return s;
  }

  private grow(): void {
    const { keys, vals } = this;
    this.keys = new Uint32Array(keys.length * 2);
    this.vals = new Uint16Array(keys.length * 2);
    const mask = this.keys.length - 1;
    for (let j = 0; j < keys.length; j++) {
      if (vals[j] === 0) continue;
      let i = keys[j] & mask;
      while (this.vals[i] !== 0) i = (i + 1) & mask;
      this.keys[i] = keys[j];
      this.vals[i] = vals[j];
    }
  }
}

/** Shard of each captured packet, in capture order: its host pair's (ShardAssigner); not TCP/UDP -> 0. */
export interface PacketRouter {
  (p: RawPacket): number;
  /**
   * The same for a frame at buf[off, off + len) of link type `linktype`, straight from its bytes
   * when it is plain Ethernet/IPv4/TCP; -1 when it is not (route a RawPacket of it instead).
   */
  at(buf: Uint8Array, off: number, len: number, linktype: number): number;
  /** The host pair -> shard table behind it (for a caller that hashes the frame itself). */
  readonly assigner: ShardAssigner;
}

export function packetRouter(shards: number): PacketRouter {
  const assigner = new ShardAssigner(shards);
  const decoded: DecodedPacket = newDecodedPacket();
  const route = (p: RawPacket): number => {
    const h = packetHash(p, false, decoded);
    return h < 0 ? 0 : assigner.shardOf(h, p.data.length);
  };
  return Object.assign(route, {
    assigner,
    at(buf: Uint8Array, off: number, len: number, linktype: number): number {
      const h = linktype === 1 ? hostPairHashEthIpv4TcpAt(buf, off, len) : -1;
      return h < 0 ? -1 : assigner.shardOf(h, len);
    },
  });
}

function addInto(dst: Record<string, number>, src: Record<string, number>): void {
  for (const [k, v] of Object.entries(src)) dst[k] = (dst[k] ?? 0) + v;
}

export function mergeStats(list: EngineStats[]): EngineStats {
  const t: EngineStats = {
    packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0,
    sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {},
  };
  for (const s of list) {
    t.packets += s.packets;
    t.bytes += s.bytes;
    t.tcpPackets += s.tcpPackets;
    t.flows += s.flows;
    t.tlsFlows += s.tlsFlows;
    t.otherFlows += s.otherFlows;
    t.decryptedBytes += s.decryptedBytes;
    addInto(t.sessionsByStatus, s.sessionsByStatus);
    addInto(t.eventsByDataset, s.eventsByDataset);
    addInto(t.anomalies, s.anomalies);
    addInto(t.notDecoded, s.notDecoded);
    if (s.detection) {
      // every counter of DetectorStats is a number but alertsByRule, a map
      const td = (t.detection ??= emptyDetectorStats()) as unknown as Record<string, number>;
      for (const [k, v] of Object.entries(s.detection)) if (typeof v === 'number') td[k] += v;
      addInto(t.detection.alertsByRule, s.detection.alertsByRule);
    }
  }
  return t;
}
