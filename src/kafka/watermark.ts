/**
 * The replay low watermark of `run` (issue 12): which packets-topic offset each partition may be
 * committed to without losing a connection.
 *
 * An engine shard tells the watermark which record it is reading (`at`: partition, offset, and the
 * bytes of that partition read before it); every flow the engine creates is stamped with that record
 * (`open`, through the Engine's `flows` hook) and unstamped when the flow closes. `low()` gives, per
 * partition, the offset of the first record still needed by a flow open on it: `run` never commits a
 * partition past it, so a new owner (or this instance after a crash) re-reads from there and rebuilds
 * each open connection from its first packet, handshake included.
 *
 * The re-read is bounded: a flow whose first packet is more than `windowSec` seconds of capture time
 * older than the partition's newest packet, or whose first record lies more than `maxBytes` bytes of
 * that partition back, is released: the commit may pass it (counted as `flow_replay_released` on
 * this instance; if the partition moves, its new owner sees the rest of it as a mid-connection flow
 * and reports it as `missing_handshake`). `windowSec` 0 turns the watermark off (commits follow the
 * records read, open flows are not protected: the behaviour before issue 12).
 *
 * Flows are stamped in record order per partition, so each partition keeps a FIFO of its flows in
 * first-offset order; closed flows are dropped from the front lazily, and the front is the minimum:
 * `low()` is amortised O(1) per flow, whatever the number of open flows.
 *
 * QUIC paths (UDP flows that carry QUIC, `openUdp`) are stamped the same way: a path whose first
 * datagram has a long header (a client's Initial) is a connection's start, any other is a
 * mid-connection path (it holds its commit back as such a TCP flow does). A QUIC connection's
 * events are muted through the path it started on (Engine.quicEvent); one that migrates to a path
 * on another partition is, like an FTP data channel, rebuilt only from its own partition's records.
 *
 * `revoke(partitions)`: the partitions moved to another member. Their open flows are muted: they
 * emit nothing more (no truncated sessions that would conflict with the new owner's complete ones)
 * and their handlers get nothing more; they leave the flow table at its idle timeout as usual.
 */
import type { Dir, EndReason, FlowCounters, FlowHandler, FlowInfo, Timestamp } from '../types.js';
import type { UdpFlowHandler } from '../udp/index.js';

export interface WatermarkOptions {
  /** Capture-time seconds a flow may hold its partition's commit back; 0 = no watermark. */
  windowSec: number;
  /** Bytes of a partition's records a flow may hold its commit back. */
  maxBytes: number;
}

/** What the Engine's `flows` hook needs (EngineOptions.flows). */
export interface FlowWatch {
  open(flow: FlowInfo, handler: FlowHandler): FlowHandler;
  openUdp(flow: FlowInfo, handler: UdpFlowHandler, fromStart: boolean): UdpFlowHandler;
  muted(flow: FlowInfo): boolean;
}

/** Per partition: the offset of the first record still needed by an open flow. */
export type LowWatermarks = Record<number, number>;

interface Entry {
  offset: number;
  pos: number;
  sec: number;
  open: boolean;
  muted: boolean;
  /** A tail (see FlowWatermark.at): muted until its partition's records reach this offset. */
  until: number;
  part: Part;
  /** A flow without its handshake (started before the capture, or after a loss): its key (midKey). */
  mid: string | undefined;
}

/** Per partition: `offset/hash` of each open flow without a handshake (see FlowWatermark.at). */
export type OpenMids = Record<number, string[]>;

/** A short key of a flow first seen without its handshake at `offset` (FNV-1a of its Community ID). */
export function midKey(offset: number, communityId: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < communityId.length; i++) h = Math.imul(h ^ communityId.charCodeAt(i), 0x01000193);
  return `${offset}/${(h >>> 0).toString(36)}`;
}

