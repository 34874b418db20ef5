import {
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  tsSeconds,
  type AnomalySink,
  type DecodedPacket,
  type Dir,
  type EndReason,
  type FlowCounters,
  type FlowHandler,
  type FlowHandlerFactory,
  type FlowInfo,
  type Timestamp,
} from '../types.js';
import { communityId } from '../events/communityId.js';
import { ipToString } from '../decode/ip.js';
import { HalfStream, newReassemblyStats, seqLt, type HalfStreamOwner, type ReassemblyStats } from './reassembly.js';

/**
 * The TCP flow table: maps decoded TCP segments to connections, resolves client/server roles,
 * feeds each direction through a HalfStream (reassembly.ts, which states the reassembly
 * policies) and drives the FlowHandler lifecycle. Everything is by capture time, never wall time.
 *
 * Policies:
 * - Flow key: the unordered pair of endpoints (IP address bytes + port) of the innermost IP
 *   packet, IPv4 or IPv6, protocol TCP. Both directions hash to the same 30-bit number (the two
 *   endpoint hashes are ordered before mixing, so the key is direction-independent and a V8
 *   small integer); collisions are chained and resolved by comparing the endpoints exactly.
 *   VLAN ids, tunnels and sensor are not part of the key (a flow mirrored twice is one flow).
 * - Roles: the sender of a SYN without ACK is the client; the sender of a SYN+ACK is the server
 *   (RFC 9293 §3.5); `rolesFromHandshake` is then true. A flow first seen mid-connection guesses:
 *   if exactly one port is a server port (< 1024 or in `serverPorts`, the well-known TLS ports by
 *   default), that side is the server; otherwise the destination of the first packet is.
 *   Roles never change afterwards.
 * - A lone RST for an unknown flow does not create a flow (counted `packetsIgnored`).
 * - RST (either side; not validated against the window): both directions are flushed (holes →
 *   gaps), onEnd(dir, 'rst') for each not yet ended, and the flow enters the closing state.
 * - Both FINs seen: the flow enters the closing state. Each direction's onEnd(dir, 'fin') comes
 *   as soon as its bytes before the FIN are delivered.
 * - Closing state: the flow stays in the table for `closedTimeoutSec` of capture time so that
 *   trailing retransmissions and the last ACK do not start a new flow; late data may still fill
 *   holes. At the deadline remaining holes become gaps and onClose('fin' | 'rst') is called.
 *   Exception: once both directions have ended (no holes left) and the handler's settled()
 *   says it waits for nothing, onClose is called at once; the entry stays, reported, until the
 *   deadline and absorbs late packets (they count on the flow and are delivered nowhere).
 *   A SYN without ACK with a new ISN on a closing flow (port reuse) closes it at once and starts
 *   a new flow; so does one on an open flow whose same side already sent a SYN with another ISN
 *   (the old connection ended unseen; it is closed with 'timeout').
 * - Idle timeout: an established flow without packets for `idleTimeoutSec` is closed with
 *   'timeout' (holes → gaps, onEnd(dir, 'timeout') for directions without FIN). Expiry runs
 *   inside processSegment whenever capture time crosses the next whole second, and on expire().
 * - Table full (`maxFlows`): a new flow first evicts a closing flow (oldest first; closed with its
 *   own 'fin'/'rst' reason, nothing is lost), else the least recently active flow, closed with
 *   'evicted' and counted as `flow_evicted`.
 * - Order across the two directions: each direction is reassembled on its own, but the handler
 *   also needs the two in causal order (an HTTP response after its request, a ServerHello after
 *   its ClientHello). A copy of the traffic can swap them: a mirror that receives the two
 *   directions on two links, or two receive threads, delivers a server segment before the client
 *   segment it answers. A segment's ACK says what the sender had received when it sent it, so
 *   in-order data of direction D carried by a packet whose ACK covers bytes of the other
 *   direction not yet delivered (at most `MAX_HOLD_AHEAD` ahead of them) is HELD, copied, with
 *   D's later data, gaps and end queued behind it, until the other direction has delivered up
 *   to that ACK; then it is delivered, in D's order. Until then nothing of D reaches the
 *   handler. A hold ends without the other direction catching up (counted
 *   `tcp_crossdir_hold_expired`, the data delivered as it came, and that direction is not held
 *   again in this flow) when the other direction ends,
 *   when its bytes were lost by the capture (a gap declared over them releases it normally), when
 *   `HOLD_MAX_SEC` of capture time passed with a packet of the flow, when D holds more than
 *   `maxBufferedPerDirection` bytes, over the total budget, or when the flow closes. Captures with
 *   one direction only, or a direction whose start was not seen, never hold.
 * - Memory: out-of-order and held bytes are bounded per direction and in total
 *   (`maxBufferedTotal`): over the total, the largest buffers are flushed as gaps until under.
 * - closeAll (end of input): every flow is finished; flows still open close with 'eof', flows
 *   already closing with their own 'fin'/'rst'.
 * - onClose is called exactly once per flow, with its FlowCounters (clientBytes/serverBytes are
 *   payload bytes on the wire, retransmissions included).
 * - Handlers: a handler (or the factory) that throws is counted as `handler_error` with the error
 *   message as detail; the flow stays tracked (so its later packets do not start a new flow), its
 *   handler gets nothing more but the onClose at the end, and every other flow carries on.
 *   Handlers must not call back into the table.
 * - Data views: onData receives views into the packet (or into our own out-of-order copies);
 *   they are valid only during the call. A handler that keeps bytes must copy them.
 */

