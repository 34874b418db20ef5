/**
 * Resource governor: keeps the engine inside a CPU and memory budget by pausing decryption.
 *
 *   --max-cpu PERCENT      percent of ONE core, measured as process.cpuUsage()
 *                          (user+system, all threads of the process: worker threads included)
 *                          deltas over a sliding window (default 30 s);
 *   --max-memory MB        resident set size (process.memoryUsage.rss());
 *   --profile              where `run` takes the two budgets from (src/ops/options.ts): 'dedicated'
 *                          (default: no CPU budget, memory 80% of what the process may use) or
 *                          'agent' (60% of one core, 500 MB: the endpoint agent's budget; the
 *                          defaults of this class when constructed without options);
 *   --resume-interval SEC  (default 600) how long a pause lasts before a resume attempt.
 *
 * States and hysteresis:
 *   running --(window average CPU > budget, or RSS > budget)--> paused (reason, figures)
 *   paused  --(resume interval elapsed, RSS < resumeMemoryRatio x budget)--> running ("probation")
 *   paused  --(resume interval elapsed, RSS still over)--> paused again for another interval
 *   probation: the CPU window restarts at the resume, so the pause period (low CPU because nothing
 *   was decrypted) does not hide the cost of decrypting; if the first full window after the resume
 *   is over budget, decryption pauses again for another resume interval.
 * CPU is only judged on a full window, so a short burst (e.g. a GC, a large batch) never pauses.
 *
 * While paused, packets are still consumed, TCP/TLS clear-text metadata still parsed and events
 * still emitted; only record decryption (and the analyzers behind it) is skipped. The gate is read
 * by the engine through `DecryptionGate` (in worker threads through `SharedDecryptionGate`).
 *
 * Everything time- or OS-dependent is injected (clock, CPU and RSS readings) for tests.
 */
import { opsLog, type Logger } from './log.js';
import { ECS_VERSION } from '../events/builder.js';

/** What the engine consults before decrypting (TLS handlers: once per session, at key derivation). */
export interface DecryptionGate {
  readonly paused: boolean;
  readonly reason?: string;
}

/** A gate that never pauses (replay, tests). */
export const OPEN_GATE: DecryptionGate = Object.freeze({ paused: false });

/**
 * The gate across threads: one Int32 in a SharedArrayBuffer (0 running, 1 paused). The main
 * thread owns it (`set`); pass `gate.buffer` in the worker's workerData and wrap it there with
 * `new SharedDecryptionGate(buffer)`. Reads are one Atomics.load: cheap enough per session.
 * The reason text stays in the main thread (events and status page).
 */
export class SharedDecryptionGate implements DecryptionGate {
  readonly buffer: SharedArrayBuffer;
  private readonly cell: Int32Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(4);
    this.cell = new Int32Array(this.buffer, 0, 1);
  }

  get paused(): boolean {
    return Atomics.load(this.cell, 0) === 1;
  }

  set(paused: boolean): void {
    Atomics.store(this.cell, 0, paused ? 1 : 0);
  }
}

export interface ResourceReadings {
  /** Cumulative CPU time of the whole process (all threads), microseconds. */
  cpuMicros(): number;
  /** Resident set size, bytes. */
  rssBytes(): number;
}

export const processReadings: ResourceReadings = {
  cpuMicros() {
    const u = process.cpuUsage();
    return u.user + u.system;
  },
  rssBytes() {
    return process.memoryUsage.rss();
  },
};

export interface GovernorOptions {
  /** Percent of one core (default 60). 0 or Infinity = no CPU budget. */
  maxCpuPercent?: number;
  /** RSS budget in MB (default 500). 0 or Infinity = no memory budget. */
  maxMemoryMb?: number;
  /** Pause length before a resume attempt, ms (default 10 min). */
  resumeIntervalMs?: number;
  /** CPU averaging window, ms (default 30 s). */
  windowMs?: number;
  /** A resume needs RSS below this fraction of the budget (default 0.9). */
  resumeMemoryRatio?: number;
  /** How often start() samples, ms (default 1 s). */
  sampleIntervalMs?: number;
  now?: () => number;
  readings?: ResourceReadings;
  log?: Logger;
}

export type GovernorAction = 'paused' | 'resumed' | 'resume_deferred';

export interface GovernorFigures {
  cpuPercent?: number;
  rssMb: number;
  maxCpuPercent: number;
  maxMemoryMb: number;
  windowSec: number;
}

export interface GovernorChange {
  action: GovernorAction;
  /** Human-readable reason, e.g. "CPU 85.2% of one core over 30 s exceeds the 60% budget". */
  reason: string;
  /** Which budget: 'cpu' | 'memory' (for resume: the one that caused the pause). */
  resource?: 'cpu' | 'memory';
  at: number;
  figures: GovernorFigures;
  /** When the next resume attempt is due (paused / resume_deferred). */
  nextResumeAt?: number;
}