interface Part {
  /** Flows in first-offset order; `head` is the first not yet dropped. */
  q: Entry[];
  head: number;
  /** Newest capture second seen on this partition. */
  clock: number;
  /** Bytes of this partition's records read before the current one. */
  pos: number;
  /** Offset of this partition's latest record. */
  offset: number;
  /** Entries without a handshake in `q` (skip mids() when 0). */
  midCount: number;
}

/** False while muted; a tail is unmuted once its partition's records pass the re-read region. */
function live(e: Entry): boolean {
  if (!e.muted) return true;
  if (e.until > 0 && e.part.offset >= e.until) {
    e.muted = false;
    e.until = 0;
    return true;
  }
  return false;
}

/** Forwards everything to the engine's handler until the flow is muted; unstamps it at close. */
class WatchedFlow implements FlowHandler {
  constructor(
    private readonly inner: FlowHandler,
    readonly entry: Entry,
  ) {}
  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (live(this.entry)) this.inner.onData(dir, data, ts);
  }
  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (live(this.entry)) this.inner.onGap(dir, length, ts);
  }
  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (live(this.entry)) this.inner.onEnd(dir, reason, ts);
  }
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.entry.open = false;
    // Always: the handler releases what it holds; a muted flow's events are muted in the Engine.
    this.inner.onClose(reason, counters, ts);
  }
  settled(): boolean {
    return this.entry.muted || (this.inner.settled?.() ?? false);
  }
}

/** The same for a QUIC path (UDP flow). */
class WatchedPath implements UdpFlowHandler {
  constructor(
    private readonly inner: UdpFlowHandler,
    readonly entry: Entry,
  ) {}
  onDatagram(dir: Dir, payload: Buffer, ts: Timestamp, wireLen: number): void {
    if (live(this.entry)) this.inner.onDatagram(dir, payload, ts, wireLen);
  }
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.entry.open = false;
    this.inner.onClose(reason, counters, ts);
  }
  setCloser(close: (sec: number) => void): void {
    this.inner.setCloser?.(close);
  }
  canClose(): boolean {
    return this.inner.canClose?.() ?? true;
  }
}

export class FlowWatermark implements FlowWatch {
  private readonly parts = new Map<number, Part>();
  private cur: Part | undefined;
  private curOffset = 0;
  private curUntil = 0;
  private curMids: Set<string> | undefined;
  private readonly entries = new WeakMap<FlowInfo, Entry>();
  private mutedFlows = 0;
  /** Flows released from the watermark (older than the window or the byte bound while open). */
  released = 0;
  /** Re-read tails of flows a previous owner had (see `at`). */
  tails = 0;

  constructor(private readonly o: WatermarkOptions) {}

  get enabled(): boolean {
    return this.o.windowSec > 0;
  }

  /**
   * The packets that follow come from this record (`pos`: bytes of the partition read before it).
   * `until` > offset: the record is re-read — a previous owner read the partition up to `until`
   * (exclusive) and committed below it. A flow first seen there without its handshake is the tail of
   * a flow that started before the commit: that owner already reported it (or released it from the
   * window), so it is muted here until `until` (from there on it is a mid-connection flow, as a
   * released flow must be) and it never holds the commit back. Except the flows in `mids`: the
   * previous owner had them open without a handshake from this very record (OpenMids, committed with
   * the offset): those are processed as usual.
   */
  at(partition: number, offset: number, pos: number, until = 0, mids?: Set<string>): void {
    this.curMids = mids;
    let p = this.parts.get(partition);
    if (!p) this.parts.set(partition, (p = { q: [], head: 0, clock: 0, pos, offset, midCount: 0 }));
    p.pos = pos;
    p.offset = offset;
    this.cur = p;
    this.curOffset = offset;
    this.curUntil = until;
  }



  /** The packets that follow come from no record (secrets, or input outside Kafka). */
  none(): void {
    this.cur = undefined;
  }

  /** A packet's capture time (advances its partition's clock). */
  seen(sec: number): void {
    const p = this.cur;
    if (p !== undefined && sec > p.clock) p.clock = sec;
  }