export interface TcpOptions {
  /** Flows tracked at once; when full the least recently active flow is evicted. */
  maxFlows: number;
  /** Capture-time seconds without packets after which an established flow is closed. */
  idleTimeoutSec: number;
  /** Capture-time seconds a flow stays after both FINs / an RST, to absorb trailing packets. */
  closedTimeoutSec: number;
  /** Out-of-order bytes buffered per direction; beyond: skip ahead with a gap. */
  maxBufferedPerDirection: number;
  /** Out-of-order pieces buffered per direction (bounds bookkeeping of many tiny segments). */
  maxSegmentsPerDirection: number;
  /** Out-of-order bytes buffered across all flows; beyond: the largest buffers are flushed. */
  maxBufferedTotal: number;
  /** A segment further ahead than this (bytes) is out of any window and dropped. */
  maxSeqJump: number;
  /** Ports treated as server ports (besides < 1024) when guessing roles mid-connection. */
  serverPorts: readonly number[];
  /**
   * What runs the timeouts. 'packets' (replay: one capture in time order): every packet moves the
   * table's capture time and may time out any flow. 'ticks' (`run`: partitions fetched side by
   * side, one of them possibly far ahead in capture time): only expire() times flows out, with the
   * time every partition has reached (src/kafka/captureClock.ts); a packet checks only its own
   * flow's timeouts (its own flow lives in its own partition, so its time is comparable).
   */
  clock: 'packets' | 'ticks';
}

export const DEFAULT_TCP_OPTIONS: Readonly<TcpOptions> = Object.freeze({
  maxFlows: 100_000,
  idleTimeoutSec: 300,
  closedTimeoutSec: 10,
  maxBufferedPerDirection: 4 * 1024 * 1024,
  maxSegmentsPerDirection: 8192,
  maxBufferedTotal: 512 * 1024 * 1024,
  maxSeqJump: 1 << 30,
  serverPorts: Object.freeze([443, 465, 587, 636, 853, 990, 993, 995, 8443]),
  clock: 'packets',
});

export interface TcpStats extends ReassemblyStats {
  /** Packets handed to processSegment. */
  packets: number;
  /** Packets whose innermost protocol is not TCP (skipped). */
  packetsNotTcp: number;
  /** TCP packets dropped without a flow (stray RST, bad address length). */
  packetsIgnored: number;
  flowsCreated: number;
  flowsActive: number;
  flowsEvicted: number;
  flowsTimedOut: number;
  flowsClosed: number;
  portReuses: number;
  totalBufferLimitHits: number;
  handlerErrors: number;
}

const enum ListId {
  None = 0,
  Active = 1,
  Closing = 2,
}

/** Doubly linked list through the flows' own prev/next fields: O(1) touch/remove, no allocation. */
class FlowList {
  head: Flow | null = null;
  tail: Flow | null = null;
  constructor(readonly id: ListId) {}

  push(f: Flow): void {
    f.list = this.id;
    f.prev = this.tail;
    f.next = null;
    if (this.tail !== null) this.tail.next = f;
    else this.head = f;
    this.tail = f;
  }

  remove(f: Flow): void {
    if (f.prev !== null) f.prev.next = f.next;
    else this.head = f.next;
    if (f.next !== null) f.next.prev = f.prev;
    else this.tail = f.prev;
    f.prev = f.next = null;
    f.list = ListId.None;
  }

  touch(f: Flow): void {
    if (this.tail === f) return;
    this.remove(f);
    this.push(f);
  }
}

const MAX_ERROR_DETAIL = 200;
/** An ACK further ahead of the other direction's delivered bytes than this does not hold data (a bogus ACK, or loss too large to wait for). */
const MAX_HOLD_AHEAD = 16 * 1024 * 1024;
/** Capture seconds a held direction waits for the other one at most (checked on the flow's packets). */
const HOLD_MAX_SEC = 2;

/** One delivery held back until the other direction has delivered up to `needAck`: data (a copy), a gap or the end. */
class Held {
  constructor(
    readonly data: Buffer | null,
    readonly gap: number,
    readonly end: EndReason | null,
    readonly ts: Timestamp,
    readonly needAck: number,
  ) {}
}

