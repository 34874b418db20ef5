/**
 * `replay --workers N` (N > 1): one reader, N engine threads.
 *
 * The main thread is the dispatcher and does nothing else: it reads the capture (a file or stdin,
 * the same code), frames it once (CaptureReader), gives each packet its shard by the deterministic
 * host-pair assignment (`packetRouter`, least-loaded at first sight: src/pipeline/sharded.ts), and
 * appends it to that shard's binary batch (src/pipeline/batch.ts). A full batch (1 MiB) goes to its
 * engine thread as a transferred ArrayBuffer: no structured clone, no message per packet. Engine
 * threads (workers/engine-thread.ts) answer each batch with the NDJSON of the events it produced,
 * which this thread writes out as whole lines; the answers are also the credit that bounds the
 * batches in flight per engine (back-pressure to the reader, and to stdout through the writer).
 *
 * No engine runs on the dispatcher's thread: with N engines the reader never competes with one of
 * them, and on a machine with more cores than engines the dispatcher's own speed (bench/scaling.mjs
 * `--dispatch-ceiling`) is the bound of the whole process.
 *
 * Why threads with a message port each rather than child processes or Piscina (bench/RESULTS.md,
 * round 5): a transferred batch costs no copy, where a pipe to a child costs two (write, read) and
 * a read pass per child if each reads the file; and a port delivers messages in the order they
 * were posted, which is what an engine needs, where Piscina's queue may start a one-thread pool's
 * tasks out of order (the sequence numbers of workers/stream-shard.ts).
 *
 * The output is the same for every N: each engine sees its host pairs' packets in capture order
 * (plus every pcapng secrets block), so it produces the events a single engine would for them;
 * only the interleaving of shards differs. Capture-level anomalies and malformed key-log lines
 * are counted here, once.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CaptureReader } from '../capture/index.js';
import type { CaptureSink, RawPacket } from '../types.js';
import { BatchBuilder } from './batch.js';
import type { EngineOptions, EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import { fileChunks, InputError, loadKeys, pumpCapture, type ReplayOptions, type RsaKeySpec } from './replay.js';
import { mergeStats, packetRouter } from './sharded.js';

/** A shard's batch goes to its engine once it holds this many bytes. */
export const FANOUT_BATCH_BYTES = 1 << 20;
/** Room in a batch buffer beyond FANOUT_BATCH_BYTES: the packet that fills a batch still fits. */
const BATCH_SLACK = 1 << 16;
/** Batches sent to one engine and not yet answered, before the reader waits. */
const MAX_IN_FLIGHT = 4;

/** What an engine thread needs to start one replay's Engine (`open`). */
export interface EngineThreadConfig {
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
  /** Receive batches and drop them (measures the dispatcher alone). */
  discard?: boolean;
  /**
   * Overwrite each batch before handing its buffer back (tests: an engine that kept a view of
   * packet bytes past the call, against the CaptureSink contract, would then see garbage).
   */
  poison?: boolean;
}

export type ToEngineThread = { t: 'open'; cfg: EngineThreadConfig } | { t: 'batch'; data: Uint8Array } | { t: 'finish' };
export type FromEngineThread =
  /** `buffer`: the batch's own buffer, handed back for the next batch. */
  | { t: 'events'; ndjson: string; events: number; buffer?: ArrayBuffer }
  | { t: 'done'; ndjson: string; events: number; stats: EngineStats }
  | { t: 'error'; message: string; input: boolean };

function engineThreadFile(): string {
  // Compiled: dist/src/pipeline/fanout.js -> dist/workers/engine-thread.js. From sources (tests):
  // src/pipeline/fanout.ts -> <repo>/dist/workers/engine-thread.js (run `npm run build` first).
  const candidates = [new URL('../../workers/engine-thread.js', import.meta.url), new URL('../../dist/workers/engine-thread.js', import.meta.url)];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(`worker module engine-thread.js not found next to ${fileURLToPath(import.meta.url)}: run 'npm run build'`);
}

