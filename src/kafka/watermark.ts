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
 * `revoke(partitions)`: the partitions moved to another member. Their open flows are muted: they
 * emit nothing more (no truncated sessions that would conflict with the new owner's complete ones)
 * and their handlers get nothing more; they leave the flow table at its idle timeout as usual.
 */
import type { Dir, EndReason, FlowCounters, FlowHandler, FlowInfo, Timestamp } from '../types.js';

export interface WatermarkOptions {
  /** Capture-time seconds a flow may hold its partition's commit back; 0 = no watermark. */
  windowSec: number;
  /** Bytes of a partition's records a flow may hold its commit back. */
  maxBytes: number;
}

/** What the Engine's `flows` hook needs (EngineOptions.flows). */
export interface FlowWatch {
  open(flow: FlowInfo, handler: FlowHandler): FlowHandler;
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
}

interface Part {
  /** Flows in first-offset order; `head` is the first not yet dropped. */
  q: Entry[];
  head: number;
  /** Newest capture second seen on this partition. */
  clock: number;
  /** Bytes of this partition's records read before the current one. */
  pos: number;
}

/** Forwards everything to the engine's handler until the flow is muted; unstamps it at close. */
class WatchedFlow implements FlowHandler {
  constructor(
    private readonly inner: FlowHandler,
    readonly entry: Entry,
  ) {}
  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (!this.entry.muted) this.inner.onData(dir, data, ts);
  }
  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (!this.entry.muted) this.inner.onGap(dir, length, ts);
  }
  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (!this.entry.muted) this.inner.onEnd(dir, reason, ts);
  }
  onClose(reason: EndReason, counters: FlowCounters, ts: Timestamp): void {
    this.entry.open = false;
    if (!this.entry.muted) this.inner.onClose(reason, counters, ts);
  }
  settled(): boolean {
    return this.entry.muted || (this.inner.settled?.() ?? false);
  }
}

export class FlowWatermark implements FlowWatch {
  private readonly parts = new Map<number, Part>();
  private cur: Part | undefined;
  private curOffset = 0;
  private readonly entries = new WeakMap<FlowInfo, Entry>();
  private mutedFlows = 0;
  /** Flows released from the watermark (older than the window or the byte bound while open). */
  released = 0;

  constructor(private readonly o: WatermarkOptions) {}

  get enabled(): boolean {
    return this.o.windowSec > 0;
  }

  /** The packets that follow come from this record (`pos`: bytes of the partition read before it). */
  at(partition: number, offset: number, pos: number): void {
    let p = this.parts.get(partition);
    if (!p) this.parts.set(partition, (p = { q: [], head: 0, clock: 0, pos }));
    p.pos = pos;
    this.cur = p;
    this.curOffset = offset;
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
    const p = this.cur;
    if (p === undefined || !this.enabled) return handler;
    const e: Entry = { offset: this.curOffset, pos: p.pos, sec: flow.start.sec, open: true, muted: false };
    p.q.push(e);
    this.entries.set(flow, e);
    return new WatchedFlow(handler, e);
  }

  muted(flow: FlowInfo): boolean {
    return this.mutedFlows > 0 && this.entries.get(flow)?.muted === true;
  }

  /** The partitions went to another member: their open flows emit nothing more. */
  revoke(partitions: number[]): void {
    for (const n of partitions) {
      const p = this.parts.get(n);
      if (!p) continue;
      for (let i = p.head; i < p.q.length; i++) {
        const e = p.q[i];
        if (e.open && !e.muted) {
          e.muted = true;
          this.mutedFlows++;
        }
      }
      this.parts.delete(n);
      if (this.cur === p) this.cur = undefined;
    }
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
