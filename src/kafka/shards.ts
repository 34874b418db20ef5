/**
 * Engine shards for `run`: one Engine in-process (--workers 1, InProcessShards), or N worker threads
 * with one packets-topic partition each (--workers N: src/kafka/partitionShards.ts, the worker body
 * in src/kafka/shardWorker.ts). The shard's body, ShardCore, is the same in both: an Engine, its
 * SecretsStore (key-log files, plus every secrets-topic record broadcast to all shards), its replay
 * watermark and its ops state.
 *
 * Events come back as (key = network.community_id, value = JSON text, event.id) triples.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Piscina } from 'piscina';
import { Engine, type EngineOptions, type EngineStats } from '../pipeline/engine.js';
import { InputError, type RsaKeySpec } from '../pipeline/replay.js';
import { SecretsStore } from '../tls/crypto/keylog.js';
import { loadRsaKeyFile, type RsaServerKey } from '../tls/crypto/rsa.js';
import type { CaptureSink, RawPacket, Timestamp } from '../types.js';
import { ShardOps, type ShardOpsConfig, type ShardOpsReport } from '../ops/shard.js';
import type { AssetRule } from '../ops/assets.js';
import type { CaptureReaderOptions } from '../capture/index.js';
import { FlowWatermark, type LowWatermarks, type OpenMids, type WatermarkOptions } from './watermark.js';

export interface StreamShardConfig {
  keylogs: string[];
  rsaKeys: RsaKeySpec[];
  engine: Partial<EngineOptions>;
  maxKeylogEntries?: number;
  /** Seconds a secret is kept after it arrived (0 = forever). */
  secretsTtlSec?: number;
  /** Ops state of each shard (workerData-safe: shares the governor gate's SharedArrayBuffer). */
  ops?: ShardOpsConfig;
  /** Replay low watermark (src/kafka/watermark.ts); absent or windowSec 0 = off. */
  watermark?: WatermarkOptions;
  /** Record decoding in the worker (`run --workers N`, one partition per worker: src/kafka/partitionShards.ts). */
  records?: { captureLimits?: CaptureReaderOptions; maxRecordBytes?: number };
  /**
   * Test hook (TLSDECRYPT_TEST_WORKER_FAIL): once the worker has decoded this many records, it
   * throws, or (`failHow` 'exit', in a worker thread) its thread exits.
   */
  failAfterRecords?: number;
  failHow?: 'throw' | 'exit';
  /**
   * `run`: every capture-time tick comes from the main thread (its CaptureClock: the time all of
   * the worker's partitions have reached); the worker never ticks with the newest time it decoded.
   */
  mainClock?: boolean;
}

/** Receives each shard's ops report (cumulative stats + asset observations) with every task result. */
export type ShardReportListener = (shard: number, report: ShardOpsReport) => void;

export interface ShardOutput {
  keys: string[];
  values: string[];
  /** event.id of each value (same order), when the shard reports them. */
  ids?: string[];
  /**
   * Per packets-topic partition: the offset of the first record still needed by a flow open in the
   * shard(s), after every packet handed over before this output (src/kafka/watermark.ts).
   * A partition that is absent holds no open flow. Absent when the watermark is off.
   */
  low?: LowWatermarks;
  /** Per partition: the open flows without a handshake (FlowWatermark.mids), when there are any. */
  mids?: OpenMids;
}

/**
 * `seq` (records and finish tasks): position in the shard's sequence. Piscina may start queued tasks
 * out of submission order even with one thread, so the worker keeps a task that arrives early
 * until its predecessors have run; the events of tasks run together come back in the result of
 * the task that ran them (an earlier ticket), so they are still produced before the later
 * ticket's offset is committed. Stats and policy tasks carry no `seq`: they run when they arrive
 * and take no events.
 */
export type StreamShardTask =
  | { kind: 'records'; seq?: number; data: ArrayBuffer | Uint8Array | null; tick?: Timestamp; revoke?: number[]; slot?: number }
  | { kind: 'finish'; seq?: number; leave?: boolean }
  | { kind: 'stats' }
  | { kind: 'policy'; assets: AssetRule[]; defaultEnabled: boolean };

