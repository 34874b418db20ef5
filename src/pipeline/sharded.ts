/**
 * `replay --workers N`: N engine shards. The main thread reads the capture and runs shard 0's
 * Engine itself; shards 1..N-1 are single-thread Piscina pools (one per shard: each shard's tasks
 * run in order in its one thread). On N cores that is N busy threads, not N + 1: the reader's own
 * work (reading, hashing, batching) is small next to an engine's.
 *
 * Affinity: every packet of a host pair goes to one shard (all connections between two hosts meet:
 * FTP data channels and their control connection, session resumption across connections). A host
 * pair seen for the first time goes to the shard with the fewest bytes so far (least-loaded at
 * first sight, as Suricata's autofp schedulers balance flows), so a few heavy host pairs cannot
 * leave one shard with most of the work the way `hash % N` can; once the table of pairs is full,
 * new pairs fall back to their hash. The key is the 32-bit host-pair hash (pairs that collide
 * simply share a shard). Events of shard 0 are written directly, the workers' come back as NDJSON
 * text; per-shard order is kept, shards interleave.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { CaptureReader } from '../capture/index.js';
import { newDecodedPacket } from '../decode/index.js';
import type { CaptureSink, DecodedPacket, RawPacket } from '../types.js';
import { BatchBuilder, batchTransfer } from './batch.js';
import { packetHash } from './flowHash.js';
import { loadKeys, pumpCapture, type ReplayOptions } from './replay.js';
import { Engine, type EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import type { ShardConfig, ShardResult, ShardTask } from '../../workers/shard.js';

const BATCH_BYTES = 1 << 20;
const MAX_IN_FLIGHT_PER_SHARD = 4;
/** Host pairs remembered for least-loaded assignment; beyond, new pairs go by hash. */
const MAX_ASSIGNED_PAIRS = 1 << 20;

function workerFile(): string {
  // Compiled layout: dist/src/pipeline/sharded.js -> dist/workers/shard.js
  const js = fileURLToPath(new URL('../../workers/shard.js', import.meta.url));
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

export async function replaySharded(opts: ReplayOptions, out: NdjsonWriter, shards: number): Promise<EngineStats> {
  // Loaded here for shard 0 (this also validates the files before any thread starts: exit 2).
  const keys = loadKeys(opts.keylogs, opts.rsaKeys);
  const cfg: ShardConfig = { keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine };
  const filename = workerFile();
  const workers = shards - 1;
  // atomics 'disabled': with Piscina's default Atomics.wait hand-off the worker spent ~25% of its
  // CPU in postMessage of results (bench/RESULTS.md); batches are large, so a plain message is enough.
  // concurrentTasksPerWorker: Piscina hands a one-thread pool its next task only when the worker
  // has reported the last one done, and that report waits for this thread's event loop, which is
  // busy running shard 0. With several tasks posted at once the worker has the next one at hand
  // (it runs them in `seq` order either way).
  const pools = Array.from({ length: workers }, () => new Piscina<ShardTask, ShardResult>({ filename, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: MAX_IN_FLIGHT_PER_SHARD + 2, workerData: cfg, idleTimeout: 60_000, atomics: 'disabled' }));
  const local = new Engine((ev) => out.write(ev), keys, opts.engine);
  if (keys.malformedKeylogLines) local.stats.anomalies.keylog_malformed_line = keys.malformedKeylogLines;
  const builders = pools.map(() => new BatchBuilder(BATCH_BYTES + (1 << 16)));
  const inFlight: Promise<ShardResult>[][] = pools.map(() => []);
  const mainStats = { packets: 0 };
  const decoded: DecodedPacket = newDecodedPacket();
  const assigner = new ShardAssigner(shards);
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
      // Anything that is not TCP goes to shard 0.
      const h = packetHash(p, false, decoded);
      const shard = h < 0 ? 0 : assigner.shardOf(h, p.data.length);
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
