#!/usr/bin/env node
// `run --workers N` scaling without a broker: the Kafka fetch path fed from a file (the same record
// batches, no network). The capture is cut into the records `publish pcap` makes (packets
// partitioned by the 5-tuple flow hash, pcap-stream records of --batch-bytes per partition), and
// they are handed, batch by batch per partition as kafkajs fetches them (--fetch-bytes per
// partition), to the same code `run --workers N` uses: src/kafka/partitionShards.ts (each record
// copied once into its partition's worker's record batch, the batch transferred, decoded and run by
// that worker's engine, events and watermarks back, at most --max-in-flight outputs per worker in
// flight) through src/kafka/fileFetch.ts. Not measured: kafkajs's own fetch decoding, producing
// events and committing offsets (the main thread's Kafka client work).
//
//   node bench/run-workers.mjs --capture CAP --keylog KEYS --workers 1,2,4,8,16 --runs R
//        [--partitions P (default max(16, largest N))] [--batch-bytes 524288] [--fetch-bytes 4194304]
//
// Needs only node, dist/ (npm run build), node_modules (production dependencies), a capture and its
// key log: it runs in the device kit (scripts/bench/device-kit.sh). Each run is a fresh process,
// and the N values take turns (1, 2, 4, 1, 2, 4, ...): a host's speed drifts. Building the records
// from the capture is outside the measured time; worker threads are started and their engines
// loaded (keys read) before it. Reported per N: median Gbps (capture bytes in the records), CPU
// seconds of the whole process (all threads), Gbps per CPU-second, speed-up over the first N, and
// the main thread's own CPU seconds and their share of the wall time (Linux /proc: the hand-off's
// cost, which bounds one process at about 1 / share engines' worth).
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    capture: { type: 'string' },
    keylog: { type: 'string' },
    workers: { type: 'string', default: '1,2' },
    runs: { type: 'string', default: '3' },
    partitions: { type: 'string' },
    'batch-bytes': { type: 'string', default: String(512 << 10) },
    'fetch-bytes': { type: 'string', default: String(4 << 20) },
    'max-in-flight': { type: 'string', default: '4' },
    'batch-slots': { type: 'string' },
    child: { type: 'string' },
  },
});

const dist = (p) => new URL(`../dist/src/${p}`, import.meta.url).href;
const die = (msg) => {
  console.error(`bench/run-workers.mjs: ${msg}`);
  process.exit(2);
};

if (!values.capture || !values.keylog) die('--capture CAP and --keylog KEYS are required');
for (const f of [values.capture, values.keylog]) if (!existsSync(f)) die(`cannot read ${f}`);
if (!existsSync(fileURLToPath(new URL('../dist/workers/stream-shard.js', import.meta.url)))) die('dist/ is missing: run npm run build');
const workers = values.workers.split(',').map((x) => Number(x));
if (workers.some((n) => !Number.isInteger(n) || n < 1 || n > 256)) die(`--workers takes whole numbers from 1 to 256, got '${values.workers}'`);
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) die(`--runs takes a whole number >= 1, got '${values.runs}'`);
const partitions = values.partitions ? Number(values.partitions) : Math.max(16, ...workers);
if (!Number.isInteger(partitions) || partitions < 1) die(`--partitions takes a whole number >= 1, got '${values.partitions}'`);

/** CPU seconds of the main thread alone (Linux: /proc/self/task/PID/stat, PID = the main thread's id). */
function mainThreadCpu() {
  try {
    const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 of stat (utime, stime), counted after the command name: indexes 11 and 12
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return undefined;
  }
}