  open(flow: FlowInfo, handler: FlowHandler): FlowHandler {
    const e = this.stamp(flow, flow.rolesFromHandshake);
    return e === undefined ? handler : new WatchedFlow(handler, e);
  }

  openUdp(flow: FlowInfo, handler: UdpFlowHandler, fromStart: boolean): UdpFlowHandler {
    const e = this.stamp(flow, fromStart);
    return e === undefined ? handler : new WatchedPath(handler, e);
  }

  private stamp(flow: FlowInfo, fromStart: boolean): Entry | undefined {
    const p = this.cur;
    if (p === undefined || !this.enabled) return undefined;
    const e: Entry = { offset: this.curOffset, pos: p.pos, sec: flow.start.sec, open: true, muted: false, until: 0, part: p, mid: fromStart ? undefined : midKey(this.curOffset, flow.communityId) };
    if (this.curOffset < this.curUntil && e.mid !== undefined && !this.curMids?.has(e.mid)) {
      e.muted = true;
      e.until = this.curUntil;
      this.mutedFlows++;
      this.tails++;
    } else {
      p.q.push(e);
      if (e.mid !== undefined) p.midCount++;
    }
    this.entries.set(flow, e);
    return e;
  }

  muted(flow: FlowInfo): boolean {
    return this.mutedFlows > 0 && this.entries.get(flow)?.muted === true;
  }

  /** A flow of a partition given away (revoke): Engine.dropFlows takes it out of the flow table. */
  revoked(h: FlowHandler): boolean {
    return h instanceof WatchedFlow && h.entry.muted && h.entry.until === 0;
  }

  /** The partitions went to another member: their open flows emit nothing more (drop them: ShardCore.revoke). */
  revoke(partitions: number[]): void {
    for (const n of partitions) {
      const p = this.parts.get(n);
      if (!p) continue;
      for (let i = p.head; i < p.q.length; i++) {
        const e = p.q[i];
        if (e.open && !e.muted) {
          e.muted = true;
          e.until = 0;
          this.mutedFlows++;
        }
      }
      this.parts.delete(n);
      if (this.cur === p) this.cur = undefined;
    }
  }

  /** Per partition: the open flows without a handshake that hold the commit back (midKey each). */
  mids(): OpenMids {
    const out: OpenMids = {};
    for (const [n, p] of this.parts) {
      if (p.midCount === 0) continue;
      for (let i = p.head; i < p.q.length; i++) {
        const e = p.q[i];
        if (e.open && e.mid !== undefined) (out[n] ??= []).push(e.mid);
      }
    }
    return out;
  }

  /** Per partition read so far: the first offset still needed (partitions without open flows are absent). */
  low(): LowWatermarks {
    const out: LowWatermarks = {};
    if (!this.enabled) return out;
    for (const [n, p] of this.parts) {
      const q = p.q;
      let h = p.head;
      while (h < q.length) {
        const e = q[h];
        if (e.open && p.clock - e.sec <= this.o.windowSec && p.pos - e.pos <= this.o.maxBytes) break;
        if (e.open) this.released++;
        if (e.mid !== undefined) p.midCount--;
        h++;
      }
      if (h === q.length) {
        p.q = [];
        p.head = 0;
      } else {
        // compact now and then, so the array does not keep every dropped entry
        if (h > 1024 && h * 2 > q.length) {
          p.q = q.slice(h);
          h = 0;
        }
        p.head = h;
        out[n] = p.q[h].offset;
      }
    }
    return out;
  }
}

/** Per partition, the lower of two watermark sets (a partition absent from both stays absent). */
export function minLow(a: LowWatermarks | undefined, b: LowWatermarks | undefined): LowWatermarks {
  const out: LowWatermarks = { ...(a ?? {}) };
  for (const [k, v] of Object.entries(b ?? {})) {
    const n = Number(k);
    if (out[n] === undefined || v < out[n]) out[n] = v;
  }
  return out;
}
