#!/usr/bin/env node
// Worker scaling: the same capture replayed with --workers 1, 2, ... (src/pipeline/sharded.ts: on
// a file, shard 0 runs in the replay process and shards 1..N-1 are child processes; every shard
// reads the file and keeps its own host pairs).
//
//   npm run build && node bench/scaling.mjs [--workers 1,2] [--runs 3] [--capture F --keylog K]
//
// Each run is a fresh process, and the worker counts take turns (1, 2, 1, 2, ...): this host's
// speed drifts over minutes, so a block of one count then a block of the other measures the drift.
// The median wall time per worker count is reported with the speed-up over the single-threaded
// replay (--workers 1 runs the Engine in one process, no shard). Shard start-up is inside the
// measured time; the fixed cost of starting N shards is printed separately (replay of a 40 KB
// fixture).
import { parseArgs } from 'node:util';
import { CACHE, ROOT, fmt, mb, median, need, needBuild, printMachine, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '1,2' }, runs: { type: 'string', default: '3' },
  capture: { type: 'string', default: `${CACHE}/bulk.pcap` }, keylog: { type: 'string', default: `${CACHE}/bulk.keys.log` },
} });
needBuild();
need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
const m = printMachine();
waitQuiet();
console.log(`input: ${values.capture}`);
{
  // How this capture's bytes split over N shards (the ceiling on speed-up): as replay assigns them
  // (least-loaded host pair at first sight, src/pipeline/sharded.ts) and as plain hash % N would.
  const { readFileSync } = await import('node:fs');
  const { CaptureReader } = await import(new URL('../dist/src/capture/index.js', import.meta.url).href);
  const { packetHash } = await import(new URL('../dist/src/pipeline/flowHash.js', import.meta.url).href);
  const { newDecodedPacket } = await import(new URL('../dist/src/decode/index.js', import.meta.url).href);
  const scratch = newDecodedPacket();
  const { ShardAssigner } = await import(new URL('../dist/src/pipeline/sharded.js', import.meta.url).href);
  const buf = readFileSync(values.capture);
  for (const n of values.workers.split(',').map(Number).filter((x) => x > 1)) {
    const byHash = new Array(n).fill(0);
    const as = new ShardAssigner(n);
    const by = new Array(n).fill(0);
    const r = new CaptureReader({ packet(p) { const h = packetHash(p, false, scratch); byHash[h < 0 ? 0 : h % n] += p.origLen; by[h < 0 ? 0 : as.shardOf(h, p.data.length)] += p.origLen; }, secrets() {}, anomaly() {} });
    for (let o = 0; o < buf.length; o += 1 << 20) r.push(buf.subarray(o, Math.min(buf.length, o + (1 << 20))));
    const tot = by.reduce((a, b) => a + b, 0);
    const show = (v) => `${v.map((b) => `${fmt((100 * b) / tot, 1)}%`).join(' / ')} of the bytes -> speed-up ceiling ${fmt(tot / Math.max(...v))}x`;
    console.log(`shard split for --workers ${n} (least-loaded host pairs, as replay does): ${show(by)}`);
    console.log(`  (plain host-pair hash % ${n} would give ${show(byHash)})`);
  }
}
const small = `${ROOT}fixtures/https/tls13-aes128gcm-h2/capture.pcap`, smallKeys = `${ROOT}fixtures/https/tls13-aes128gcm-h2/keys.log`;
const counts = values.workers.split(',').map(Number);
const runs = new Map(counts.map((n) => [n, []]));
for (let i = 0; i < Number(values.runs); i++) for (const n of counts) runs.get(n).push(runReplay(values.capture, values.keylog, n));
let base;
for (const n of counts) {
  const fixed = median([0, 1, 2].map(() => runReplay(small, smallKeys, n).wallNs));
  const rs = runs.get(n);
  const t = median(rs.map((r) => r.wallNs)) / 1e9;
  const s = rs[0].stats;
  const gbps = (s.bytes * 8) / t / 1e9;
  base ??= t;
  console.log(`--workers ${n}: ${fmt(t, 3)} s (runs ${rs.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), ${fmt(gbps)} Gbps, speed-up ${fmt(base / t)}x, ` +
    `peak RSS ${mb(Math.max(...rs.map((r) => r.peakRssBytes)))}, CPU ${fmt((rs[0].cpuUserUs + rs[0].cpuSysUs) / 1e6, 2)} s; ` +
    `sessions ${JSON.stringify(s.sessionsByStatus)}, ${fmt(s.decryptedBytes / 2 ** 20, 1)} MiB decrypted; fixed start-up ${fmt(fixed / 1e6, 0)} ms`);
}
if (counts.some((n) => n > m.nproc)) console.log(`note: more workers than the ${m.nproc} cores of this machine`);

// The machine's own ceiling: N independent single-thread replays (separate processes, nothing
// shared) started together. N x the work in T_N against 1 x the work in T_1 is the best speed-up
// any N-thread design can show here (vCPUs that share a physical core, memory bandwidth, V8's own
// GC/compiler threads).
{
  const { spawn } = await import('node:child_process');
  const child = () => new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [`${ROOT}bench/lib/replay-child.mjs`, values.capture, values.keylog, '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`replay child exit ${code}`))));
  });
  for (const n of counts.filter((x) => x > 1)) {
    // Alternated (one alone, then N at once, ...): this host's speed drifts over minutes, and a
    // block of one kind followed by a block of the other measured the drift (1.92x once).
    const walls = [];
    const one = [];
    for (let i = 0; i < Math.max(3, Number(values.runs)); i++) {
      let t0 = process.hrtime.bigint();
      await child();
      one.push(Number(process.hrtime.bigint() - t0) / 1e9);
      t0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: n }, child));
      walls.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const tn = median(walls), t1 = median(one);
    console.log(`machine ceiling: ${n} independent single-thread replays at once took ${fmt(tn, 3)} s (runs ${walls.map((w) => fmt(w, 3)).join(', ')}); one alone ${fmt(t1, 3)} s (runs ${one.map((w) => fmt(w, 3)).join(', ')}; process start included in both, alternated) -> ${fmt((n * t1) / tn)}x the throughput of one`);
  }
}
