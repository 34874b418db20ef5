#!/usr/bin/env node
// Worker scaling: the same capture replayed with --workers 1, 2, ... (src/pipeline/fanout.ts: the
// main thread reads and frames the capture once and dispatches each host pair's packets in
// batches to N engine threads).
//
//   npm run build && node bench/scaling.mjs [--workers 1,2] [--runs 3] [--capture F --keylog K]
//                                           [--stdin] [--independent 2,4] [--parts LIST] [--compare-with DIR]
//   --stdin         also `replay - --workers N` for each N (the capture piped in by `cat`), alternated with the file runs
//   --independent   the N for which N independent processes are measured (default: every N > 1 of --workers)
//   --parts         which parts to run, of split,workers,ceiling,independent,compare (default: all;
//                   compare only with --compare-with)
// Every throughput is printed in Gbps (capture bytes on disk x 8 / wall seconds) with its ratio to
// one engine (`replay FILE --workers 1`, median of the runs alternated with it).
//
// Each run is a fresh process, and the kinds of run take turns (1, 2, 1, 2, ...): this host's
// speed drifts over minutes, so a block of one kind then a block of the other measures the drift.
// Reported, all from runs alternated in this one invocation:
//  - `replay --workers N` for each N: median wall time, Gbps, speed-up over --workers 1, CPU;
//  - the dispatcher's own ceiling: the reader, framing, routing and batching with N engine threads
//    that drop every batch (bench/lib/dispatch-child.mjs), against one engine (--workers 1), by
//    wall time and by CPU time (the steadier one on a shared host);
//  - for each N > 1: N independent single-engine replays at once against one alone and against
//    `replay --workers N` (what N cores give to separate processes);
//  - with --compare-with DIR (another checkout, built): this build against DIR's for each
//    --workers N, alternated (the single-engine path must not get slower; sharding designs A/B),
//    and (with the ceiling part) both builds' dispatcher ceilings alternated with one engine.
// Shard start-up is inside the measured time of `--workers N`; the fixed cost of starting N
// engines is printed separately (replay of a 40 KB fixture).
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { CACHE, ROOT, fmt, mb, median, need, needBuild, printMachine, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '1,2' }, runs: { type: 'string', default: '3' },
  capture: { type: 'string', default: `${CACHE}/bulk.pcap` }, keylog: { type: 'string', default: `${CACHE}/bulk.keys.log` },
  'compare-with': { type: 'string' }, stdin: { type: 'boolean', default: false }, independent: { type: 'string' },
  parts: { type: 'string', default: 'split,workers,ceiling,independent,compare' },
} });
const parts = new Set(values.parts.split(','));
needBuild();
need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
const m = printMachine();
waitQuiet();
console.log(`input: ${values.capture}`);
if (parts.has('split')) {
  // How this capture's bytes split over N shards (the ceiling on speed-up): as replay assigns them
  // (least-loaded host pair at first sight, src/pipeline/sharded.ts) and as plain hash % N would.
  const { readFileSync } = await import('node:fs');
  const { CaptureReader } = await import(new URL('../dist/src/capture/index.js', import.meta.url).href);
  const { packetHash } = await import(new URL('../dist/src/pipeline/flowHash.js', import.meta.url).href);
  const { newDecodedPacket } = await import(new URL('../dist/src/decode/index.js', import.meta.url).href);
  const scratch = newDecodedPacket();
  const { ShardAssigner } = await import(new URL('../dist/src/pipeline/sharded.js', import.meta.url).href);
  // (as packetRouter does: the host-pair hash, least-loaded at first sight)
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
const captureBytes = statSync(values.capture).size;
const gbpsOf = (seconds) => (captureBytes * 8) / seconds / 1e9;
const cpuS = (r) => (r.cpuUserUs + r.cpuSysUs) / 1e6;
/** One engine reading the file: the unit every ratio below is taken against (median wall seconds of runs alternated with the others). */
let oneEngine;
const vsOne = (seconds) => (oneEngine ? `, ${fmt(oneEngine / seconds)}x one engine` : '');
if (parts.has('workers')) {
  const kinds = counts.flatMap((n) => (values.stdin ? [[n, false], [n, true]] : [[n, false]]));
  const runs = new Map(kinds.map((k) => [k.join(), []]));
  for (let i = 0; i < Number(values.runs); i++) for (const [n, stdin] of kinds) runs.get(`${n},${stdin}`).push(runReplay(values.capture, values.keylog, n, [], stdin));
  if (counts[0] === 1) oneEngine = median(runs.get('1,false').map((r) => r.wallNs)) / 1e9;
  for (const [n, stdin] of kinds) {
    const fixed = stdin ? undefined : median([0, 1, 2].map(() => runReplay(small, smallKeys, n).wallNs));
    const rs = runs.get(`${n},${stdin}`);
    const t = median(rs.map((r) => r.wallNs)) / 1e9;
    const s = rs[0].stats;
    console.log(`replay ${stdin ? '-' : 'FILE'} --workers ${n}: ${fmt(t, 3)} s (runs ${rs.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), ${fmt(gbpsOf(t))} Gbps${vsOne(t)}, ` +
      `peak RSS ${mb(Math.max(...rs.map((r) => r.peakRssBytes)))}, CPU ${fmt(median(rs.map(cpuS)), 2)} s; ` +
      `sessions ${JSON.stringify(s.sessionsByStatus)}, ${fmt(s.decryptedBytes / 2 ** 20, 1)} MiB decrypted` + (fixed === undefined ? '' : `; fixed start-up ${fmt(fixed / 1e6, 0)} ms`));
  }
  if (counts.some((n) => n > m.nproc)) console.log(`note: more workers than the ${m.nproc} cores of this machine`);
}

// The dispatcher's own ceiling: N engine threads that drop every batch, alternated with one engine.
if (parts.has('ceiling')) {
  const dispatchRun = (n) => {
    const r = spawnSync(process.execPath, [`${ROOT}bench/lib/dispatch-child.mjs`, values.capture, values.keylog, String(n)], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`dispatch child failed (${r.status ?? r.signal}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  const n = Math.max(2, ...counts);
  const disp = [];
  const one = [];
  for (let i = 0; i < Math.max(3, Number(values.runs)); i++) {
    disp.push(dispatchRun(n));
    one.push(runReplay(values.capture, values.keylog, 1));
  }
  const td = median(disp.map((r) => r.wallNs)) / 1e9, t1 = median(one.map((r) => r.wallNs)) / 1e9;
  const cd = median(disp.map(cpuS)), c1 = median(one.map(cpuS));
  console.log(`dispatcher ceiling (reader + framing + routing + indexes into shared chunks to ${n} engines that drop them; capture file ${fmt(captureBytes / 1e6, 0)} MB on disk): ` +
    `${fmt(td, 3)} s = ${fmt(gbpsOf(td))} Gbps (runs ${disp.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), CPU ${fmt(cd, 2)} s = ${fmt(gbpsOf(cd))} Gbps per CPU-second`);
  console.log(`  one engine (replay --workers 1), alternated with it: ${fmt(t1, 3)} s = ${fmt(gbpsOf(t1))} Gbps (runs ${one.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), CPU ${fmt(c1, 2)} s`);
  // the dispatching thread's own CPU: what bounds the process on a machine with a core per engine
  const cm = disp[0].dispatcherCpuNs === undefined ? undefined : median(disp.map((r) => r.dispatcherCpuNs)) / 1e9;
  console.log(`  -> the dispatcher is ${fmt(t1 / td)}x one engine by wall time, ${fmt(c1 / cd)}x by process CPU time` +
    (cm === undefined ? '' : `, ${fmt(c1 / cm)}x by the dispatching thread's CPU (${fmt(cm, 3)} s = ${fmt(gbpsOf(cm))} Gbps per CPU-second)`) + ' (target >= 5x)');
  oneEngine ??= t1;
}

// The machine's own ceiling: N independent single-thread replays (separate processes, nothing
// shared) started together, alternated with one alone and with `replay --workers N`. N x the work
// in T_N against 1 x the work in T_1 is the best speed-up any N-engine design can show here (vCPUs
// that share a physical core, memory bandwidth, V8's own GC/compiler threads).
if (parts.has('independent')) {
  const { spawn } = await import('node:child_process');
  const child = (workers) => new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [`${ROOT}bench/lib/replay-child.mjs`, values.capture, values.keylog, String(workers)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`replay child exit ${code}`))));
  });
  const timed = async (f) => {
    const t0 = process.hrtime.bigint();
    await f();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  for (const n of (values.independent ?? values.workers).split(',').map(Number).filter((x) => x > 1)) {
    const walls = [], one = [], sharded = [];
    for (let i = 0; i < Math.max(3, Number(values.runs)); i++) {
      one.push(await timed(() => child(1)));
      walls.push(await timed(() => Promise.all(Array.from({ length: n }, () => child(1)))));
      sharded.push(await timed(() => child(n)));
    }
    const tn = median(walls), t1 = median(one), ts = median(sharded);
    const list = (xs) => xs.map((w) => fmt(w, 3)).join(', ');
    console.log(`machine ceiling: ${n} independent single-engine replays at once ${fmt(tn, 3)} s = ${fmt(n * gbpsOf(tn))} Gbps together (runs ${list(walls)}); ` +
      `one alone ${fmt(t1, 3)} s = ${fmt(gbpsOf(t1))} Gbps (runs ${list(one)}); replay --workers ${n} ${fmt(ts, 3)} s = ${fmt(gbpsOf(ts))} Gbps (runs ${list(sharded)}); ` +
      `process start included in all, alternated -> independent processes ${fmt((n * t1) / tn)}x one, --workers ${n} ${fmt(t1 / ts)}x one`);
  }
}

// This build against another checkout's build (e.g. main before a change), alternated: the single
// engine (must not get slower) and each --workers N (the other build's sharding design against this one).
if (values['compare-with'] && parts.has('compare')) {
  const other = values['compare-with'].replace(/\/?$/, '/');
  need(`${other}dist/src/pipeline/replay.js`, `build ${other} first`);
  const runOther = (n) => {
    const r = spawnSync(process.execPath, [`${other}bench/lib/replay-child.mjs`, values.capture, values.keylog, String(n)], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`replay child of ${other} failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  if (parts.has('ceiling')) {
    // the dispatcher ceiling of both builds, alternated with each other and with one engine (this build's)
    const dispatchOf = (dir) => {
      const r = spawnSync(process.execPath, [`${dir}bench/lib/dispatch-child.mjs`, values.capture, values.keylog, String(Math.max(2, ...counts))], { encoding: 'utf8', timeout: 600_000 });
      if (r.status !== 0) throw new Error(`dispatch child of ${dir} failed: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop());
    };
    const theirs = [], ours = [], one = [];
    for (let i = 0; i < Math.max(5, Number(values.runs)); i++) {
      theirs.push(dispatchOf(other));
      ours.push(dispatchOf(ROOT));
      one.push(runReplay(values.capture, values.keylog, 1));
    }
    const t1 = median(one.map((r) => r.wallNs)) / 1e9, c1 = median(one.map(cpuS));
    const show = (rs) => {
      const w = median(rs.map((r) => r.wallNs)) / 1e9, c = median(rs.map(cpuS)), m = median(rs.map((r) => r.dispatcherCpuNs)) / 1e9;
      return `${fmt(w, 3)} s = ${fmt(gbpsOf(w))} Gbps (runs ${rs.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), process CPU ${fmt(c, 3)} s, dispatching thread ${fmt(m, 3)} s -> ` +
        `${fmt(t1 / w)}x one engine by wall time, ${fmt(c1 / c)}x by process CPU, ${fmt(c1 / m)}x by the thread's CPU`;
    };
    console.log(`dispatcher ceiling, this build vs ${other}, alternated with one engine (${fmt(t1, 3)} s = ${fmt(gbpsOf(t1))} Gbps, CPU ${fmt(c1, 2)} s):`);
    console.log(`  this build: ${show(ours)}`);
    console.log(`  ${other}: ${show(theirs)}`);
  }
  for (const n of counts) {
    const theirs = [], ours = [];
    for (let i = 0; i < Math.max(5, Number(values.runs)); i++) {
      theirs.push(runOther(n));
      ours.push(runReplay(values.capture, values.keylog, n));
    }
    const tt = median(theirs.map((r) => r.wallNs)) / 1e9, to = median(ours.map((r) => r.wallNs)) / 1e9;
    const ct = median(theirs.map(cpuS)), co = median(ours.map(cpuS));
    console.log(`--workers ${n}, this build vs ${other}: ${fmt(to, 3)} s vs ${fmt(tt, 3)} s (runs ${ours.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')} vs ${theirs.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')}), ` +
      `CPU ${fmt(co, 2)} s vs ${fmt(ct, 2)} s -> this build ${fmt((100 * (tt - to)) / tt, 1)} % faster by wall time, ${fmt((100 * (ct - co)) / ct, 1)} % by CPU time`);
  }
}