export interface GovernorState {
  paused: boolean;
  reason?: string;
  resource?: 'cpu' | 'memory';
  pausedSince?: number;
  nextResumeAt?: number;
  pauses: number;
  cpuPercent?: number;
  rssMb: number;
  maxCpuPercent: number;
  maxMemoryMb: number;
  /** Seconds of capture not decrypted: sessions/bytes skipped are counted by the engine (metrics). */
  pausedMsTotal: number;
}

const MB = 1024 * 1024;
const round1 = (x: number): number => Math.round(x * 10) / 10;

export class ResourceGovernor implements DecryptionGate {
  readonly maxCpuPercent: number;
  readonly maxMemoryMb: number;
  readonly resumeIntervalMs: number;
  readonly windowMs: number;
  private readonly resumeMemoryRatio: number;
  private readonly now: () => number;
  private readonly readings: ResourceReadings;
  private readonly log: Logger;
  private readonly sampleIntervalMs: number;
  private samples: { t: number; cpu: number }[] = [];
  private _paused = false;
  private _reason: string | undefined;
  private resource: 'cpu' | 'memory' | undefined;
  private pausedSince: number | undefined;
  private nextResumeAt: number | undefined;
  private pausedMsTotal = 0;
  private pauses = 0;
  private lastCpu: number | undefined;
  private lastRss = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: ((c: GovernorChange) => void)[] = [];

  constructor(o: GovernorOptions = {}) {
    this.maxCpuPercent = o.maxCpuPercent ?? 60;
    this.maxMemoryMb = o.maxMemoryMb ?? 500;
    this.resumeIntervalMs = o.resumeIntervalMs ?? 600_000;
    this.windowMs = o.windowMs ?? 30_000;
    this.resumeMemoryRatio = o.resumeMemoryRatio ?? 0.9;
    this.sampleIntervalMs = o.sampleIntervalMs ?? 1000;
    this.now = o.now ?? Date.now;
    this.readings = o.readings ?? processReadings;
    this.log = o.log ?? opsLog.child('tlsdecrypt.governor');
    for (const [n, v] of [['maxCpuPercent', this.maxCpuPercent], ['maxMemoryMb', this.maxMemoryMb], ['resumeIntervalMs', this.resumeIntervalMs], ['windowMs', this.windowMs]] as const) {
      if (!(v >= 0)) throw new RangeError(`governor: ${n} must be >= 0, got ${v}`);
    }
  }

  get paused(): boolean {
    return this._paused;
  }

  get reason(): string | undefined {
    return this._reason;
  }

  /** Subscribes to pause/resume decisions (events topic, logs, the shared gate, metrics). */
  onChange(f: (c: GovernorChange) => void): void {
    this.listeners.push(f);
  }

  state(): GovernorState {
    const now = this.now();
    return {
      paused: this._paused,
      reason: this._reason,
      resource: this.resource,
      pausedSince: this.pausedSince,
      nextResumeAt: this.nextResumeAt,
      pauses: this.pauses,
      cpuPercent: this.lastCpu === undefined ? undefined : round1(this.lastCpu),
      rssMb: round1(this.lastRss / MB),
      maxCpuPercent: this.maxCpuPercent,
      maxMemoryMb: this.maxMemoryMb,
      pausedMsTotal: this.pausedMsTotal + (this._paused && this.pausedSince !== undefined ? now - this.pausedSince : 0),
    };
  }

  private cpuBudget(): boolean {
    return this.maxCpuPercent > 0 && Number.isFinite(this.maxCpuPercent);
  }
  private memBudget(): boolean {
    return this.maxMemoryMb > 0 && Number.isFinite(this.maxMemoryMb);
  }

  /** CPU percent of one core over the last full window, or undefined while the window is not full. */
  private windowCpu(now: number): number | undefined {
    if (this.samples.length < 2) return undefined;
    const last = this.samples[this.samples.length - 1];
    // The oldest sample at least windowMs before the newest one.
    let base: { t: number; cpu: number } | undefined;
    for (const s of this.samples) {
      if (last.t - s.t >= this.windowMs) base = s;
      else break;
    }
    if (!base || last.t <= base.t) return undefined;
    void now;
    return ((last.cpu - base.cpu) / 1000 / (last.t - base.t)) * 100;
  }

  private figures(): GovernorFigures {
    return {
      cpuPercent: this.lastCpu === undefined ? undefined : round1(this.lastCpu),
      rssMb: round1(this.lastRss / MB),
      maxCpuPercent: this.maxCpuPercent,
      maxMemoryMb: this.maxMemoryMb,
      windowSec: this.windowMs / 1000,
    };
  }

  private emit(c: GovernorChange): void {
    const level = c.action === 'resumed' ? 'info' : 'warn';
    this.log.log(level, `decryption ${c.action === 'resume_deferred' ? 'stays paused' : c.action}: ${c.reason}`, { governor: { action: c.action, resource: c.resource, ...c.figures } });
    for (const f of this.listeners) {
      try {
        f(c);
      } catch (e) {
        this.log.error('governor listener failed', { error: e as Error });
      }
    }
  }

