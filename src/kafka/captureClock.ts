/**
 * The capture time `run` runs the engine's timeouts on (shards.flush(tick)) when one engine reads
 * several packets-topic partitions.
 *
 * Each partition is in capture-time order, but partitions are fetched side by side, not merged in
 * time order: one fetch answer can hold partition 0 read up to 12:00 and partition 3 only up to
 * 11:50 (a new owner re-reading it from the replay watermark, a backlog, or simply records that
 * arrived in the same fetch and are handed over partition after partition). Ticking the engine to
 * the newest capture time seen anywhere (12:00) would time out the open connections of partition 3
 * whose next packets are in records not fed yet: the first half of such a connection is reported
 * cut off, the rest as a new connection without its handshake (`missing_handshake`) — what the
 * rebalance test saw now and then.
 *
 * So the tick is the newest capture time every partition has reached, per partition:
 *  - behind: records of it were accepted but are not fed yet, or its last batch showed records
 *    beyond it (high watermark) and it delivered within `holdMs`: its own newest capture time;
 *  - caught up as far as is known: its own newest capture time, or the newest capture time seen
 *    anywhere at least `holdMs` ago, whichever is later. A partition without traffic thus holds the
 *    clock back by at most `holdMs` of wall time; its records that were already on the broker arrive
 *    within that time (they came in the same fetch answer, or in the next one).
 * The tick never goes back. `holding` says whether it is below the newest capture time seen (the
 * caller looks again after `holdMs`, so that idle timeouts still fire when no batch comes).
 *
 * `run --workers N`: each worker's engine holds only the flows of its own partitions, so it is
 * ticked with the minimum over ITS partitions (`tick(partitions, worker)`; the newest time seen, and
 * so the hold rule's release, stay instance-wide). A worker's partitions far behind hold only that
 * worker's timeouts back; one far ahead does not time out the connections of the others. The
 * workers decode, so there the capture times come from their results (one task later than fed).
 */
import type { Timestamp } from '../types.js';

interface Part {
  /** Newest capture time fed from the partition. */
  ts: Timestamp | undefined;
  /** Offset after the last record accepted (handed over by the consumer). */
  accepted: bigint;
  /** Offset after the last record fed to the engine. */
  fed: bigint;
  /** The partition's high watermark at its last batch. */
  high: bigint;
  /** Wall time (ms) of its last batch. */
  batchAt: number;
}

const later = (a: Timestamp, b: Timestamp): boolean => a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);

export class CaptureClock {
  private readonly parts = new Map<number, Part>();
  private newest: Timestamp | undefined;
  /** Newest capture times with the wall time they were first seen (ascending in both). */
  private seen: { at: number; ts: Timestamp }[] = [];
  /** First entry of `seen` not yet dropped. */
  private head = 0;
  /** The newest capture time seen at least holdMs ago. */
  private old: Timestamp | undefined;
  /** The last tick, per engine (-1: the one engine of all partitions). */
  private readonly last = new Map<number, Timestamp>();
  /** The last tick is below the newest capture time seen. */
  holding = false;

  constructor(
    readonly holdMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  private part(n: number): Part {
    let p = this.parts.get(n);
    if (!p) this.parts.set(n, (p = { ts: undefined, accepted: -1n, fed: -1n, high: -1n, batchAt: 0 }));
    return p;
  }

  /** A batch of partition `n` (assigned to this member) was handed over: records up to `next` (exclusive); `high`: its high watermark. */
  accepted(n: number, next: bigint, high: bigint): void {
    const p = this.part(n);
    if (next > p.accepted) p.accepted = next;
    if (high > p.high) p.high = high;
    p.batchAt = this.now();
  }

  /** A packet of partition `n` was fed. */
  packet(n: number, ts: Timestamp): void {
    const p = this.parts.get(n);
    if (p && (p.ts === undefined || later(ts, p.ts))) p.ts = ts;
    if (this.newest === undefined || later(ts, this.newest)) this.newest = ts;
  }

  /** Partition `n` was fed up to `next` (exclusive). */
  fed(n: number, next: bigint): void {
    const p = this.parts.get(n);
    if (p && next > p.fed) p.fed = next;
  }

  /** Partitions assigned to this member: until their first records they hold the clock like partitions without traffic. */
  assigned(partitions: number[]): void {
    const now = this.now();
    for (const n of partitions) if (!this.parts.has(n)) this.part(n).batchAt = now;
  }

  /** The partitions moved to another member: they hold the clock back no more. */
  drop(partitions: number[]): void {
    for (const n of partitions) this.parts.delete(n);
  }

  /**
   * The capture time the engine's timeouts may run on now (undefined before the first packet): the
   * engine of all partitions, or (`partitions`) one that holds only the flows of those, `engine`
   * naming it (its ticks never go back). Partitions not assigned (dropped) are left out.
   */
  tick(partitions?: Iterable<number>, engine = -1): Timestamp | undefined {
    const newest = this.newest;
    if (newest === undefined) return undefined;
    const now = this.now();
    let s = this.seen;
    if (!s.length || later(newest, s[s.length - 1].ts)) s.push({ at: now, ts: newest });
    while (this.head < s.length && s[this.head].at <= now - this.holdMs) this.old = s[this.head++].ts;
    if (this.head > 1024 && this.head * 2 > s.length) {
      this.seen = s = s.slice(this.head);
      this.head = 0;
    }
    let t = newest;
    let unknown = false;
    for (const p of this.partsOf(partitions)) {
      const behind = p.fed < p.accepted || (p.fed < p.high && now - p.batchAt < this.holdMs);
      let c = p.ts;
      if (!behind && this.old !== undefined && (c === undefined || later(this.old, c))) c = this.old;
      if (c === undefined) unknown = true;
      else if (later(t, c)) t = c;
    }
    // A partition nothing is known of yet (assigned, not read; or behind before its first packet)
    // may still bring connections from any time: the clock stays where it is (before the first
    // tick: at 0, which times nothing out but still lets the engine flush what it batches).
    const last = this.last.get(engine);
    if (unknown) t = last ?? { sec: 0, nsec: 0 };
    else if (last !== undefined && later(last, t)) t = last;
    this.last.set(engine, t);
    this.holding = later(newest, t);
    return t;
  }

  private *partsOf(partitions: Iterable<number> | undefined): Iterable<Part> {
    if (!partitions) return yield* this.parts.values();
    for (const n of partitions) {
      const p = this.parts.get(n);
      if (p) yield p;
    }
  }
}