/** One engine thread and the dispatcher's view of it: batches in flight, the replay's event sink. */
class EngineLane {
  private readonly worker: Worker;
  private pending = 0;
  private wake: (() => void) | undefined;
  private done: ((stats: EngineStats | undefined) => void) | undefined;
  private onEvents: (ndjson: string, events: number) => void = () => {};
  private onBuffer: (b: ArrayBuffer) => void = () => {};
  /** Why this replay's engine failed (cleared by the next open). */
  failure: Error | undefined;
  /** The thread itself is gone. */
  private dead: Error | undefined;
  closing = false;

  constructor(file: string) {
    this.worker = new Worker(file);
    this.worker.on('message', (m: FromEngineThread) => this.received(m));
    this.worker.on('error', (e: Error) => this.died(new Error(`engine thread failed: ${e.message.split('\n')[0]}`)));
    this.worker.on('exit', (code) => this.died(new Error(`engine thread ended with exit code ${code}`)));
  }

  private received(m: FromEngineThread): void {
    if (m.t === 'error') {
      this.failure ??= m.input ? new InputError(m.message) : new Error(`engine thread: ${m.message}`);
      this.pending = Math.max(0, this.pending - 1);
      this.wakeUp();
      return;
    }
    if (m.ndjson) this.onEvents(m.ndjson, m.events);
    if (m.t === 'events') {
      if (m.buffer) this.onBuffer(m.buffer);
      this.pending--;
      this.wakeUp();
    } else {
      const d = this.done;
      this.done = undefined;
      d?.(m.stats);
    }
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private died(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    if (!this.closing) this.failure ??= e;
    this.wakeUp();
    const d = this.done;
    this.done = undefined;
    d?.(undefined);
  }

  open(cfg: EngineThreadConfig, onEvents: (ndjson: string, events: number) => void, onBuffer: (b: ArrayBuffer) => void): void {
    if (this.dead) throw this.dead;
    this.failure = undefined;
    this.pending = 0;
    this.onEvents = onEvents;
    this.onBuffer = onBuffer;
    this.worker.postMessage({ t: 'open', cfg } satisfies ToEngineThread);
  }

  /** Hands over a batch (a view of its own ArrayBuffer: transferred, not copied). */
  send(data: Uint8Array): void {
    if (this.dead) return;
    this.pending++;
    this.worker.postMessage({ t: 'batch', data } satisfies ToEngineThread, [data.buffer as ArrayBuffer]);
  }

  /** Resolves once at most `max` batches are unanswered; rejects when the engine failed. */
  async room(max: number): Promise<void> {
    while (this.pending > max && !this.failure && !this.dead) await new Promise<void>((r) => (this.wake = r));
    if (this.failure) throw this.failure;
  }

  /** Ends the replay's engine: its last events, then its stats (undefined when the thread is gone). */
  finish(): Promise<EngineStats | undefined> {
    if (this.dead) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.done = resolve;
      this.worker.postMessage({ t: 'finish' } satisfies ToEngineThread);
    });
  }

  terminate(): Promise<number> {
    this.closing = true;
    return this.worker.terminate();
  }
}

/**
 * N engine threads, started once and reusable for one replay after another (not concurrently).
 * `close()` ends them.
 */
export class EnginePool {
  readonly lanes: EngineLane[];

  constructor(readonly size: number) {
    const file = engineThreadFile();
    this.lanes = Array.from({ length: size }, () => new EngineLane(file));
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.terminate()));
  }
}

export interface FanoutOptions {
  /** Engines to use (the first `shards` threads of the pool); default: all. */
  shards?: number;
  /** Engines receive the batches and drop them: the dispatcher's own ceiling (bench only). */
  discard?: boolean;
  /** See EngineThreadConfig.poison (tests). */
  poison?: boolean;
  /** Bytes per batch (tests use small batches, so that buffers go round many times). */
  batchBytes?: number;
  /** Batches in flight per engine before the reader waits. */
  maxInFlight?: number;
}

/**
 * Replays `opts.capture` through `pool`: this thread reads, frames and dispatches, the pool's
 * threads decrypt. Events go to `out`; resolves with the merged stats.
 */
