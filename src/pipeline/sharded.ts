/**
 * `replay --workers N`: the main thread reads the capture and decodes each packet only far enough
 * to hash its host pair (hostPairHash: all connections between two hosts share a shard, so FTP
 * data channels and session resumption meet their control connection); packets are batched per shard and handed to N single-thread Piscina pools (one
 * per shard — simple flow affinity without a custom balancer: each shard's tasks run in order in
 * its one thread). Events come back as NDJSON text; per-shard order is kept, shards interleave.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { CaptureReader } from '../capture/index.js';
import { decodePacket, newDecodedPacket } from '../decode/index.js';
import type { CaptureSink, DecodedPacket, RawPacket } from '../types.js';
import { BatchBuilder } from './batch.js';
import { hostPairHash, hostPairHashEthIpv4Tcp } from './flowHash.js';
import { loadKeys, pumpCapture, type ReplayOptions } from './replay.js';
import type { EngineStats } from './engine.js';
import type { NdjsonWriter } from './output.js';
import type { ShardConfig, ShardResult, ShardTask } from '../../workers/shard.js';

const BATCH_BYTES = 1 << 20;
const MAX_IN_FLIGHT_PER_SHARD = 4;

function workerFile(): string {
  // Compiled layout: dist/src/pipeline/sharded.js -> dist/workers/shard.js
  const js = fileURLToPath(new URL('../../workers/shard.js', import.meta.url));
  if (existsSync(js)) return js;
  throw new Error(`worker module not found at ${js}: run 'npm run build'`);
}

export async function replaySharded(opts: ReplayOptions, out: NdjsonWriter, shards: number): Promise<EngineStats> {
  loadKeys(opts.keylogs, opts.rsaKeys); // validate key files here, so errors exit 2 before threads start
  const cfg: ShardConfig = { keylogs: opts.keylogs, rsaKeys: opts.rsaKeys, engine: opts.engine };
  const filename = workerFile();
  // atomics 'disabled': with Piscina's default Atomics.wait hand-off the worker spent ~25% of its
  // CPU in postMessage of results (bench/RESULTS.md); batches are large, so a plain message is enough.
  const pools = Array.from({ length: shards }, () => new Piscina<ShardTask, ShardResult>({ filename, minThreads: 1, maxThreads: 1, workerData: cfg, idleTimeout: 60_000, atomics: 'disabled' }));
  const builders = pools.map(() => new BatchBuilder(BATCH_BYTES + (1 << 16)));
  const inFlight: Promise<ShardResult>[][] = pools.map(() => []);
  const mainStats = { packets: 0, notTcp: 0 };
  const decoded: DecodedPacket = newDecodedPacket();
  const ignore = { anomaly() {} }; // anomalies are counted by the shard that decodes the packet for real
  const consume = (r: ShardResult): void => {
    if (r.ndjson) out.writeRaw(r.ndjson, r.events);
  };
  // Piscina does not keep submission order even with one thread (queued tasks can start out of
  // order), and a shard's batches must reach its engine in capture order: tasks carry their
  // position in the shard's sequence and the worker runs them in that order (workers/shard.ts),
  // so up to MAX_IN_FLIGHT_PER_SHARD tasks can be queued and the worker never waits for a round trip.
  const seqs = pools.map(() => 0);
  const submit = (i: number, task: ShardTask): void => {
    const transferList = task.kind === 'batch' ? [(task.data instanceof Uint8Array ? task.data.buffer : task.data) as ArrayBuffer] : [];
    task.seq = seqs[i]++;
    inFlight[i].push(pools[i].run(task, { transferList }));
  };
  const sink: CaptureSink = {
    packet(p: RawPacket) {
      mainStats.packets++;
      // Fast path for plain Ethernet/IPv4/TCP: the hash from the frame bytes, no decoding here.
      const fast = p.linktype === 1 ? hostPairHashEthIpv4Tcp(p.data) : -1;
      const shard = fast >= 0 ? fast % shards : decodePacket(p, decoded, ignore) === 'tcp' ? hostPairHash(decoded) % shards : 0;
      builders[shard].addPacket(p);
      if (builders[shard].bytes >= BATCH_BYTES) submit(shard, { kind: 'batch', data: builders[shard].takeView() });
    },
    secrets(type: number, data: Buffer) {
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
      for (let i = 0; i < shards; i++) {
        while (inFlight[i].length > MAX_IN_FLIGHT_PER_SHARD) consume(await inFlight[i].shift()!);
      }
      out.flush();
      await out.drained();
    });
    for (let i = 0; i < shards; i++) {
      if (builders[i].count) submit(i, { kind: 'batch', data: builders[i].takeView() });
      submit(i, { kind: 'finish' });
    }
    const finals: EngineStats[] = [];
    for (let i = 0; i < shards; i++) {
      for (const p of inFlight[i]) {
        const r = await p;
        consume(r);
        if (r.stats) finals.push(r.stats);
      }
      inFlight[i] = [];
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
