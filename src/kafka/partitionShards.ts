/**
 * `run --workers N` (N > 1): one engine per worker thread, and each packets-topic partition of this
 * instance belongs to one worker. The main thread keeps the Kafka client, the secrets reader, commit
 * ordering, metrics and the governor; it never frames a packet. A consumed record is copied once,
 * untouched, into its worker's record batch (src/kafka/recordBatch.ts) with its watermark origin: a
 * shared slot of that worker's (BatchSlots, freed when the worker's result says it read it), or,
 * when all are in use, a buffer of its own that is transferred. The worker decodes the records (RecordDecoder),
 * runs its Engine and returns the events serialised (community_id key, JSON text, event.id) with,
 * per partition, its low watermark and open mid-connection flows (src/kafka/watermark.ts).
 *
 * Assignment: a partition goes to the worker with the fewest partitions (lowest index on a tie)
 * when the consumer group assigns it (or its first record arrives), and stays there until the group
 * takes it away. A rebalance moves partitions between the workers of one instance as it moves them
 * between instances: revoked -> the worker mutes and drops the partition's flows; assigned again ->
 * re-read from the committed offset (`run`). Every connection is in one partition (`publish pcap`
 * partitions by the 5-tuple flow hash), so one worker sees all of it.
 *
 * Workers are single-thread Piscina pools (workers/stream-shard.ts), created when they first get a
 * partition: tasks carry a per-worker sequence number and run in that order (Piscina 5 does not keep
 * submission order once several tasks wait). Secrets from the secrets topic are broadcast to every
 * worker in the same record stream, and kept here (the last `maxKeylogEntries` records) to seed a
 * worker started later.
 *
 * Capture time (`mainClock`, as `run` uses it): the workers report per partition the newest capture
 * time they decoded (`decodedClocks`), and `flushTicks` ticks each worker with what the caller's
 * CaptureClock computes for that worker's partitions (src/kafka/captureClock.ts). Without it (file
 * fetch, bench) a worker ticks with its own newest time or the newest any worker decoded.
 *
 * A worker that fails (any task rejected: an exception, or its thread died) is replaced by a new
 * pool with a fresh engine and the retained secrets; its partitions are handed to `onLost`, and
 * `run` re-reads them from their last commit (seek), exactly as after a takeover. The outputs of
 * the lost worker's tasks hold those partitions' commits back (low watermark -1) until then.
 */
import type { EngineStats } from '../pipeline/engine.js';
import { mergeStats } from '../pipeline/sharded.js';
import type { AssetRule } from '../ops/assets.js';
import type { RawPacket, Timestamp } from '../types.js';
import type { InRecord } from './adapter.js';
import { log } from './log.js';
import { BatchSlots, RecordBatchBuilder, type RecordOrigin } from './recordBatch.js';
import { StreamShardWorker } from './shardWorker.js';
import { loadPiscina, loadStaticKeys, streamWorkerFile, type ShardOutput, type ShardReportListener, type Shards, type StreamShardConfig, type StreamShardResult, type StreamShardTask } from './shards.js';
import type { LowWatermarks, OpenMids } from './watermark.js';

/** Secrets records kept to seed a worker started later, when `maxKeylogEntries` is not set. */
const DEFAULT_SECRETS_KEPT = 1_000_000;
/**
 * Shared batch buffers per worker (BatchSlots), by default: 32, fewer with many workers so that all
 * of them together stay within 256 MiB (15 at 16 workers with 1 MiB batches), at least 4. More
 * batches in flight to one worker get buffers of their own. A slot's memory is touched only once a
 * batch needs it, and the most recently freed slot is used first, so what stays resident is what
 * the batches in flight needed at most.
 */
function defaultBatchSlots(workers: number, slotBytes: number): number {
  return Math.max(4, Math.min(32, Math.floor((256 << 20) / workers / slotBytes)));
}

/** One worker: a single-thread Piscina pool, or (tests) the same worker code on this thread. */
interface ShardThread {
  run(task: StreamShardTask, transferList?: ArrayBuffer[]): Promise<StreamShardResult>;
  destroy(): Promise<void>;
}

