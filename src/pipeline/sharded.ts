/**
 * `replay --workers N`: N engine shards, N busy processes or threads.
 *
 * Affinity: every packet of a host pair goes to one shard (all connections between two hosts meet:
 * FTP data channels and their control connection, session resumption across connections). A host
 * pair seen for the first time goes to the shard with the fewest bytes so far (least-loaded at
 * first sight, as Suricata's autofp schedulers balance flows), so a few heavy host pairs cannot
 * leave one shard with most of the work the way `hash % N` can; once the table of pairs is full,
 * new pairs fall back to their hash. The key is the 32-bit host-pair hash (pairs that collide
 * simply share a shard). Per-shard event order is kept, shards interleave.
 *
 * A capture **file** is read by every shard (`replaySplit`): shard 0 runs on this thread, shards
 * 1..N-1 are child processes, and each reads the whole file and keeps its own host pairs, the way
 * Zeek or Suricata workers each take their share of the packets from the kernel (AF_PACKET fanout).
 * The assignment is a deterministic function of the packets in file order, so all shards agree on
 * it without talking. No packet bytes cross between shards (reading and hashing a packet is small
 * next to decrypting it) and every shard has its own heap and GC, which is what two independent
 * processes scale with on this machine (bench/RESULTS.md). Children send their events as NDJSON
 * over a pipe; this process relays whole lines.
 *
 * **stdin** can only be read once (`replayThreads`): this thread reads it, runs shard 0 and sends
 * the other shards' packets in 1 MiB batches to single-thread Piscina pools (one per shard, so each
 * shard's tasks run in order in its one thread).
 */