  private overBudget(): { resource: 'cpu' | 'memory'; reason: string } | undefined {
    const rssMb = this.lastRss / MB;
    if (this.memBudget() && rssMb > this.maxMemoryMb) {
      return { resource: 'memory', reason: `memory ${round1(rssMb)} MB RSS exceeds the ${this.maxMemoryMb} MB budget` };
    }
    if (this.cpuBudget() && this.lastCpu !== undefined && this.lastCpu > this.maxCpuPercent) {
      return { resource: 'cpu', reason: `CPU ${round1(this.lastCpu)}% of one core over ${this.windowMs / 1000} s exceeds the ${this.maxCpuPercent}% budget` };
    }
    return undefined;
  }

  /**
   * Takes one reading and decides. Call regularly (start() does, every sampleIntervalMs);
   * tests call it directly with an injected clock and readings.
   */
  sample(): GovernorState {
    const now = this.now();
    const cpu = this.readings.cpuMicros();
    this.lastRss = this.readings.rssBytes();
    this.samples.push({ t: now, cpu });
    // Keep one sample older than the window (the base) plus the window.
    while (this.samples.length > 2 && now - this.samples[1].t >= this.windowMs) this.samples.shift();
    const w = this.windowCpu(now);
    if (w !== undefined) this.lastCpu = w;

    if (!this._paused) {
      const over = this.overBudget();
      if (over) this.pause(now, over.resource, over.reason);
    } else if (this.nextResumeAt !== undefined && now >= this.nextResumeAt) {
      const rssMb = this.lastRss / MB;
      if (this.memBudget() && rssMb >= this.maxMemoryMb * this.resumeMemoryRatio) {
        this.nextResumeAt = now + this.resumeIntervalMs;
        const reason = `memory ${round1(rssMb)} MB RSS still above ${round1(this.maxMemoryMb * this.resumeMemoryRatio)} MB (${Math.round(this.resumeMemoryRatio * 100)}% of the ${this.maxMemoryMb} MB budget)`;
        this._reason = reason;
        this.resource = 'memory';
        this.emit({ action: 'resume_deferred', reason, resource: 'memory', at: now, figures: this.figures(), nextResumeAt: this.nextResumeAt });
      } else {
        this.resume(now);
      }
    }
    return this.state();
  }

  private pause(now: number, resource: 'cpu' | 'memory', reason: string): void {
    this._paused = true;
    this._reason = reason;
    this.resource = resource;
    this.pausedSince = now;
    this.nextResumeAt = now + this.resumeIntervalMs;
    this.pauses++;
    this.emit({ action: 'paused', reason, resource, at: now, figures: this.figures(), nextResumeAt: this.nextResumeAt });
  }

  private resume(now: number): void {
    const was = this.resource;
    if (this.pausedSince !== undefined) this.pausedMsTotal += now - this.pausedSince;
    this._paused = false;
    this._reason = undefined;
    this.resource = undefined;
    this.pausedSince = undefined;
    this.nextResumeAt = undefined;
    // Probation: judge CPU on a fresh window that only covers decrypting time.
    this.samples = [{ t: now, cpu: this.readings.cpuMicros() }];
    this.lastCpu = undefined;
    this.emit({ action: 'resumed', reason: `resume attempt after ${this.resumeIntervalMs / 1000} s; usage is judged again over the next ${this.windowMs / 1000} s`, resource: was, at: now, figures: this.figures() });
  }

  /** Samples every sampleIntervalMs with a real (unref'd) timer. */
  start(): void {
    if (this.timer) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * The governor decision as an ECS event for the events topic / SIEM (dataset
 * `tlsdecrypt.governor`, event.kind `event`). No flow fields; `host`-level operational event.
 */
export function governorEvent(c: GovernorChange, extra: { sensor?: string; engine?: string } = {}): Record<string, unknown> {
  const action = c.action === 'paused' ? 'decryption-paused' : c.action === 'resumed' ? 'decryption-resumed' : 'decryption-resume-deferred';
  const ev: Record<string, unknown> = {
    '@timestamp': new Date(c.at).toISOString(),
    ecs: { version: ECS_VERSION },
    event: {
      kind: 'event',
      category: ['process'],
      type: ['change'],
      dataset: 'tlsdecrypt.governor',
      action,
      reason: c.reason,
      id: `governor-${c.action}-${c.at}`,
    },
    message: `TLS decryption ${c.action === 'paused' ? 'paused' : c.action === 'resumed' ? 'resumed' : 'stays paused'}: ${c.reason}`,
    tlsdecrypt: {
      governor: {
        paused: c.action !== 'resumed',
        resource: c.resource,
        cpu_percent: c.figures.cpuPercent,
        rss_mb: c.figures.rssMb,
        max_cpu_percent: c.figures.maxCpuPercent,
        max_memory_mb: c.figures.maxMemoryMb,
        window_sec: c.figures.windowSec,
        ...(c.nextResumeAt !== undefined ? { next_resume: new Date(c.nextResumeAt).toISOString() } : {}),
      },
    },
  };
  if (extra.sensor) ev.observer = { name: extra.sensor };
  if (extra.engine) ev.service = { name: 'tlsdecrypt', node: { name: extra.engine } };
  return ev;
}