class Flow implements HalfStreamOwner {
  // Endpoint A is the source of the flow's first packet; addresses as four int32 words.
  aw0 = 0;
  aw1 = 0;
  aw2 = 0;
  aw3 = 0;
  bw0 = 0;
  bw1 = 0;
  bw2 = 0;
  bw3 = 0;
  portA = 0;
  portB = 0;
  ipVersion: 4 | 6 = 4;
  key = 0;
  /** Next flow in the same hash bucket. */
  chain: Flow | null = null;
  prev: Flow | null = null;
  next: Flow | null = null;
  list: ListId = ListId.None;
  clientIsA = true;
  lastSec = 0;
  /** Capture time (s) the flow entered the closing state, or -1. */
  closingSince = -1;
  rstSeen = false;
  closed = false;
  /** onClose already called (settled flow, reported at its end); the entry only absorbs late packets. */
  reported = false;
  failed = false;
  readonly half: [HalfStream, HalfStream];
  readonly counters: FlowCounters;
  /**
   * The direction and ACK number of the packet being processed when that ACK would hold its data
   * (ahead of what the other direction delivered, by at most MAX_HOLD_AHEAD; set by the table's
   * segment path), else ackDir -1.
   */
  ackDir = -1;
  ackNow = 0;
  /** Per direction, the deliveries held for the other direction (null: none); `holding`: either is not null. */
  held: [Held[] | null, Held[] | null] = [null, null];
  holding = false;
  /** Per direction: a hold of it expired, so it is not held again (the other side's capture is lossy). */
  noHold: [boolean, boolean] = [false, false];
  /** Data bytes held per direction; capture time (s) the current holds began. */
  heldDirBytes: [number, number] = [0, 0];
  heldSince = 0;

  /** Data bytes held, both directions. */
  get heldBytes(): number {
    return this.heldDirBytes[0] + this.heldDirBytes[1];
  }

  constructor(
    readonly info: FlowInfo,
    public handler: FlowHandler | null,
    private readonly table: TcpFlowTable,
    stats: ReassemblyStats,
    anomalies: AnomalySink,
    limits: TcpOptions,
  ) {
    this.half = [
      new HalfStream(0 as Dir, this, stats, anomalies, limits),
      new HalfStream(1 as Dir, this, stats, anomalies, limits),
    ];
    this.counters = {
      clientBytes: 0,
      serverBytes: 0,
      clientPackets: 0,
      serverPackets: 0,
      gapBytes: 0,
      last: { sec: info.start.sec, nsec: info.start.nsec },
    };
    this.stats = stats;
    this.limits = limits;
    this.anomalies = anomalies;
  }

  private readonly stats: ReassemblyStats;
  private readonly limits: TcpOptions;
  private readonly anomalies: AnomalySink;

  streamData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (this.failed || this.handler === null) return;
    if ((this.holding && this.held[dir] !== null) || (dir === this.ackDir && !this.noHold[dir])) {
      const copy = Buffer.allocUnsafe(data.length);
      data.copy(copy);
      this.hold(dir, new Held(copy, 0, null, ts, this.needAck(dir)), ts);
      return;
    }
    try {
      this.handler.onData(dir, data, ts);
    } catch (e) {
      this.fail(e);
    }
    if (this.holding && this.held[dir ^ 1] !== null) this.release((dir ^ 1) as Dir, false);
  }

  streamGap(dir: Dir, length: number, ts: Timestamp): void {
    this.counters.gapBytes += length;
    if (this.failed || this.handler === null) return;
    if (this.holding && this.held[dir] !== null) {
      this.hold(dir, new Held(null, length, null, ts, this.needAck(dir)), ts);
      return;
    }
    try {
      this.handler.onGap(dir, length, ts);
    } catch (e) {
      this.fail(e);
    }
    if (this.holding && this.held[dir ^ 1] !== null) this.release((dir ^ 1) as Dir, false);
  }

  streamEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (this.failed || this.handler === null) return;
    // what the other direction held for this one can no longer wait: before this end (an HTTP
    // parser closes a request without response at its client's end)
    if (this.holding && this.held[dir ^ 1] !== null) this.release((dir ^ 1) as Dir, true);
    if (this.holding && this.held[dir] !== null) {
      this.hold(dir, new Held(null, 0, reason, ts, this.needAck(dir)), ts);
      return;
    }
    try {
      this.handler.onEnd(dir, reason, ts);
    } catch (e) {
      this.fail(e);
    }
  }

  /** What a new held item of `dir` waits for: the current packet's ACK, never less than the item before it. */
  private needAck(dir: Dir): number {
    const q = this.held[dir];
    const last = q !== null && q.length > 0 ? q[q.length - 1].needAck : this.half[dir ^ 1].nextSeq;
    return dir === this.ackDir && ((this.ackNow - last) | 0) > 0 ? this.ackNow : last;
  }

  private hold(dir: Dir, item: Held, ts: Timestamp): void {
    let q = this.held[dir];
    if (q === null) {
      q = this.held[dir] = [];
      this.stats.crossDirHolds++;
      if (!this.holding) this.heldSince = tsSeconds(ts);
      this.holding = true;
    }
    q.push(item);
    if (item.data !== null) {
      this.heldDirBytes[dir] += item.data.length;
      this.stats.bufferedBytes += item.data.length;
      if (this.heldDirBytes[dir] > this.limits.maxBufferedPerDirection) this.release(dir, true);
    }
  }

  /**
   * Deliver what `dir` holds, in order, as far as the other direction has caught up (`force`:
   * all of it; counted as expired when the other direction has not caught up, ended or not).
   */
  release(dir: Dir, force: boolean): void {
    const q = this.held[dir];
    if (q === null) return;
    const o = this.half[dir ^ 1];
    let k = 0;
    while (k < q.length && (force || o.ended || !seqLt(o.nextSeq, q[k].needAck))) k++;
    if (k === 0) return;
    if (seqLt(o.nextSeq, q[k - 1].needAck)) {
      // released before the other direction caught up: its bytes are lost to the capture (or
      // the flow is one-sided from here on); this direction does not wait for it again
      this.stats.crossDirHoldsExpired++;
      this.anomalies.anomaly('tcp_crossdir_hold_expired');
      this.noHold[dir] = true;
    }
    const items = k === q.length ? q : q.slice(0, k);
    if (k === q.length) {
      this.held[dir] = null;
      this.holding = this.held[dir ^ 1] !== null;
    } else q.splice(0, k);
    for (const it of items) {
      if (it.data !== null) {
        this.heldDirBytes[dir] -= it.data.length;
        this.stats.bufferedBytes -= it.data.length;
      }
      const h = this.handler;
      if (this.failed || h === null) continue;
      try {
        if (it.data !== null) h.onData(dir, it.data, it.ts);
        else if (it.end !== null) h.onEnd(dir, it.end, it.ts);
        else h.onGap(dir, it.gap, it.ts);
      } catch (e) {
        this.fail(e);
      }
    }
  }

  /** Both directions' holds, entirely. */
  releaseAll(): void {
    if (!this.holding) return;
    this.release(0, true);
    this.release(1, true);
  }

  fail(e: unknown): void {
    this.failed = true;
    this.table.handlerError(e);
  }
}