export interface PartitionShardsOptions {
  /** Runs the workers' code on this thread instead (tests: every fixture without thread start-ups). */
  inProcess?: boolean;
  /** Workers tick only with the caller's ticks (flushTicks; StreamShardConfig.mainClock). */
  mainClock?: boolean;
  /** Shared batch buffers per worker (default: defaultBatchSlots; 0: every batch a transferred buffer of its own). */
  batchSlots?: number;
  /** Tests: fill a batch slot with 0xee once its worker has read it. */
  poisonSlots?: boolean;
}

interface Slot {
  pool: ShardThread | undefined;
  /** Incremented when the worker is replaced: results of an older generation are ignored. */
  gen: number;
  seq: number;
  builder: RecordBatchBuilder;
  /** The shared buffers this worker's batches are written into, and the ones its thread holds now. */
  mem: BatchSlots;
  out: Set<number>;
  /** Partitions this worker owns. */
  partitions: Set<number>;
  /** Partitions revoked since the last task (sent with the next one). */
  revoke: number[];
  /** Tasks of the current flush, and the latest task submitted (its result states what is fed so far). */
  queued: Promise<StreamShardResult>[];
  last: Promise<StreamShardResult> | undefined;
  lastStats: EngineStats | undefined;
  activeFlows: number;
  packets: number;
  badRecords: Record<string, number>;
  /** Capture clock the worker was last ticked with. */
  tickedSec: number;
  /** Per partition: the newest capture time the worker decoded (its latest result). */
  clocks: [number, Timestamp][];
}

export class PartitionShards implements Shards {
  private readonly slots: Slot[];
  private readonly owner = new Map<number, number>();
  private running = 0;
  /** Newest capture time any worker decoded (ticks the others: timeouts follow capture time). */
  private clock: Timestamp = { sec: 0, nsec: 0 };
  private readonly secretsKept: { type: number; data: Buffer }[] = [];
  private readonly maxSecretsKept: number;
  private policy: { rules: AssetRule[]; defaultEnabled: boolean } | undefined;
  /** What replaced workers had counted (their engine stats, packets and bad records). */
  private readonly retiredStats: EngineStats[] = [];
  private retiredPackets = 0;
  private readonly retiredBad: Record<string, number> = {};
  /** Workers replaced after a failure. */
  restarts = 0;
  private closed = false;
  /**
   * Test hook, read once: `W:K` makes worker W's first engine throw once it has decoded K records;
   * `W:K:exit` makes its thread exit instead; `W:K:always` makes every engine of worker W throw.
   */
  private readonly failHook = /^(\d+):(\d+)(?::(exit|always))?$/.exec(process.env.TLSDECRYPT_TEST_WORKER_FAIL ?? '');

  /**
   * `onLost(partitions)`: a worker failed; the records of these partitions must be read again from
   * their last commit (`run` seeks the consumer there). It returns false when the worker is not to
   * be replaced (the run stops: a worker that keeps failing).
   */
  constructor(
    readonly n: number,
    private readonly cfg: StreamShardConfig,
    private readonly batchBytes: number,
    private readonly onReport?: ShardReportListener,
    private readonly onLost?: (partitions: number[]) => boolean,
    private readonly opts: PartitionShardsOptions = {},
  ) {
    // The key files are checked here, so that errors exit 2 before any thread starts.
    loadStaticKeys(cfg);
    if (!opts.inProcess) streamWorkerFile();
    this.maxSecretsKept = cfg.maxKeylogEntries ?? DEFAULT_SECRETS_KEPT;
    const batchBuffer = batchBytes + (1 << 16);
    this.slots = Array.from({ length: n }, () => {
      const mem = new BatchSlots(opts.batchSlots ?? defaultBatchSlots(n, batchBuffer), batchBuffer);
      mem.poison = opts.poisonSlots === true;
      return { pool: undefined, gen: 0, seq: -1, mem, out: new Set<number>(), builder: new RecordBatchBuilder(batchBuffer, mem), partitions: new Set(), revoke: [], queued: [], last: undefined, lastStats: undefined, activeFlows: 0, packets: 0, badRecords: {}, tickedSec: 0, clocks: [] };
    });
  }

  /** Worker of a partition: its owner, or (new partition) the worker with the fewest partitions. */
  private slotOf(partition: number): number {
    let i = this.owner.get(partition);
    if (i !== undefined) return i;
    i = 0;
    for (let j = 1; j < this.n; j++) if (this.slots[j].partitions.size < this.slots[i].partitions.size) i = j;
    this.owner.set(partition, i);
    this.slots[i].partitions.add(partition);
    this.ensurePool(i);
    return i;
  }