if (values.child) {
  // one measured run: N = values.child
  const n = Number(values.child);
  const { captureRecords, fetchFromRecords } = await import(dist('kafka/fileFetch.js'));
  const { PartitionShards } = await import(dist('kafka/partitionShards.js'));
  const recs = captureRecords(values.capture, partitions, Number(values['batch-bytes']));
  const cfg = { keylogs: [values.keylog], rsaKeys: [], engine: {}, watermark: { windowSec: 120, maxBytes: 256 << 20 } };
  const shards = new PartitionShards(n, cfg, 1 << 20, undefined, undefined, values['batch-slots'] === undefined ? {} : { batchSlots: Number(values['batch-slots']) });
  // threads started and engines loaded (key log read) before the clock starts
  shards.assign(recs.partitions.map((_, i) => i));
  await shards.stats();
  let events = 0;
  const main0 = mainThreadCpu();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fetchFromRecords(shards, recs, { fetchBytes: Number(values['fetch-bytes']), maxInFlight: Number(values['max-in-flight']), onOutput: (o) => (events += o.values.length) });
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const main1 = mainThreadCpu();
  const stats = await shards.stats();
  await shards.close();
  const perWorker = new Map();
  for (const [, w] of shards.assignment()) perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
  console.log(JSON.stringify({ n, wall, cpu: (cpu.user + cpu.system) / 1e6, bytes: recs.bytes, packets: recs.packets, records: recs.partitions.reduce((a, p) => a + p.length, 0), events, decrypted: stats.sessionsByStatus.decrypted ?? 0, mainBusy: main0 === undefined || main1 === undefined ? undefined : (main1 - main0) / wall, mainCpu: main0 === undefined || main1 === undefined ? undefined : main1 - main0, workersUsed: perWorker.size, slotMisses: shards.batchSlotMisses?.() }));
  process.exit(0);
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f = (x, d = 2) => x.toFixed(d);

console.log(`machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(`input: ${values.capture} (${(statSync(values.capture).size / 1e6).toFixed(1)} MB), ${partitions} partitions, records of ${values['batch-bytes']} bytes, fetches of ${values['fetch-bytes']} bytes per partition`);
const results = new Map(workers.map((n) => [n, []]));
for (let r = 0; r < runs; r++) {
  for (const n of workers) {
    const args = [fileURLToPath(import.meta.url), '--child', String(n), '--capture', values.capture, '--keylog', values.keylog, '--partitions', String(partitions), '--batch-bytes', values['batch-bytes'], '--fetch-bytes', values['fetch-bytes'], '--max-in-flight', values['max-in-flight']];
    const c = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
    const line = c.stdout.trim().split('\n').pop();
    if (c.status !== 0 || !line?.startsWith('{')) die(`run with --workers ${n} failed (exit ${c.status}): ${c.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const o = JSON.parse(line);
    results.get(n).push(o);
    console.log(`  run ${r + 1} --workers ${n}: ${f((o.bytes * 8) / o.wall / 1e9)} Gbps, ${f(o.wall)} s, CPU ${f(o.cpu)} s, main thread ${o.mainCpu === undefined ? '?' : `${f(o.mainCpu)} CPU s = ${f(o.mainCpu / (o.bytes / 1e9))} s per GB (${f(100 * o.mainBusy, 0)}% of the wall time)`}${o.slotMisses ? `, ${o.slotMisses} batches without a free shared slot` : ''}, ${o.events} events, ${o.decrypted} sessions decrypted, load ${loadavg()[0].toFixed(1)}`);
  }
}
const base = median(results.get(workers[0]).map((o) => (o.bytes * 8) / o.wall / 1e9));
console.log('');
console.log(`| workers | Gbps (median of ${runs}) | min-max | speed-up vs ${workers[0]} | CPU s (median) | Gbps per CPU-s | main thread CPU s (share of wall) | events | workers with partitions |`);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const n of workers) {
  const rs = results.get(n);
  const g = rs.map((o) => (o.bytes * 8) / o.wall / 1e9);
  const cpu = median(rs.map((o) => o.cpu));
  const bits = rs[0].bytes * 8;
  console.log(`| ${n} | ${f(median(g))} | ${f(Math.min(...g))}-${f(Math.max(...g))} | ${f(median(g) / base)}x | ${f(cpu)} | ${f(bits / cpu / 1e9)} | ${rs[0].mainCpu === undefined ? '?' : `${f(median(rs.map((o) => o.mainCpu)))} (${f(100 * median(rs.map((o) => o.mainBusy)), 0)}%)`} | ${rs[0].events} | ${rs[0].workersUsed} |`);
}
const evs = new Set(workers.map((n) => results.get(n)[0].events));
if (evs.size !== 1) console.log(`WARNING: the event counts differ between N (${[...evs].join(', ')}): see run-workers-file.test.ts`);