/** Is this flow the one with endpoints (s, sp) / (d, dp) in either order? */
function sameEndpoints(
  f: Flow,
  v: number,
  s0: number, s1: number, s2: number, s3: number, sp: number,
  d0: number, d1: number, d2: number, d3: number, dp: number,
): 0 | 1 | 2 {
  if (f.ipVersion !== v) return 0;
  if (f.portA === sp && f.portB === dp && f.aw0 === s0 && f.bw0 === d0 && f.aw1 === s1 && f.bw1 === d1 &&
      f.aw2 === s2 && f.bw2 === d2 && f.aw3 === s3 && f.bw3 === d3) return 1;
  if (f.portA === dp && f.portB === sp && f.aw0 === d0 && f.bw0 === s0 && f.aw1 === d1 && f.bw1 === s1 &&
      f.aw2 === d2 && f.bw2 === s2 && f.aw3 === d3 && f.bw3 === s3) return 2;
  return 0;
}

/** murmur3-style finalizer over the address words and port of one endpoint. */
function endpointHash(w0: number, w1: number, w2: number, w3: number, port: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ w1;
  h = Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64;
  h = Math.imul(h ^ w2, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ w3;
  h = Math.imul(h ^ port, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function word(a: Buffer, i: number): number {
  return (a[i] << 24) | (a[i + 1] << 16) | (a[i + 2] << 8) | a[i + 3];
}

function sanitize(opts: Partial<TcpOptions> | undefined): TcpOptions {
  const o: TcpOptions = { ...DEFAULT_TCP_OPTIONS };
  if (opts === undefined) return o;
  const num = (v: number | undefined, d: number, min: number): number =>
    typeof v === 'number' && Number.isFinite(v) && v >= min ? v : d;
  o.maxFlows = Math.floor(num(opts.maxFlows, o.maxFlows, 1));
  o.idleTimeoutSec = num(opts.idleTimeoutSec, o.idleTimeoutSec, 0);
  o.closedTimeoutSec = num(opts.closedTimeoutSec, o.closedTimeoutSec, 0);
  o.maxBufferedPerDirection = num(opts.maxBufferedPerDirection, o.maxBufferedPerDirection, 0);
  o.maxSegmentsPerDirection = num(opts.maxSegmentsPerDirection, o.maxSegmentsPerDirection, 1);
  o.maxBufferedTotal = num(opts.maxBufferedTotal, o.maxBufferedTotal, 0);
  // The modular comparison only works within half the sequence space.
  o.maxSeqJump = Math.min(num(opts.maxSeqJump, o.maxSeqJump, 1), 0x7fffffff);
  if (Array.isArray(opts.serverPorts)) o.serverPorts = opts.serverPorts.slice();
  if (opts.clock === 'ticks') o.clock = 'ticks';
  return o;
}

export class TcpFlowTable {
  readonly stats: TcpStats;
  private readonly opts: TcpOptions;
  private readonly buckets = new Map<number, Flow>();
  private readonly active = new FlowList(ListId.Active);
  private readonly closing = new FlowList(ListId.Closing);
  private readonly serverPortSet: Set<number>;
  private nextId = 1;
  /** Latest capture time seen (s), and when the next internal expiry pass is due. */
  private clock = -Infinity;
  private nextExpireAt = -Infinity;
  /** opts.clock === 'packets'. */
  private readonly byPackets: boolean;
  // Scratch endpoint words of the current packet (no per-packet allocation).
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private d0 = 0;
  private d1 = 0;
  private d2 = 0;
  private d3 = 0;

  constructor(
    private readonly factory: FlowHandlerFactory,
    private readonly anomalies: AnomalySink,
    opts?: Partial<TcpOptions>,
  ) {
    this.opts = sanitize(opts);
    this.byPackets = this.opts.clock === 'packets';
    this.serverPortSet = new Set(this.opts.serverPorts);
    this.stats = {
      ...newReassemblyStats(),
      packets: 0,
      packetsNotTcp: 0,
      packetsIgnored: 0,
      flowsCreated: 0,
      flowsActive: 0,
      flowsEvicted: 0,
      flowsTimedOut: 0,
      flowsClosed: 0,
      portReuses: 0,
      totalBufferLimitHits: 0,
      handlerErrors: 0,
    };
  }

  get activeFlows(): number {
    return this.stats.flowsActive;
  }

  get options(): Readonly<TcpOptions> {
    return this.opts;
  }

  /**
   * One decoded TCP segment at capture time ts. Never throws: bad input is counted; an internal
   * fault is caught and counted as `tcp_internal_error` so one packet cannot stop the engine.
   */
  processSegment(p: DecodedPacket, ts: Timestamp, sensor?: string): void {
    try {
      this.segmentUnguarded(p, ts, sensor);
    } catch (e) {
      this.internalError(e);
    }
  }

  private segmentUnguarded(p: DecodedPacket, ts: Timestamp, sensor: string | undefined): void {
    const stats = this.stats;
    stats.packets++;
    if (p.protocol !== 6) {
      stats.packetsNotTcp++;
      return;
    }
    const sa = p.srcAddr;
    const da = p.dstAddr;
    const alen = p.ipVersion === 6 ? 16 : 4;
    if (sa.length !== alen || da.length !== alen) {
      stats.packetsIgnored++;
      this.anomalies.anomaly('tcp_bad_address');
      return;
    }

    const sec = tsSeconds(ts);
    const byPackets = this.byPackets;
    if (byPackets) {
      if (sec > this.clock) this.clock = sec;
      if (this.clock >= this.nextExpireAt) this.expireAt(this.clock, ts);
    }

    this.s0 = word(sa, 0);
    this.d0 = word(da, 0);
    if (alen === 16) {
      this.s1 = word(sa, 4);
      this.s2 = word(sa, 8);
      this.s3 = word(sa, 12);
      this.d1 = word(da, 4);
      this.d2 = word(da, 8);
      this.d3 = word(da, 12);
    } else {
      this.s1 = this.s2 = this.s3 = this.d1 = this.d2 = this.d3 = 0;
    }
    const sp = p.srcPort & 0xffff;
    const dp = p.dstPort & 0xffff;

    // The flows of the last two packets first (bulk transfers' packets come in runs of one flow, or
    // two interleaved): a flow still in the table is the only one with its endpoints, so a match is
    // the lookup's answer.
    let flow = this.lastFlow;
    let match: 0 | 1 | 2 = 0;
    if (flow !== null && !flow.closed) {
      match = sameEndpoints(flow, p.ipVersion, this.s0, this.s1, this.s2, this.s3, sp, this.d0, this.d1, this.d2, this.d3, dp);
    }
    if (match === 0) {
      flow = this.prevFlow;
      if (flow !== null && !flow.closed) {
        match = sameEndpoints(flow, p.ipVersion, this.s0, this.s1, this.s2, this.s3, sp, this.d0, this.d1, this.d2, this.d3, dp);
      }
    }
    if (match === 0) {
      flow = this.buckets.get(this.flowKey(sp, dp, p.ipVersion)) ?? null;
      while (flow !== null) {
        match = sameEndpoints(flow, p.ipVersion, this.s0, this.s1, this.s2, this.s3, sp, this.d0, this.d1, this.d2, this.d3, dp);
        if (match !== 0) break;
        flow = flow.chain;
      }
    }

    if (!byPackets && flow !== null && this.ownTimeout(flow, sec, ts)) flow = null;
    const flags = p.flags;
    if (flow !== null && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) {
      // Port reuse (RFC 9293 §3.10.7.2, TIME-WAIT reuse): a SYN with a new ISN starts a new
      // connection. On a closing flow any new ISN does; on an open flow only when the same side
      // already opened it with another ISN (a client never re-SYNs a live connection with a new
      // ISN, so the old one ended unseen: it is closed as 'timeout').
      const h = flow.half[(match === 1) === flow.clientIsA ? 0 : 1];
      const newIsn = !h.synSeen || h.isn !== p.seq >>> 0;
      const closing = flow.list === ListId.Closing;
      if (closing ? newIsn : h.synSeen && newIsn) {
        stats.portReuses++;
        this.finalize(flow, closing ? (flow.rstSeen ? 'rst' : 'fin') : 'timeout', ts);
        flow = null;
      }
    }
    if (flow === null) {
      if (flags & TCP_RST) {
        stats.packetsIgnored++;
        return;
      }
      flow = this.createFlow(p, sp, dp, this.flowKey(sp, dp, p.ipVersion), ts, sensor);
      match = 1;
    }
    if (flow !== this.lastFlow) {
      this.prevFlow = this.lastFlow;
      this.lastFlow = flow;
    }

    const fromA = match === 1;
    const dir = (fromA === flow.clientIsA ? 0 : 1) as Dir;
    let wireLen = p.payloadLen;
    if (!(wireLen >= 0)) wireLen = p.payload.length; // NaN/negative from a broken decoder
    const c = flow.counters;
    if (dir === 0) {
      c.clientBytes += wireLen;
      c.clientPackets++;
    } else {
      c.serverBytes += wireLen;
      c.serverPackets++;
    }
    c.last.sec = ts.sec;
    c.last.nsec = ts.nsec;
    if (sec > flow.lastSec) flow.lastSec = sec;
    if (flow.list === ListId.Active) this.active.touch(flow);

    if (flags & TCP_RST) {
      flow.rstSeen = true;
      flow.half[0].finish('rst', ts);
      flow.half[1].finish('rst', ts);
      if (flow.list === ListId.Active) this.startClosing(flow, sec);
      if (!flow.reported) this.reportIfSettled(flow, ts);
      return;
    }

    const h = flow.half[dir];
    let seq = p.seq >>> 0;
    if (flags & TCP_SYN) {
      h.syn(seq);
      seq = (seq + 1) >>> 0; // the SYN occupies one sequence number
    }
    const fin = (flags & TCP_FIN) !== 0;
    if (wireLen > 0 || fin) {
      // the ACK matters to the cross-direction hold only when it is ahead of what the other
      // direction delivered (rare: the hold's check in streamData then runs)
      if (flags & TCP_ACK) {
        const o = flow.half[dir === 0 ? 1 : 0];
        const ahead = (p.ack - o.nextSeq) | 0;
        if (ahead > 0 && ahead <= MAX_HOLD_AHEAD && o.seqKnown && !o.ended) {
          flow.ackDir = dir;
          flow.ackNow = p.ack >>> 0;
        }
      }
      h.segment(seq, p.payload, wireLen, fin, ts);
      flow.ackDir = -1;
    }
    if (flags & TCP_ACK) flow.half[dir === 0 ? 1 : 0].peerAck(p.ack >>> 0, ts);
    if (flow.holding && sec - flow.heldSince > HOLD_MAX_SEC) flow.releaseAll();

    if (flow.list === ListId.Active && flow.half[0].finSeen && flow.half[1].finSeen) this.startClosing(flow, sec);
    if (flow.list === ListId.Closing && !flow.reported && flow.half[0].ended && flow.half[1].ended) this.reportIfSettled(flow, ts);
    if (stats.bufferedBytes > this.opts.maxBufferedTotal) this.enforceTotal(ts);
  }

  /** The flows of the previous segments (checked before the hash lookup; closed ones are skipped). */
  private lastFlow: Flow | null = null;
  private prevFlow: Flow | null = null;

  /** Bucket key of the current packet's endpoints (s0..s3/sp, d0..d3/dp), the same in both directions. */
  private flowKey(sp: number, dp: number, ipVersion: number): number {
    const hs = endpointHash(this.s0, this.s1, this.s2, this.s3, sp);
    const hd = endpointHash(this.d0, this.d1, this.d2, this.d3, dp);
    const lo = hs < hd ? hs : hd;
    const hi = hs < hd ? hd : hs;
    const key = Math.imul(lo ^ (hi >>> 16), 0x85ebca6b) ^ Math.imul(hi, 0x27d4eb2d) ^ ipVersion;
    return (key ^ (key >>> 15)) & 0x3fffffff;
  }

  /** Expire idle and closing flows by capture time `now`. */
  expire(now: Timestamp): void {
    try {
      const sec = tsSeconds(now);
      if (sec > this.clock) this.clock = sec;
      this.expireAt(this.clock, now);
    } catch (e) {
      this.internalError(e);
    }
  }

  /** End of input: flush all buffered data (holes → gaps) and close every flow. */
  closeAll(ts?: Timestamp): void {
    for (const list of [this.closing, this.active]) {
      while (list.head !== null) {
        const f = list.head;
        const when = ts ?? f.counters.last;
        try {
          this.finalize(f, f.list === ListId.Closing ? (f.rstSeen ? 'rst' : 'fin') : 'eof', when);
        } catch (e) {
          this.internalError(e);
        }
      }
    }
  }

  /**
   * Closes at once every flow whose handler `match` picks ('evicted'; the handler decides what it
   * reports) and forgets it: `run` drops the flows of partitions handed to another engine, so that
   * re-reading them later starts fresh flows. Returns how many.
   */
  closeWhere(match: (h: FlowHandler) => boolean, ts: Timestamp): number {
    let n = 0;
    for (const list of [this.closing, this.active]) {
      for (let f = list.head; f !== null; ) {
        const next = f.next;
        if (f.handler !== null && match(f.handler)) {
          this.finalize(f, 'evicted', ts);
          n++;
        }
        f = next;
      }
    }
    return n;
  }

  /** Called by a flow whose handler threw. */
  handlerError(e: unknown): void {
    this.stats.handlerErrors++;
    let msg: string;
    try {
      msg = e instanceof Error ? e.message : String(e);
    } catch {
      msg = 'unprintable error';
    }
    if (msg.length > MAX_ERROR_DETAIL) msg = msg.slice(0, MAX_ERROR_DETAIL);
    this.anomalies.anomaly('handler_error', msg);
  }

  // ---- internals -------------------------------------------------------------------------

  private internalError(e: unknown): void {
    let msg: string;
    try {
      msg = e instanceof Error ? e.message : String(e);
    } catch {
      msg = 'unprintable error';
    }
    this.anomalies.anomaly('tcp_internal_error', msg.slice(0, MAX_ERROR_DETAIL));
  }

  private expireAt(sec: number, ts: Timestamp): void {
    // At most one pass per capture second from processSegment: the lists are ordered, so a pass
    // only looks at their heads.
    this.nextExpireAt = Math.floor(sec) + 1;
    const closedT = this.opts.closedTimeoutSec;
    while (this.closing.head !== null && this.closing.head.closingSince + closedT <= sec) {
      const f = this.closing.head;
      this.finalize(f, f.rstSeen ? 'rst' : 'fin', ts);
    }
    const idleT = this.opts.idleTimeoutSec;
    while (this.active.head !== null && this.active.head.lastSec + idleT <= sec) {
      this.stats.flowsTimedOut++;
      this.finalize(this.active.head, 'timeout', ts);
    }
  }

  /**
   * clock 'ticks': the timeout a packet of `f` at `sec` finds already due (what expireAt would
   * have done had the table's time reached `sec`). True when `f` was closed by it.
   */
  private ownTimeout(f: Flow, sec: number, ts: Timestamp): boolean {
    // as expireAt runs in 'packets' mode (at most once per capture second), a timeout is due at the
    // earliest in the second after the flow's last event: with a timeout of 0, trailing packets of
    // the same second are absorbed rather than starting a flow of their own
    if (f.list === ListId.Closing) {
      if (Math.max(f.closingSince + this.opts.closedTimeoutSec, Math.floor(f.closingSince) + 1) > sec) return false;
      this.finalize(f, f.rstSeen ? 'rst' : 'fin', ts);
      return true;
    }
    if (f.list !== ListId.Active || Math.max(f.lastSec + this.opts.idleTimeoutSec, Math.floor(f.lastSec) + 1) > sec) return false;
    this.stats.flowsTimedOut++;
    this.finalize(f, 'timeout', ts);
    return true;
  }

  private isServerPort(port: number): boolean {
    return port < 1024 || this.serverPortSet.has(port);
  }

  private createFlow(p: DecodedPacket, sp: number, dp: number, key: number, ts: Timestamp, sensor?: string): Flow {
    if (this.stats.flowsActive >= this.opts.maxFlows) this.evictOne(ts);

    const flags = p.flags;
    let clientIsA: boolean;
    let fromHandshake = true;
    if ((flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) clientIsA = true;
    else if ((flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) clientIsA = false;
    else {
      fromHandshake = false;
      const srcServer = this.isServerPort(sp);
      const dstServer = this.isServerPort(dp);
      clientIsA = !(srcServer && !dstServer);
    }

    const aStr = ipToString(p.srcAddr);
    const bStr = ipToString(p.dstAddr);
    const info: FlowInfo = {
      id: this.nextId++,
      clientIp: clientIsA ? aStr : bStr,
      clientPort: clientIsA ? sp : dp,
      serverIp: clientIsA ? bStr : aStr,
      serverPort: clientIsA ? dp : sp,
      ipVersion: p.ipVersion,
      start: { sec: ts.sec, nsec: ts.nsec },
      rolesFromHandshake: fromHandshake,
      communityId: communityId(p.srcAddr, sp, p.dstAddr, dp, 6),
    };
    if (sensor !== undefined) info.sensor = sensor;

    const flow = new Flow(info, null, this, this.stats, this.anomalies, this.opts);
    try {
      flow.handler = this.factory(info);
    } catch (e) {
      flow.failed = true;
      this.handlerError(e);
    }
    flow.aw0 = this.s0;
    flow.aw1 = this.s1;
    flow.aw2 = this.s2;
    flow.aw3 = this.s3;
    flow.bw0 = this.d0;
    flow.bw1 = this.d1;
    flow.bw2 = this.d2;
    flow.bw3 = this.d3;
    flow.portA = sp;
    flow.portB = dp;
    flow.ipVersion = p.ipVersion;
    flow.clientIsA = clientIsA;
    flow.key = key;
    flow.lastSec = tsSeconds(ts);
    flow.chain = this.buckets.get(key) ?? null;
    this.buckets.set(key, flow);
    this.active.push(flow);
    this.stats.flowsCreated++;
    this.stats.flowsActive++;
    return flow;
  }

  private evictOne(ts: Timestamp): void {
    const c = this.closing.head;
    if (c !== null) {
      this.finalize(c, c.rstSeen ? 'rst' : 'fin', ts);
      return;
    }
    const f = this.active.head;
    if (f === null) return;
    this.stats.flowsEvicted++;
    this.anomalies.anomaly('flow_evicted');
    this.finalize(f, 'evicted', ts);
  }

  private startClosing(f: Flow, sec: number): void {
    this.active.remove(f);
    f.closingSince = sec;
    this.closing.push(f);
  }

  /**
   * A closing flow whose directions have both ended (every byte up to the FIN delivered, or RST)
   * and whose handler has nothing left to wait for (no records held for late keys) is reported
   * now rather than after `closedTimeoutSec`: its events leave at the end of the connection,
   * also in a live stream where capture time stops with the last packet. The entry stays in
   * the closing list until the timeout so that the last ACK and retransmissions are absorbed
   * (counted on the flow, delivered nowhere) instead of starting a new flow.
   */
  private reportIfSettled(f: Flow, ts: Timestamp): void {
    const h = f.handler;
    if (h === null || f.failed || h.settled === undefined) return;
    try {
      if (!h.settled()) return;
    } catch (e) {
      f.fail(e);
      return;
    }
    f.reported = true;
    f.handler = null;
    this.stats.flowsClosed++;
    try {
      h.onClose(f.rstSeen ? 'rst' : 'fin', f.counters, ts);
    } catch (e) {
      this.handlerError(e);
    }
  }

  /** Finish both directions, call onClose once (unless already reported), and forget the flow. */
  private finalize(f: Flow, reason: EndReason, ts: Timestamp): void {
    if (f.closed) return;
    f.closed = true;
    // Forget the flow first, so that nothing below can leave it in the table.
    if (f.list === ListId.Active) this.active.remove(f);
    else if (f.list === ListId.Closing) this.closing.remove(f);
    this.unlink(f);
    this.stats.flowsActive--;
    if (f.reported) return;
    this.stats.flowsClosed++;
    f.half[0].finish(reason, ts);
    f.half[1].finish(reason, ts);
    f.releaseAll();
    if (f.handler !== null) {
      try {
        f.handler.onClose(reason, f.counters, ts);
      } catch (e) {
        this.handlerError(e);
      }
    }
  }

  private unlink(f: Flow): void {
    let cur = this.buckets.get(f.key) ?? null;
    if (cur === f) {
      if (f.chain === null) this.buckets.delete(f.key);
      else this.buckets.set(f.key, f.chain);
    } else {
      while (cur !== null && cur.chain !== f) cur = cur.chain;
      if (cur !== null) cur.chain = f.chain;
    }
    f.chain = null;
  }

  /** Over the total buffer budget: flush the largest direction buffers as gaps until under. */
  private enforceTotal(ts: Timestamp): void {
    this.stats.totalBufferLimitHits++;
    this.anomalies.anomaly('tcp_total_buffer_limit');
    const limit = this.opts.maxBufferedTotal;
    while (this.stats.bufferedBytes > limit) {
      let best: HalfStream | null = null;
      let bestHeld: Flow | null = null;
      for (const list of [this.active, this.closing]) {
        for (let f = list.head; f !== null; f = f.next) {
          for (const h of f.half) if (h.bufferedBytes > 0 && (best === null || h.bufferedBytes > best.bufferedBytes)) best = h;
          if (f.heldBytes > 0 && (bestHeld === null || f.heldBytes > bestHeld.heldBytes)) bestHeld = f;
        }
      }
      if (bestHeld !== null && (best === null || bestHeld.heldBytes >= best.bufferedBytes)) bestHeld.releaseAll();
      else if (best !== null) best.flushBuffered(ts);
      else break;
    }
  }
}