  /** Which worker owns each partition now. */
  assignment(): Map<number, number> {
    return new Map(this.owner);
  }

  private ensurePool(i: number): void {
    const s = this.slots[i];
    if (s.pool || this.closed) return;
    const workerData: StreamShardConfig = { ...this.cfg, mainClock: this.opts.mainClock };
    if (this.policy) workerData.ops = { ...this.cfg.ops, assets: this.policy.rules, assetsDefaultEnabled: this.policy.defaultEnabled };
    const fail = this.failHook;
    workerData.failAfterRecords = fail && Number(fail[1]) === i && (s.gen === 0 || fail[3] === 'always') ? Number(fail[2]) : undefined;
    workerData.failHow = fail?.[3] === 'exit' && !this.opts.inProcess ? 'exit' : 'throw';
    const gen = s.gen;
    // a thread that dies between tasks is a failure too (Piscina reports it as the pool's 'error')
    s.pool = this.spawn(workerData, (e) => this.lost(i, gen, e));
    s.seq = -1;
    for (const k of this.secretsKept) s.builder.addSecrets(k.type, k.data);
  }

  private spawn(workerData: StreamShardConfig, onError: (e: Error) => void): ShardThread {
    if (this.opts.inProcess) {
      const w = new StreamShardWorker(workerData);
      let gone = false;
      return {
        run: (task) => Promise.resolve().then(() => {
          if (gone) throw new Error('worker destroyed');
          return w.run(task);
        }),
        destroy: async () => void (gone = true),
      };
    }
    const Pool = loadPiscina();
    // One thread; no Atomics hand-off (tasks are large, a message is enough: Atomics.wait made a
    // worker spend ~25% of its CPU in postMessage); several tasks posted at once, `seq` keeps order.
    const pool = new Pool<StreamShardTask, StreamShardResult>({ filename: streamWorkerFile(), minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 8, workerData, idleTimeout: Infinity, atomics: 'disabled' });
    pool.on('error', onError);
    return { run: (task, transferList) => pool.run(task, { transferList }), destroy: () => pool.destroy() };
  }

  private submit(i: number, task: StreamShardTask & { kind: 'records' | 'finish' }): void {
    const s = this.slots[i];
    const slot = task.kind === 'records' ? (task.slot ?? -1) : -1;
    if (!s.pool) {
      if (slot >= 0) s.mem.release(slot);
      return;
    }
    // a shared slot travels as a view (shared, not copied); a buffer of its own is transferred
    const transferList = task.kind === 'records' && task.data && slot < 0 ? [(task.data as Uint8Array).buffer as ArrayBuffer] : [];
    if (slot >= 0) s.out.add(slot);
    task.seq = ++s.seq;
    const gen = s.gen;
    this.running++;
    const p = s.pool.run(task, transferList).then(
      (r) => {
        this.running--;
        if (s.gen !== gen) return r;
        for (const id of r.released ?? []) if (s.out.delete(id)) s.mem.release(id);
        s.activeFlows = r.activeFlows;
        if (r.stats) s.lastStats = r.stats;
        if (r.decoded) {
          s.packets = r.decoded.packets;
          s.badRecords = r.decoded.badRecords;
          s.clocks = r.decoded.clocks;
          const t = r.decoded.clock;
          if (t.sec > this.clock.sec || (t.sec === this.clock.sec && t.nsec > this.clock.nsec)) this.clock = t;
        }
        if (r.ops) this.onReport?.(i, r.ops);
        return r;
      },
      (e: Error) => {
        this.running--;
        this.lost(i, gen, e);
        throw e;
      },
    );
    p.catch(() => {});
    s.queued.push(p);
    s.last = p;
  }

