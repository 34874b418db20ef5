/**
 * Engine shards for `run`: either one Engine in-process (--workers 1) or N single-thread Piscina
 * pools (workers/stream-shard.ts), one Engine per thread, with flow affinity by flowHash % N (the
 * same design as `replay --workers N`). Each worker Engine has its own SecretsStore; every secret
 * is broadcast to all shards as a batch entry (BatchBuilder.addSecrets, type 0x544c534b).
 *
 * Events come back as (key = network.community_id, value = JSON text) pairs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Piscina } from 'piscina';
import { Engine, type EngineOptions, type EngineStats } from '../pipeline/engine.js';
import { BatchBuilder, batchTransfer } from '../pipeline/batch.js';
import { mergeStats } from '../pipeline/sharded.js';
import { packetHash } from '../pipeline/flowHash.js';
import { InputError, type RsaKeySpec } from '../pipeline/replay.js';
import { newDecodedPacket } from '../decode/index.js';
import { SecretsStore } from '../tls/crypto/keylog.js';
import { loadRsaKeyFile, type RsaServerKey } from '../tls/crypto/rsa.js';
import type { CaptureSink, DecodedPacket, RawPacket, Timestamp } from '../types.js';
import { ShardOps, type ShardOpsConfig, type ShardOpsReport } from '../ops/shard.js';
import type { AssetRule } from '../ops/assets.js';
import type { CaptureReaderOptions } from '../capture/index.js';
import { FlowWatermark, minLow, type LowWatermarks, type OpenMids, type WatermarkOptions } from './watermark.js';

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
  /** Test hook (TLSDECRYPT_TEST_WORKER_FAIL): the worker throws once it has decoded this many records. */
  failAfterRecords?: number;
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

/** The record packets come from, from batch entry `from` on (like SensorRun). */
export interface OriginRun {
  from: number;
  partition: number;
  offset: number;
  /** Bytes of the partition read before this record. */
  pos: number;
  /** End of the partition's re-read region (FlowWatermark.at), 0 when none. */
  until: number;
  /** The previous owner's open flows without a handshake (FlowWatermark.at). */
  mids?: string[];
}

/**
 * Sensor names of a batch's entries (BatchBuilder has no field for it): entry index `from` on
 * (packets and secrets entries both count) carries `sensor`, until the next run.
 */
export interface SensorRun {
  from: number;
  sensor?: string;
}

/**
 * `seq` (batch and finish tasks): position in the shard's sequence. Piscina may start queued tasks
 * out of submission order even with one thread, so the worker keeps a task that arrives early
 * until its predecessors have run; the events of tasks run together come back in the result of
 * the task that ran them (an earlier ticket), so they are still produced before the later
 * ticket's offset is committed. Stats and policy tasks carry no `seq`: they run when they arrive
 * and take no events.
 */
export type StreamShardTask =
  | { kind: 'batch'; seq?: number; data: ArrayBuffer | Uint8Array | null; tick?: Timestamp; sensors?: SensorRun[]; origins?: OriginRun[]; revoke?: number[] }
  | { kind: 'records'; seq?: number; data: ArrayBuffer | Uint8Array | null; tick?: Timestamp; revoke?: number[] }
  | { kind: 'finish'; seq?: number; udpOnly?: boolean }
  | { kind: 'stats' }
  | { kind: 'policy'; assets: AssetRule[]; defaultEnabled: boolean };

export interface StreamShardResult extends ShardOutput {
  stats?: EngineStats;
  activeFlows: number;
  ops?: ShardOpsReport;
  /** Records tasks: what the worker's RecordDecoders decoded so far (cumulative), and its capture clock. */
  decoded?: { packets: number; badRecords: Record<string, number>; clock: Timestamp };
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
      { ...cfg.engine, ops: this.ops, ...(this.watermark.enabled ? { flows: this.watermark } : {}) },
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