export async function replayFanout(opts: ReplayOptions, out: NdjsonWriter, pool: EnginePool, fo: FanoutOptions = {}): Promise<EngineStats> {
  // Checks the key files before anything is read (exit 2 naming the file) and counts their
  // malformed lines once; each engine thread loads its own copy.
  const keys = loadKeys(opts.keylogs, opts.rsaKeys);
  const shards = fo.shards ?? pool.size;
  if (shards < 1 || shards > pool.size) throw new Error(`replayFanout: ${shards} shards for a pool of ${pool.size}`);
  const lanes = pool.lanes.slice(0, shards);
  const cfg: EngineThreadConfig = { keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine, discard: fo.discard, poison: fo.poison };
  const batchBytes = fo.batchBytes ?? FANOUT_BATCH_BYTES;
  const maxInFlight = fo.maxInFlight ?? MAX_IN_FLIGHT;
  const bufferBytes = batchBytes + BATCH_SLACK;
  // Batch buffers go to an engine and come back with its answer: a freshly allocated 1 MiB buffer
  // per batch cost the dispatcher ~4x the copying itself in page faults (bench/RESULTS.md round 5).
  const spare: ArrayBuffer[] = [];
  const nextBuffer = (): Buffer => {
    const ab = spare.pop();
    return ab ? Buffer.from(ab) : Buffer.allocUnsafeSlow(bufferBytes);
  };
  const giveBack = (ab: ArrayBuffer): void => {
    if (ab.byteLength === bufferBytes) spare.push(ab);
  };
  const write = (ndjson: string, events: number): void => out.writeRaw(ndjson, events);
  for (const l of lanes) l.open(cfg, write, giveBack);
  const builders = lanes.map(() => new BatchBuilder(bufferBytes, nextBuffer));
  const route = packetRouter(shards);
  const capAnomalies: Record<string, number> = {};
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      const s = route(p);
      const b = builders[s];
      b.addPacket(p);
      if (b.bytes >= batchBytes) lanes[s].send(b.takeView());
    },
    secrets(type: number, data: Buffer) {
      for (let s = 0; s < shards; s++) {
        builders[s].addSecrets(type, data);
        if (builders[s].bytes >= batchBytes) lanes[s].send(builders[s].takeView());
      }
    },
    anomaly(code: string) {
      capAnomalies[code] = (capAnomalies[code] ?? 0) + 1;
    },
  };
  const reader = new CaptureReader(sink, opts.captureLimits);
  opts.progress?.watch(reader);
  let finals: (EngineStats | undefined)[];
  try {
    await pumpCapture(
      opts.capture,
      reader,
      async () => {
        for (const l of lanes) await l.room(maxInFlight);
        await out.drained();
      },
      undefined,
      // stdin: its stream's chunks (one read at a time, as it has them)
      opts.capture === '-' ? undefined : fileChunks(opts.capture),
    );
    builders.forEach((b, s) => {
      if (b.count) lanes[s].send(b.takeView());
    });
  } finally {
    // Also after a failure: every engine ends this replay (its answers all in) before the pool
    // can serve another one.
    finals = await Promise.all(lanes.map((l) => l.finish()));
  }
  for (const l of lanes) if (l.failure) throw l.failure;
  if (finals.some((s) => s === undefined)) throw new Error('an engine thread ended before the replay did');
  const total = mergeStats(finals as EngineStats[]);
  total.packets = reader.packets;
  for (const [k, v] of Object.entries(capAnomalies)) total.anomalies[k] = (total.anomalies[k] ?? 0) + v;
  if (keys.malformedKeylogLines) total.anomalies.keylog_malformed_line = (total.anomalies.keylog_malformed_line ?? 0) + keys.malformedKeylogLines;
  return total;
}

/** Replays `opts.capture` with `shards` engines in threads; one reader dispatches . */
export async function replaySharded(opts: ReplayOptions, out: NdjsonWriter, shards: number): Promise<EngineStats> {
  const pool = new EnginePool(shards);
  try {
    return await replayFanout(opts, out, pool);
  } finally {
    await pool.close();
  }
}