  /** Worker `i` (generation `gen`) failed: replace it; its partitions are re-read from their commits. */
  private lost(i: number, gen: number, e: Error): void {
    const s = this.slots[i];
    if (s.gen !== gen || this.closed) return;
    const partitions = [...s.partitions].sort((a, b) => a - b);
    log('error', 'engine worker failed', { worker: i, partitions, error: e });
    s.gen++;
    if (s.lastStats) this.retiredStats.push(s.lastStats);
    this.retiredPackets += s.packets;
    for (const [k, v] of Object.entries(s.badRecords)) this.retiredBad[k] = (this.retiredBad[k] ?? 0) + v;
    s.lastStats = undefined;
    s.packets = 0;
    s.badRecords = {};
    s.activeFlows = 0;
    s.clocks = [];
    s.builder.clear();
    // the old thread is stopped: the slots it held are free (it only ever read them)
    for (const id of s.out) s.mem.release(id);
    s.out.clear();
    s.revoke = [];
    s.last = undefined;
    const old = s.pool;
    s.pool = undefined;
    void old?.destroy().catch(() => {});
    if (this.onLost && !this.onLost(partitions)) return;
    this.restarts++;
    if (partitions.length) this.ensurePool(i);
  }

  record(r: InRecord, o: RecordOrigin): void {
    const i = this.slotOf(r.partition);
    const b = this.slots[i].builder;
    // a record that does not fit what is left of the batch's buffer starts the next batch
    if (!b.addRecord(r, o, false)) {
      this.submitRecords(i);
      b.addRecord(r, o);
    }
    if (b.bytes >= this.batchBytes) this.submitRecords(i);
  }

  private submitRecords(i: number, tick?: Timestamp): void {
    const s = this.slots[i];
    const revoke = s.revoke.length ? s.revoke : undefined;
    s.revoke = [];
    if (tick) s.tickedSec = tick.sec;
    const t = s.builder.count ? s.builder.take() : undefined;
    this.submit(i, { kind: 'records', data: t?.data ?? null, slot: t?.slot, tick, revoke });
  }

  /** The main thread frames no packets in this mode (records go through record()). */
  packet(_p: RawPacket): void {
    throw new Error('PartitionShards takes records, not packets');
  }

  origin(): void {}

  revoke(partitions: number[]): void {
    for (const p of partitions) {
      const i = this.owner.get(p);
      if (i === undefined) continue;
      this.owner.delete(p);
      const s = this.slots[i];
      s.partitions.delete(p);
      s.revoke.push(p);
    }
    // sent now, so the flows stop before anything else of this instance is delivered
    for (let i = 0; i < this.n; i++) if (this.slots[i].revoke.length) this.submitRecords(i);
  }

  /** Partitions assigned to this instance (in order): each gets its worker now, so the spread follows the assignment. */
  assign(partitions: number[]): void {
    for (const p of partitions) this.slotOf(p);
  }

  secrets(type: number, data: Buffer): void {
    const k = { type, data: Buffer.from(data) };
    this.secretsKept.push(k);
    if (this.secretsKept.length > this.maxSecretsKept) this.secretsKept.splice(0, this.secretsKept.length - this.maxSecretsKept);
    for (let i = 0; i < this.n; i++) {
      const s = this.slots[i];
      if (!s.pool) continue;
      s.builder.addSecrets(type, k.data);
      if (s.builder.bytes >= this.batchBytes) this.submitRecords(i);
    }
  }

  anomaly(code: string): void {
    // Nothing is decoded on the main thread in this mode; counted like a record's anomaly.
    this.retiredBad[code] = (this.retiredBad[code] ?? 0) + 1;
  }

  /**
   * The events of every task submitted since the last collect, with per partition the low watermark
   * as of those tasks (a worker without a task now: as of its latest task). A failed worker's
   * partitions get -1 (no commit) until they are re-read.
   */
  private async collect(): Promise<ShardOutput> {
    const per = this.slots.map((s) => {
      const fresh = s.queued;
      s.queued = [];
      return { fresh, state: fresh.length ? fresh[fresh.length - 1] : s.last, partitions: [...s.partitions] };
    });
    const keys: string[] = [];
    const values: string[] = [];
    const ids: string[] = [];
    const low: LowWatermarks = {};
    let mids: OpenMids | undefined;
    let lows = false;
    const results = await Promise.all(
      per.map((w) =>
        Promise.all([Promise.all(w.fresh), w.state]).then(
          ([rs, state]) => ({ w, rs, state }),
          () => ({ w, rs: undefined, state: undefined }),
        ),
      ),
    );
    for (const { w, rs, state } of results) {
      if (!rs) {
        // a failed worker: its partitions are re-read from their last commit, nothing to commit now
        for (const p of w.partitions) low[p] = -1;
        lows = true;
        continue;
      }
      for (const r of rs) {
        for (const k of r.keys) keys.push(k);
        for (const v of r.values) values.push(v);
        for (const id of r.ids ?? []) ids.push(id);
      }
      if (state?.low) {
        lows = true;
        for (const p of w.partitions) {
          if (state.low[p] !== undefined) low[p] = state.low[p];
          if (state.mids?.[p]) (mids ??= {})[p] = state.mids[p];
        }
      }
    }
    return { keys, values, ids: ids.length === values.length ? ids : undefined, low: lows ? low : undefined, mids };
  }

