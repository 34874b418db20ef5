/**
 * In-memory trend of the decrypted volume for the status page: two rings of samples of the
 * cumulative decrypted-bytes counter,
 *   - fine:   one point per `fineIntervalMs` (default 10 s), kept for `fineSpanMs` (default 1 h);
 *   - coarse: one point per `coarseIntervalMs` (default 1 h), kept for `coarseSpanMs` (default 7 d).
 * Each point is { t: end of the interval (ms since the epoch), bytes: increase during it }.
 * Fixed memory (360 + 168 points), fed with `record(nowMs, cumulativeBytes)` as often as you like.
 */

export interface TrendPoint {
  /** End of the interval, ms since the epoch. */
  t: number;
  /** Decrypted bytes during the interval. */
  bytes: number;
}

export interface TrendSeries {
  intervalSec: number;
  points: TrendPoint[];
}

class Ring {
  private readonly buf: TrendPoint[] = [];
  private start = 0;
  constructor(readonly capacity: number) {}
  push(p: TrendPoint): void {
    if (this.buf.length < this.capacity) this.buf.push(p);
    else {
      this.buf[this.start] = p;
      this.start = (this.start + 1) % this.capacity;
    }
  }
  toArray(): TrendPoint[] {
    return [...this.buf.slice(this.start), ...this.buf.slice(0, this.start)];
  }
}

class Bucketed {
  private readonly ring: Ring;
  /** Start of the interval being filled (aligned to the interval). */
  private curStart: number | undefined;
  private curBytes = 0;

  constructor(
    readonly intervalMs: number,
    spanMs: number,
  ) {
    this.ring = new Ring(Math.max(1, Math.round(spanMs / intervalMs)));
  }

  add(now: number, bytes: number): void {
    const start = Math.floor(now / this.intervalMs) * this.intervalMs;
    if (this.curStart === undefined) this.curStart = start;
    if (start > this.curStart) {
      this.ring.push({ t: this.curStart + this.intervalMs, bytes: this.curBytes });
      // Idle intervals in between (the process was busy or asleep): zero points, at most one ring's worth.
      const missing = Math.min(this.ring.capacity, Math.round((start - this.curStart) / this.intervalMs) - 1);
      for (let i = missing; i >= 1; i--) this.ring.push({ t: start - (i - 1) * this.intervalMs, bytes: 0 });
      this.curStart = start;
      this.curBytes = 0;
    }
    this.curBytes += bytes;
  }

  series(now: number, includeCurrent: boolean): TrendSeries {
    const points = this.ring.toArray();
    if (includeCurrent && this.curStart !== undefined) points.push({ t: Math.max(now, this.curStart), bytes: this.curBytes });
    return { intervalSec: this.intervalMs / 1000, points };
  }
}

export interface VolumeHistoryOptions {
  fineIntervalMs?: number;
  fineSpanMs?: number;
  coarseIntervalMs?: number;
  coarseSpanMs?: number;
}

export class VolumeHistory {
  private readonly fine: Bucketed;
  private readonly coarse: Bucketed;
  private last: number | undefined;
  private lastNow = 0;

  constructor(o: VolumeHistoryOptions = {}) {
    this.fine = new Bucketed(o.fineIntervalMs ?? 10_000, o.fineSpanMs ?? 3_600_000);
    this.coarse = new Bucketed(o.coarseIntervalMs ?? 3_600_000, o.coarseSpanMs ?? 7 * 86_400_000);
  }

  /** Records the cumulative decrypted bytes at wall time `now` (ms). */
  record(now: number, cumulativeBytes: number): void {
    const d = this.last === undefined ? 0 : cumulativeBytes >= this.last ? cumulativeBytes - this.last : cumulativeBytes;
    this.last = cumulativeBytes;
    this.lastNow = Math.max(this.lastNow, now);
    this.fine.add(now, d);
    this.coarse.add(now, d);
  }

  /** Both series; the interval in progress is included as the last point (partial). */
  snapshot(now: number = this.lastNow): { fine: TrendSeries; coarse: TrendSeries } {
    return { fine: this.fine.series(now, true), coarse: this.coarse.series(now, true) };
  }
}