import { fork } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CaptureReader } from '../capture/index.js';
import { newDecodedPacket } from '../decode/index.js';
import type { CaptureSink, DecodedPacket, RawPacket } from '../types.js';
import { BatchBuilder, batchTransfer } from './batch.js';
import { packetHash } from './flowHash.js';
import { InputError, loadKeys, pumpCapture, pumpToWriter, writerEngine, type ReplayOptions } from './replay.js';
import type { EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import type { ShardConfig, ShardResult, ShardTask } from '../../workers/shard.js';

const BATCH_BYTES = 1 << 20;
const MAX_IN_FLIGHT_PER_SHARD = 4;
/** Host pairs remembered for least-loaded assignment; beyond, new pairs go by hash. */
const MAX_ASSIGNED_PAIRS = 1 << 20;

function workerFile(name: string): string {
  // Compiled layout: dist/src/pipeline/sharded.js -> dist/workers/NAME.js
  const js = fileURLToPath(new URL(`../../workers/${name}.js`, import.meta.url));
  if (existsSync(js)) return js;
  throw new Error(`worker module not found at ${js}: run 'npm run build'`);
}

/**
 * Host pair -> shard: least-loaded (bytes so far) at first sight, then fixed. Exported for tests.
 */
export class ShardAssigner {
  private readonly pairs = new Map<number, number>();
  readonly bytes: number[];

  constructor(
    readonly shards: number,
    private readonly maxPairs = MAX_ASSIGNED_PAIRS,
  ) {
    this.bytes = new Array<number>(shards).fill(0);
  }

  /** Shard of a packet of `len` bytes whose host-pair hash is `h` (unsigned 32-bit). */
  shardOf(h: number, len: number): number {
    let s = this.pairs.get(h);
    if (s === undefined) {
      if (this.pairs.size < this.maxPairs) {
        s = 0;
        for (let i = 1; i < this.shards; i++) if (this.bytes[i] < this.bytes[s]) s = i;
        this.pairs.set(h, s);
      } else {
        s = h % this.shards;
      }
    }
    this.bytes[s] += len;
    return s;
  }
}

/** Shard of each captured packet, in capture order: its host pair's (ShardAssigner); not TCP -> 0. */
function packetRouter(shards: number): (p: RawPacket) => number {
  const assigner = new ShardAssigner(shards);
  const decoded: DecodedPacket = newDecodedPacket();
  return (p) => {
    const h = packetHash(p, false, decoded);
    return h < 0 ? 0 : assigner.shardOf(h, p.data.length);
  };
}

/**
 * The packets of shard `me` of `shards` out of a whole capture, for `engine`. Shard 0 also takes
 * everything that is not TCP and the capture-level anomalies (counted once, not once per shard);
 * every shard takes the pcapng decryption secrets.
 */
export function shardFilter(engine: CaptureSink, me: number, shards: number): CaptureSink {
  const shardOf = packetRouter(shards);
  return {
    packet(p: RawPacket) {
      if (shardOf(p) === me) engine.packet(p);
    },
    secrets(type: number, data: Buffer) {
      engine.secrets(type, data);
    },
    anomaly(code: string) {
      if (me === 0) engine.anomaly(code);
    },
  };
}

/** First IPC message to a `workers/replay-shard.ts` child. */
export interface SplitShardConfig {
  capture: string;
  keylogs: ReplayOptions['keylogs'];
  rsaKeys: ReplayOptions['rsaKeys'];
  engine: ReplayOptions['engine'];
  captureLimits: ReplayOptions['captureLimits'];
  shard: number;
  shards: number;
}

/** Last IPC message from a child: its engine's stats, or why it failed. */
export type SplitShardReport = { stats: EngineStats } | { error: string; input: boolean };

export async function replaySharded(opts: ReplayOptions, out: NdjsonWriter, shards: number): Promise<EngineStats> {
  // Loaded here for shard 0 (this also validates the files before any shard starts: exit 2).
  const keys = loadKeys(opts.keylogs, opts.rsaKeys);
  let file = false;
  try {
    file = opts.capture !== '-' && statSync(opts.capture).isFile();
  } catch {
    /* unreadable: pumpCapture below says so in its one line */
  }
  return file ? replaySplit(opts, out, shards, keys) : replayThreads(opts, out, shards, keys);
}

/** Counts the lines of NDJSON text. */
function lineCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** One child shard: relays its whole lines into `out` (pausing it while `out` is full). */
function startChild(filename: string, cfg: SplitShardConfig, out: NdjsonWriter): Promise<EngineStats> {
  // The parent's node flags (e.g. --cpu-prof, --max-old-space-size) apply to its shards too, except
  // an inspector: its port is the parent's.
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect'));
  const child = fork(filename, [], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], execArgv });
  child.send(cfg);
  let partial = '';
  const stdout = child.stdout!;
  stdout.setEncoding('utf8');
  stdout.on('data', (chunk: string) => {
    const end = chunk.lastIndexOf('\n');
    if (end < 0) {
      partial += chunk;
      return;
    }
    const text = partial + chunk.slice(0, end + 1);
    partial = chunk.slice(end + 1);
    out.writeRaw(text, lineCount(text));
    if (out.full) {
      stdout.pause();
      out.drained().then(
        () => stdout.resume(),
        () => child.kill(),
      );
    }
  });
  let report: SplitShardReport | undefined;
  child.on('message', (m: SplitShardReport) => {
    report = m;
  });
  const ended = new Promise<void>((resolve) => stdout.once('end', resolve));
  return new Promise<EngineStats>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      void ended.then(() => {
        if (report && 'stats' in report && code === 0) resolve(report.stats);
        else if (report && 'error' in report) reject(report.input ? new InputError(report.error) : new Error(`replay shard ${cfg.shard}: ${report.error}`));
        else reject(new Error(`replay shard ${cfg.shard} ended with ${signal ?? `exit code ${code}`}`));
      });
    });
  });
}

type LoadedKeys = ReturnType<typeof loadKeys>;

async function replaySplit(opts: ReplayOptions, out: NdjsonWriter, shards: number, keys: LoadedKeys): Promise<EngineStats> {
  const filename = workerFile('replay-shard');
  const base = { capture: opts.capture, keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine, captureLimits: opts.captureLimits, shards };
  const children = Array.from({ length: shards - 1 }, (_, i) => startChild(filename, { ...base, shard: i + 1 }, out));
  // A child that fails early must not leave an unhandled rejection while shard 0 still reads.
  for (const c of children) c.catch(() => {});
  const local = writerEngine(out, keys, opts.engine);
  const reader = new CaptureReader(shardFilter(local, 0, shards), opts.captureLimits);
  opts.progress?.watch(reader);
  await pumpToWriter(opts.capture, reader, out);
  local.finish();
  out.flush();
  const total = mergeStats([local.stats, ...(await Promise.all(children))]);
  total.packets = reader.packets;
  return total;
}