  /** Hands on what was buffered; every worker is ticked with `tick` (mainClock), or the newest time any worker decoded if later. */
  flush(tick?: Timestamp): Promise<ShardOutput> {
    const t = this.opts.mainClock || (tick && (tick.sec > this.clock.sec || (tick.sec === this.clock.sec && tick.nsec > this.clock.nsec))) ? tick : this.clock;
    return this.flushTicks(() => t);
  }

  /**
   * Hands on what was buffered, each worker ticked with `tickOf(its partitions, its index)` (`run`:
   * the time all of them have reached).
   */
  flushTicks(tickOf: (partitions: ReadonlySet<number>, worker: number) => Timestamp | undefined): Promise<ShardOutput> {
    for (let i = 0; i < this.n; i++) {
      const s = this.slots[i];
      if (!s.pool) continue;
      const t = tickOf(s.partitions, i);
      // Workers with records get them; the others get the capture clock when it moved a second on.
      if (s.builder.count || s.revoke.length || (t && t.sec > s.tickedSec && s.partitions.size)) this.submitRecords(i, t?.sec ? t : undefined);
    }
    return this.collect();
  }

  /** Per partition held by a worker: the newest capture time it decoded (as of the worker's latest result). */
  *decodedClocks(): Iterable<[number, Timestamp]> {
    for (const s of this.slots) for (const [p, t] of s.clocks) if (s.partitions.has(p)) yield [p, t];
  }

  finish(leave = false): Promise<ShardOutput> {
    for (let i = 0; i < this.n; i++) {
      const s = this.slots[i];
      if (!s.pool) continue;
      if (s.builder.count || s.revoke.length) this.submitRecords(i);
      this.submit(i, { kind: 'finish', leave });
    }
    return this.collect();
  }

  /** Batches that found every shared slot of their worker in use (transferred buffers of their own). */
  batchSlotMisses(): number {
    return this.slots.reduce((a, s) => a + s.mem.misses, 0);
  }

  inFlight(): number {
    return this.running;
  }

  /** Packets decoded by the workers (re-read ones included) and bad records they counted. */
  decoded(): { packets: number; badRecords: Record<string, number> } {
    let packets = this.retiredPackets;
    const bad: Record<string, number> = { ...this.retiredBad };
    for (const s of this.slots) {
      packets += s.packets;
      for (const [k, v] of Object.entries(s.badRecords)) bad[k] = (bad[k] ?? 0) + v;
    }
    return { packets, badRecords: bad };
  }

  async stats(): Promise<EngineStats> {
    await Promise.all(
      this.slots.map(async (s, i) => {
        if (!s.pool) return;
        const gen = s.gen;
        const r = await s.pool.run({ kind: 'stats' }).catch(() => undefined);
        if (!r || s.gen !== gen) return;
        s.lastStats = r.stats;
        s.activeFlows = r.activeFlows;
        if (r.ops) this.onReport?.(i, r.ops);
      }),
    );
    return mergeStats([...this.retiredStats, ...this.slots.map((s) => s.lastStats).filter((x): x is EngineStats => x !== undefined)]);
  }

  activeFlows(): number {
    return this.slots.reduce((a, s) => a + s.activeFlows, 0);
  }

  async setPolicy(rules: AssetRule[], defaultEnabled: boolean): Promise<void> {
    this.policy = { rules, defaultEnabled };
    await Promise.all(
      this.slots.map(async (s, i) => {
        const r = await s.pool?.run({ kind: 'policy', assets: rules, defaultEnabled }).catch(() => undefined);
        if (r?.ops) this.onReport?.(i, r.ops);
      }),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.pool?.destroy()));
  }
}