export interface StreamShardResult extends ShardOutput {
  stats?: EngineStats;
  activeFlows: number;
  ops?: ShardOpsReport;
  /**
   * Records tasks: what the worker's RecordDecoders decoded so far (cumulative), its capture clock
   * (newest time decoded) and, per partition it holds, the newest time decoded from it.
   */
  decoded?: { packets: number; badRecords: Record<string, number>; clock: Timestamp; clocks: [partition: number, ts: Timestamp][] };
  /** Records tasks: the shared batch slots (`slot` of the tasks) read since the last result, free again. */
  released?: number[];
}

/** Static key material (files); errors are InputErrors naming the file, never its content. */
export function loadStaticKeys(cfg: StreamShardConfig): { secrets: SecretsStore; rsaKeys: RsaServerKey[]; malformed: number } {
  const secrets = new SecretsStore({ maxEntries: cfg.maxKeylogEntries, maxAgeSec: cfg.secretsTtlSec });
  let malformed = 0;
  for (const path of cfg.keylogs) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new InputError(`cannot read key log ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    malformed += secrets.addText(text).malformed;
  }
  const rsaKeys: RsaServerKey[] = [];
  for (const spec of cfg.rsaKeys) {
    try {
      rsaKeys.push(...loadRsaKeyFile(spec.path, spec.password));
    } catch (e) {
      throw new InputError((e as Error).message.split('\n')[0]);
    }
  }
  return { secrets, rsaKeys, malformed };
}

/** One Engine plus its event buffer: the body of a shard, in-process or in a worker thread. */
export class ShardCore implements CaptureSink {
  readonly engine: Engine;
  readonly ops: ShardOps;
  /** Replay low watermark: which record each open flow started in. */
  readonly watermark: FlowWatermark;
  private keys: string[] = [];
  private values: string[] = [];
  private ids: string[] = [];

  constructor(cfg: StreamShardConfig) {
    const k = loadStaticKeys(cfg);
    this.ops = new ShardOps(cfg.ops);
    this.watermark = new FlowWatermark(cfg.watermark ?? { windowSec: 0, maxBytes: 0 });
    this.engine = new Engine(
      (ev) => {
        this.keys.push(String(ev.network?.community_id ?? ''));
        this.values.push(JSON.stringify(ev));
        this.ids.push(ev.event.id);
      },
      { secrets: k.secrets, rsaKeys: k.rsaKeys },
      {
        ...cfg.engine,
        // partitions are fetched side by side: only the clock every partition has reached times
        // flows out (tick), never a packet of a partition further ahead (TcpOptions.clock)
        tcp: { ...cfg.engine.tcp, clock: 'ticks' },
        udp: { ...cfg.engine.udp, clock: 'ticks' },
        ops: this.ops,
        ...(this.watermark.enabled ? { flows: this.watermark } : {}),
      },
    );
    if (k.malformed) this.engine.stats.anomalies.keylog_malformed_line = k.malformed;
  }

  packet(p: RawPacket): void {
    this.watermark.seen(p.ts.sec);
    try {
      this.engine.packet(p);
    } catch {
      this.anomaly('engine_internal_error');
    }
  }

  secrets(type: number, data: Buffer): void {
    try {
      this.engine.secrets(type, data);
    } catch {
      this.anomaly('engine_internal_error');
    }
  }

  anomaly(code: string): void {
    this.engine.anomaly(code);
  }

  tick(ts: Timestamp): void {
    try {
      this.engine.tick(ts);
    } catch {
      this.anomaly('engine_internal_error');
    }
  }

  /** End of input (`leave`: a planned leave, which closes nothing: Engine.leave). */
  finish(leave = false): void {
    try {
      if (leave) this.engine.leave();
      else this.engine.finish();
    } catch {
      this.anomaly('engine_internal_error');
    }
  }

  /**
   * The partitions went to another member: their open flows emit nothing more and leave the flow
   * table now (if a partition comes back, its re-read starts them afresh).
   */
  revoke(partitions: number[]): void {
    this.watermark.revoke(partitions);
    this.engine.dropFlows((h) => this.watermark.revoked(h));
  }

  take(): ShardOutput {
    const out: ShardOutput = { keys: this.keys, values: this.values, ids: this.ids };
    if (this.watermark.enabled) {
      out.low = this.watermark.low();
      const mids = this.watermark.mids();
      if (Object.keys(mids).length) out.mids = mids;
      const r = this.watermark.released;
      if (r) {
        this.watermark.released = 0;
        this.engine.stats.anomalies.flow_replay_released = (this.engine.stats.anomalies.flow_replay_released ?? 0) + r;
      }
    }
    this.keys = [];
    this.values = [];
    this.ids = [];
    return out;
  }

  report(): ShardOpsReport {
    return this.ops.report(this.engine.stats, this.engine.activeFlows);
  }
}

export interface Shards extends CaptureSink {
  readonly n: number;
  /**
   * The packets that follow come from this packets-topic record (`pos`: bytes of its partition read
   * before it; `until`: end of the partition's re-read region, 0 when none — FlowWatermark.at).
   */
  origin(partition: number, offset: number, pos: number, until: number, mids?: Set<string>): void;
  /** The partitions moved to another member: flows opened from their records emit nothing more. */
  revoke(partitions: number[]): void;
  /** Hands on what was buffered (plus a capture-time tick); resolves with the events produced. */
  flush(tick?: Timestamp): Promise<ShardOutput>;
  /** End of input: closes every flow (`leave`: a planned leave, which closes none: Engine.leave). */
  finish(leave?: boolean): Promise<ShardOutput>;
  /** Engine tasks submitted and not yet done. */
  inFlight(): number;
  stats(): Promise<EngineStats>;
  activeFlows(): number;
  /** A reloaded asset policy for every shard (ShardOps.setPolicy). */
  setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void>;
  close(): Promise<void>;
}

export class InProcessShards implements Shards {
  readonly n = 1;
  private readonly core: ShardCore;

  constructor(cfg: StreamShardConfig, private readonly onReport?: ShardReportListener) {
    this.core = new ShardCore(cfg);
  }

  private reported<T>(v: T): T {
    this.onReport?.(0, this.core.report());
    return v;
  }

  packet(p: RawPacket): void {
    this.core.packet(p);
  }
  origin(partition: number, offset: number, pos: number, until: number, mids?: Set<string>): void {
    this.core.watermark.at(partition, offset, pos, until, mids);
  }
  revoke(partitions: number[]): void {
    this.core.revoke(partitions);
  }
  secrets(type: number, data: Buffer): void {
    this.core.secrets(type, data);
  }
  anomaly(code: string): void {
    this.core.anomaly(code);
  }
  async flush(tick?: Timestamp): Promise<ShardOutput> {
    if (tick) this.core.tick(tick);
    return this.reported(this.core.take());
  }
  async finish(leave = false): Promise<ShardOutput> {
    this.core.finish(leave);
    return this.reported(this.core.take());
  }
  inFlight(): number {
    return 0;
  }
  async stats(): Promise<EngineStats> {
    return this.reported(this.core.engine.stats);
  }
  activeFlows(): number {
    return this.core.engine.activeFlows;
  }
  async setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void> {
    this.core.ops.setPolicy(rules, defaultEnabled);
  }
  async close(): Promise<void> {}
}

/**
 * Piscina, loaded on first use (its CommonJS entry): `run --workers 1` never needs it, and its
 * import is ~30 ms of every start-up.
 */
export function loadPiscina(): typeof Piscina {
  return createRequire(import.meta.url)('piscina') as typeof Piscina;
}

export function streamWorkerFile(): string {
  // Compiled: dist/src/kafka/shards.js -> dist/workers/stream-shard.js. From sources (tests):
  // src/kafka/shards.ts -> <repo>/dist/workers/stream-shard.js (run `npm run build` first).
  const candidates = [new URL('../../workers/stream-shard.js', import.meta.url), new URL('../../dist/workers/stream-shard.js', import.meta.url)];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(`worker module stream-shard.js not found next to ${fileURLToPath(import.meta.url)}: run 'npm run build'`);
}