async function replayThreads(opts: ReplayOptions, out: NdjsonWriter, shards: number, keys: LoadedKeys): Promise<EngineStats> {
  const cfg: ShardConfig = { keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine };
  const filename = workerFile('shard');
  const { Piscina } = await import('piscina');
  const workers = shards - 1;
  // atomics 'disabled': with Piscina's default Atomics.wait hand-off the worker spent ~25% of its
  // CPU in postMessage of results (bench/RESULTS.md); batches are large, so a plain message is enough.
  // concurrentTasksPerWorker: Piscina hands a one-thread pool its next task only when the worker
  // has reported the last one done, and that report waits for this thread's event loop, which is
  // busy running shard 0. With several tasks posted at once the worker has the next one at hand
  // (it runs them in `seq` order either way).
  const pools = Array.from({ length: workers }, () => new Piscina<ShardTask, ShardResult>({ filename, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: MAX_IN_FLIGHT_PER_SHARD + 2, workerData: cfg, idleTimeout: 60_000, atomics: 'disabled' }));
  const local = writerEngine(out, keys, opts.engine);
  const builders = pools.map(() => new BatchBuilder(BATCH_BYTES + (1 << 16)));
  const inFlight: Promise<ShardResult>[][] = pools.map(() => []);
  const mainStats = { packets: 0 };
  const shardOf = packetRouter(shards);
  const consume = (r: ShardResult): void => {
    if (r.ndjson) out.writeRaw(r.ndjson, r.events);
  };
  // Piscina does not keep submission order even with one thread (queued tasks can start out of
  // order), and a shard's batches must reach its engine in capture order: tasks carry their
  // position in the shard's sequence and the worker runs them in that order (workers/shard.ts),
  // so up to MAX_IN_FLIGHT_PER_SHARD tasks can be queued and the worker never waits for a round trip.
  const seqs = pools.map(() => 0);
  const submit = (w: number, task: ShardTask): void => {
    const transferList = task.kind === 'batch' ? [batchTransfer(task.data)] : [];
    task.seq = seqs[w]++;
    inFlight[w].push(pools[w].run(task, { transferList }));
  };
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      mainStats.packets++;
      const shard = shardOf(p);
      if (shard === 0) {
        local.packet(p);
        return;
      }
      const b = builders[shard - 1];
      b.addPacket(p);
      if (b.bytes >= BATCH_BYTES) submit(shard - 1, { kind: 'batch', data: b.takeView() });
    },
    secrets(type: number, data: Buffer) {
      local.secrets(type, data);
      for (const b of builders) b.addSecrets(type, data);
    },
    anomaly(code: string) {
      // Capture-level anomalies: forwarded as part of the summary below.
      capAnomalies[code] = (capAnomalies[code] ?? 0) + 1;
    },
  };
  const capAnomalies: Record<string, number> = {};
  const reader = new CaptureReader(sink, opts.captureLimits);
  opts.progress?.watch(reader);
  try {
    await pumpCapture(opts.capture, reader, async () => {
      for (let w = 0; w < workers; w++) {
        while (inFlight[w].length > MAX_IN_FLIGHT_PER_SHARD) consume(await inFlight[w].shift()!);
      }
      out.flush();
      await out.drained();
    });
    for (let w = 0; w < workers; w++) {
      if (builders[w].count) submit(w, { kind: 'batch', data: builders[w].takeView() });
      submit(w, { kind: 'finish' });
    }
    local.finish();
    const finals: EngineStats[] = [local.stats];
    for (let w = 0; w < workers; w++) {
      for (const p of inFlight[w]) {
        const r = await p;
        consume(r);
        if (r.stats) finals.push(r.stats);
      }
      inFlight[w] = [];
    }
    const total = mergeStats(finals);
    total.packets = mainStats.packets;
    for (const [k, v] of Object.entries(capAnomalies)) total.anomalies[k] = (total.anomalies[k] ?? 0) + v;
    return total;
  } finally {
    await Promise.all(pools.map((p) => p.destroy()));
  }
}

function addInto(dst: Record<string, number>, src: Record<string, number>): void {
  for (const [k, v] of Object.entries(src)) dst[k] = (dst[k] ?? 0) + v;
}

export function mergeStats(list: EngineStats[]): EngineStats {
  const t: EngineStats = {
    packets: 0, bytes: 0, tcpPackets: 0, flows: 0, tlsFlows: 0, otherFlows: 0, decryptedBytes: 0,
    sessionsByStatus: {}, eventsByDataset: {}, anomalies: {}, notDecoded: {},
  };
  for (const s of list) {
    t.packets += s.packets;
    t.bytes += s.bytes;
    t.tcpPackets += s.tcpPackets;
    t.flows += s.flows;
    t.tlsFlows += s.tlsFlows;
    t.otherFlows += s.otherFlows;
    t.decryptedBytes += s.decryptedBytes;
    addInto(t.sessionsByStatus, s.sessionsByStatus);
    addInto(t.eventsByDataset, s.eventsByDataset);
    addInto(t.anomalies, s.anomalies);
    addInto(t.notDecoded, s.notDecoded);
  }
  return t;
}