  /** End of input (`udpOnly`: only the UDP flows, as at a planned leave: Engine.finishUdp). */
  finish(udpOnly = false): void {
    try {
      if (udpOnly) this.engine.finishUdp();
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
  /** End of input: closes every flow (`udpOnly`: only the UDP flows, at a planned leave). */
  finish(udpOnly?: boolean): Promise<ShardOutput>;
  /** Engine tasks submitted and not yet done. */
  inFlight(): number;
  stats(): Promise<EngineStats>;
  activeFlows(): number;
  /** A reloaded asset policy for every shard (ShardOps.setPolicy). */
  setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void>;
  close(): Promise<void>;
}

function merge(outs: ShardOutput[]): ShardOutput {
  if (outs.length === 1) return outs[0];
  const keys: string[] = [];
  const values: string[] = [];
  const ids: string[] = [];
  let low: LowWatermarks | undefined;
  let mids: OpenMids | undefined;
  for (const o of outs) {
    for (const [p, m] of Object.entries(o.mids ?? {})) ((mids ??= {})[Number(p)] ??= []).push(...m);
    for (const k of o.keys) keys.push(k);
    for (const v of o.values) values.push(v);
    for (const v of o.ids ?? []) ids.push(v);
    if (o.low) low = minLow(low, o.low);
  }
  return { keys, values, ids: ids.length === values.length ? ids : undefined, low, mids };
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
  async finish(udpOnly = false): Promise<ShardOutput> {
    this.core.finish(udpOnly);
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

/** Shard of a packet among `n` for `run`: flowHash % n (the partitioning of `publish pcap`); not TCP -> 0. */
function flowShard(p: RawPacket, n: number, scratch: DecodedPacket): number {
  const h = packetHash(p, true, scratch);
  return h < 0 ? 0 : h % n;
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

export class WorkerShards implements Shards {
  private readonly pools: Piscina<StreamShardTask, StreamShardResult>[];
  private readonly builders: BatchBuilder[];
  private readonly sensorRuns: SensorRun[][];
  private readonly curSensor: (string | undefined)[];
  private readonly queued: Promise<StreamShardResult>[][];
  private running = 0;
  private readonly decoded: DecodedPacket = newDecodedPacket();
  private readonly lastStats: (EngineStats | undefined)[];
  private readonly flowsPerShard: number[];
  /** Origin runs of each builder's batch, and the origin version each builder last recorded. */
  private readonly originRuns: OriginRun[][];
  private readonly originSeen: number[];
  private originVer = 0;
  private cur: Omit<OriginRun, 'from'> | undefined;
  /** Each shard's latest low watermarks (a shard without a task in a flush keeps its own). */
  private readonly lastLow: (LowWatermarks | undefined)[];
  private readonly lastMids: (OpenMids | undefined)[];
  /** Anomalies seen on the main thread (record decoding), merged into stats. */
  private readonly mainAnomalies: Record<string, number> = {};

  /** The key files in `cfg` must have been checked (MixedShards loads them for shard 0 first). */
  constructor(readonly n: number, cfg: StreamShardConfig, private readonly batchBytes: number, private readonly onReport?: ShardReportListener) {
    const filename = streamWorkerFile();
    // atomics 'disabled' as in replay (src/pipeline/sharded.ts): Piscina's Atomics.wait hand-off
    // made the worker spend ~25% of its CPU in postMessage; tasks are large, a message is enough.
    // concurrentTasksPerWorker: several tasks posted at once, so the worker does not wait for the
    // main thread's event loop (busy with Kafka and shard 0) between two tasks; `seq` keeps order.
    const Pool = loadPiscina();
    this.pools = Array.from({ length: n }, () => new Pool<StreamShardTask, StreamShardResult>({ filename, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 8, workerData: cfg, idleTimeout: Infinity, atomics: 'disabled' }));
    this.builders = this.pools.map(() => new BatchBuilder(batchBytes + (1 << 16)));
    this.sensorRuns = this.pools.map(() => []);
    this.curSensor = this.pools.map(() => undefined);
    this.queued = this.pools.map(() => []);
    this.lastStats = this.pools.map(() => undefined);
    this.flowsPerShard = this.pools.map(() => 0);
    this.originRuns = this.pools.map(() => []);
    this.originSeen = this.pools.map(() => -1);
    this.lastLow = this.pools.map(() => undefined);
    this.lastMids = this.pools.map(() => undefined);
  }

  /**
   * Tasks of a shard must run in submission order (flow state!). Piscina 5.3 does not keep FIFO
   * order once more than two tasks wait for a single-thread pool (measured: 2000 queued tasks ran
   * 1937 times out of order), so batch and finish tasks carry a per-shard sequence number and the
   * worker runs them in that order (workers/stream-shard.ts). They are all handed to Piscina at
   * once, so the worker never waits for a round trip between two batches.
   */
  private readonly seqs: number[] = [];

  private submit(i: number, task: StreamShardTask & { kind: 'batch' | 'finish' }): void {
    const transferList = task.kind === 'batch' && task.data ? [batchTransfer(task.data)] : [];
    task.seq = this.seqs[i] = (this.seqs[i] ?? -1) + 1;
    this.running++;
    const pool = this.pools[i];
    const p = pool.run(task, { transferList }).then(
      (r) => {
        this.running--;
        this.flowsPerShard[i] = r.activeFlows;
        if (r.low) {
          this.lastLow[i] = r.low;
          this.lastMids[i] = r.mids;
        }
        if (r.stats) this.lastStats[i] = r.stats;
        if (r.ops) this.onReport?.(i, r.ops);
        return r;
      },
      (e) => {
        this.running--;
        throw e;
      },
    );
    this.queued[i].push(p);
  }

  /** The shard's buffered batch as a task (null data when empty). */
  private takeBatch(i: number, tick?: Timestamp): StreamShardTask & { kind: 'batch' } {
    const b = this.builders[i];
    const sensors = this.sensorRuns[i];
    this.sensorRuns[i] = [];
    this.curSensor[i] = undefined;
    const origins = this.originRuns[i];
    this.originRuns[i] = [];
    this.originSeen[i] = -1;
    // takeView: the builder's own buffer is transferred, no copy (a new one is started)
    return { kind: 'batch', data: b.count ? b.takeView() : null, tick, sensors: sensors.length ? sensors : undefined, origins: origins.length ? origins : undefined };
  }

  origin(partition: number, offset: number, pos: number, until: number, mids?: Set<string>): void {
    this.cur = { partition, offset, pos, until, mids: mids ? [...mids] : undefined };
    this.originVer++;
  }

  revoke(partitions: number[]): void {
    for (let i = 0; i < this.n; i++) {
      const t = this.takeBatch(i);
      t.revoke = partitions;
      this.submit(i, t);
      const low = this.lastLow[i];
      if (low) for (const p of partitions) delete low[p];
    }
  }

  packet(p: RawPacket): void {
    this.packetTo(flowShard(p, this.n, this.decoded), p);
  }

  /** A packet for shard `shard` (the caller chose it). */
  packetTo(shard: number, p: RawPacket): void {
    const b = this.builders[shard];
    if (p.sensor !== this.curSensor[shard]) {
      this.sensorRuns[shard].push({ from: b.count, sensor: p.sensor });
      this.curSensor[shard] = p.sensor;
    }
    if (this.cur && this.originSeen[shard] !== this.originVer) {
      this.originRuns[shard].push({ from: b.count, ...this.cur });
      this.originSeen[shard] = this.originVer;
    }
    b.addPacket(p);
    if (b.bytes >= this.batchBytes) this.submit(shard, this.takeBatch(shard));
  }

  secrets(type: number, data: Buffer): void {
    for (let i = 0; i < this.n; i++) {
      this.builders[i].addSecrets(type, data);
      if (this.builders[i].bytes >= this.batchBytes) this.submit(i, this.takeBatch(i));
    }
  }

  anomaly(code: string): void {
    this.mainAnomalies[code] = (this.mainAnomalies[code] ?? 0) + 1;
  }

  private async collect(): Promise<ShardOutput> {
    const all: Promise<StreamShardResult>[] = [];
    for (let i = 0; i < this.n; i++) {
      all.push(...this.queued[i]);
      this.queued[i] = [];
    }
    const out = merge(await Promise.all(all));
    if (out.low) {
      out.low = this.lastLow.reduce<LowWatermarks>((a, b) => minLow(a, b), {});
      out.mids = merge(this.lastMids.map((m) => ({ keys: [], values: [], mids: m }))).mids;
    }
    return out;
  }

  flush(tick?: Timestamp): Promise<ShardOutput> {
    for (let i = 0; i < this.n; i++) {
      if (this.builders[i].count || tick) this.submit(i, this.takeBatch(i, tick));
    }
    return this.collect();
  }

  finish(udpOnly = false): Promise<ShardOutput> {
    for (let i = 0; i < this.n; i++) {
      if (this.builders[i].count) this.submit(i, this.takeBatch(i));
      this.submit(i, { kind: 'finish', udpOnly });
    }
    return this.collect();
  }

  inFlight(): number {
    return this.running;
  }

  async stats(): Promise<EngineStats> {
    // Not through `queued`: stats tasks take no events. They run when the worker gets to them
    // (batches before them may still wait); the final stats are asked after the finish task's
    // result has arrived.
    const rs = await Promise.all(this.pools.map((p) => p.run({ kind: 'stats' }).catch(() => undefined)));
    rs.forEach((r, i) => {
      if (r?.stats) this.lastStats[i] = r.stats;
      if (r) this.flowsPerShard[i] = r.activeFlows;
      if (r?.ops) this.onReport?.(i, r.ops);
    });
    const t = mergeStats(this.lastStats.filter((s): s is EngineStats => s !== undefined));
    for (const [k, v] of Object.entries(this.mainAnomalies)) t.anomalies[k] = (t.anomalies[k] ?? 0) + v;
    return t;
  }

  activeFlows(): number {
    return this.flowsPerShard.reduce((a, b) => a + b, 0);
  }

  async setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void> {
    // Like stats: not through `queued` (it carries no events), applied when the worker gets to it.
    await Promise.all(
      this.pools.map((p, i) => {
        const r = p.run({ kind: 'policy', assets: rules, defaultEnabled });
        return r.then(
          (res) => {
            if (res.ops) this.onReport?.(i, res.ops);
          },
          () => undefined,
        );
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.destroy()));
  }
}

/**
 * `run --workers N` (N > 1): shard 0 runs on the main thread (as InProcessShards), shards 1..N-1
 * in worker threads (WorkerShards of N-1): N engines on N threads, not N + 1. The main thread also
 * runs the Kafka client and record decoding, so shard 0 gets a fair share of flows but the most
 * work; on machines with spare cores that is what keeps the thread count equal to the engines.
 */
export class MixedShards implements Shards {
  private readonly local: ShardCore;
  private readonly workers: WorkerShards;
  private readonly decoded: DecodedPacket = newDecodedPacket();

  constructor(readonly n: number, cfg: StreamShardConfig, batchBytes: number, private readonly onReport?: ShardReportListener) {
    // Shard 0 first: loading its keys checks the files, so errors exit 2 before threads start.
    this.local = new ShardCore(cfg);
    this.workers = new WorkerShards(n - 1, cfg, batchBytes, onReport ? (i, r) => onReport(i + 1, r) : undefined);
  }

  private reported(): void {
    this.onReport?.(0, this.local.report());
  }

  packet(p: RawPacket): void {
    const shard = flowShard(p, this.n, this.decoded);
    if (shard === 0) this.local.packet(p);
    else this.workers.packetTo(shard - 1, p);
  }

  origin(partition: number, offset: number, pos: number, until: number, mids?: Set<string>): void {
    this.local.watermark.at(partition, offset, pos, until, mids);
    this.workers.origin(partition, offset, pos, until, mids);
  }

  revoke(partitions: number[]): void {
    this.local.revoke(partitions);
    this.workers.revoke(partitions);
  }

  secrets(type: number, data: Buffer): void {
    this.local.secrets(type, data);
    this.workers.secrets(type, data);
  }

  anomaly(code: string): void {
    this.workers.anomaly(code);
  }

  async flush(tick?: Timestamp): Promise<ShardOutput> {
    if (tick) this.local.tick(tick);
    const mine = this.local.take();
    this.reported();
    return merge([mine, await this.workers.flush(tick)]);
  }

  async finish(udpOnly = false): Promise<ShardOutput> {
    this.local.finish(udpOnly);
    const mine = this.local.take();
    this.reported();
    return merge([mine, await this.workers.finish(udpOnly)]);
  }

  inFlight(): number {
    return this.workers.inFlight();
  }

  async stats(): Promise<EngineStats> {
    const w = await this.workers.stats();
    this.reported();
    return mergeStats([this.local.engine.stats, w]);
  }

  activeFlows(): number {
    return this.local.engine.activeFlows + this.workers.activeFlows();
  }

  async setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void> {
    this.local.ops.setPolicy(rules, defaultEnabled);
    await this.workers.setPolicy(rules, defaultEnabled);
  }

  async close(): Promise<void> {
    await this.workers.close();
  }
}
