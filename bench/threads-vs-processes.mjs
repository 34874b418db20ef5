#!/usr/bin/env node
// Engine threads of one process against engines in processes of their own, at N = 2 (issue 17):
// is an engine thread more expensive per byte than the same engine alone in a process?
//
//   npm run build && node bench/threads-vs-processes.mjs [--capture F --keylog K] [--runs 3]
//
// The capture is split once into its two shards as `replay --workers 2` assigns them (host pairs,
// least-loaded at first sight: src/pipeline/sharded.ts), written next to it as F.shard0/1.pcap.
// Then, alternated, each a fresh process (or two):
//   threads   `replay F --workers 2`: one dispatcher thread, two engine threads;
//   processes two single-engine replays at once, one per shard file (the same packets per engine);
// Each child reports its threads' CPU from /proc/self/task/TID/stat (utime, stime), minor faults
// and voluntary / involuntary context switches (/proc/self/task/TID/status), grouped: the main
// thread (the dispatcher, or the single engine), the engine threads (threads started by the pool),
// and the others (V8's compiler and GC threads, libuv's file-read threads). Node 20 has no
// process.threadCpuUsage (added in 23.9), hence /proc.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { CACHE, ROOT, fmt, median, need, needBuild, printMachine } from './lib/common.mjs';

const TICK = 100; // clock ticks per second (Linux)

/** Every thread of this process now: tid -> counters. */
function threads() {
  const m = new Map();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const st = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const s = readFileSync(`/proc/self/task/${t}/status`, 'utf8');
      const num = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
      m.set(Number(t), { user: Number(f[11]) / TICK, sys: Number(f[12]) / TICK, minflt: Number(f[7]), vcs: num('voluntary_ctxt_switches'), ncs: num('nonvoluntary_ctxt_switches') });
    } catch {
      // the thread ended meanwhile
    }
  }
  return m;
}

async function child(capture, keylog, workers) {
  const dist = new URL('../dist/src/', import.meta.url);
  const { replay } = await import(new URL('pipeline/replay.js', dist).href);
  const { EnginePool, replayFanout } = await import(new URL('pipeline/fanout.js', dist).href);
  const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);
  const out = await NdjsonWriter.toFile('/dev/null');
  const opts = { capture, keylogs: [keylog], rsaKeys: [], engine: {} };
  await readFile(keylog); // libuv's thread pool is up
  const beforePool = new Set(threads().keys());
  const t0 = process.hrtime.bigint();
  let stats;
  if (workers > 1) {
    const pool = new EnginePool(workers);
    try {
      stats = await replayFanout(opts, out, pool);
    } finally {
      var end = threads(); // before the engine threads end
      await pool.close();
    }
  } else {
    stats = await replay(opts, out);
    end = threads();
  }
  const wallNs = Number(process.hrtime.bigint() - t0);
  await out.close();
  // (libuv's file-read threads are already running at start: the ES module loader reads with them)
  const group = (tid) => (tid === process.pid ? 'main' : beforePool.has(tid) ? 'other' : 'engines');
  const groups = {};
  for (const [tid, c] of end) {
    const g = (groups[group(tid)] ??= { threads: 0, user: 0, sys: 0, minflt: 0, vcs: 0, ncs: 0 });
    g.threads++;
    for (const k of ['user', 'sys', 'minflt', 'vcs', 'ncs']) g[k] += c[k];
  }
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  process.stdout.write(JSON.stringify({ wallNs, decrypted: stats.decryptedBytes, sessions: stats.sessionsByStatus, groups, peakRssMb: Number(hwm?.[1] ?? 0) / 1024 }) + '\n');
}

/** Writes the capture's two shards (as replay --workers 2 assigns host pairs) as two pcap files. */
async function split(capture, files) {
  const { CaptureReader } = await import(new URL('../dist/src/capture/index.js', import.meta.url).href);
  const { packetRouter } = await import(new URL('../dist/src/pipeline/sharded.js', import.meta.url).href);
  const buf = readFileSync(capture);
  if (buf.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${capture}: little-endian microsecond pcap expected`);
  const route = packetRouter(2);
  const parts = [[buf.subarray(0, 24)], [buf.subarray(0, 24)]];
  let off = 24;
  const r = new CaptureReader({
    packet(p) {
      // records are framed in order: the record of this packet starts at `off`
      const len = 16 + p.data.length;
      parts[route(p)].push(buf.subarray(off, off + len));
      off += len;
    },
    secrets() {}, anomaly() {},
  });
  r.push(buf);
  r.end();
  files.forEach((f, i) => writeFileSync(f, Buffer.concat(parts[i])));
}

const { values } = parseArgs({ options: {
  child: { type: 'boolean', default: false },
  capture: { type: 'string', default: `${CACHE}/bulk.pcap` }, keylog: { type: 'string', default: `${CACHE}/bulk.keys.log` },
  workers: { type: 'string', default: '1' }, runs: { type: 'string', default: '3' },
}, allowPositionals: true });

if (values.child) {
  await child(values.capture, values.keylog, Number(values.workers));
} else {
  needBuild();
  need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
  printMachine();
  const shards = [0, 1].map((i) => values.capture.replace(/\.pcap$/, `.shard${i}.pcap`));
  if (!shards.every((f) => existsSync(f) && statSync(f).mtimeMs > statSync(values.capture).mtimeMs)) await split(values.capture, shards);
  const bytes = statSync(values.capture).size;
  console.log(`input: ${values.capture} (${fmt(bytes / 1e6, 0)} MB), shards ${shards.map((f) => `${fmt(statSync(f).size / 1e6, 0)} MB`).join(' + ')}`);
  const run = (capture, workers) => new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [new URL(import.meta.url).pathname, '--child', '--capture', capture, '--keylog', values.keylog, '--workers', String(workers)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`child exit ${code}`))));
  });
  const timed = async (f) => {
    const t0 = process.hrtime.bigint();
    const r = await f();
    return { wall: Number(process.hrtime.bigint() - t0) / 1e9, r };
  };
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const th = [], pr = [];
  for (let i = 0; i < Number(values.runs); i++) {
    const l0 = load();
    th.push(await timed(async () => [await run(values.capture, 2)]));
    pr.push(await timed(() => Promise.all(shards.map((f) => run(f, 1)))));
    console.log(`run ${i + 1}: threads ${fmt(th[i].wall, 3)} s, processes ${fmt(pr[i].wall, 3)} s (load ${l0})`);
  }
  /** Per kind of run: median over runs of each group's counters, summed over the run's processes. */
  const summary = (runs, label) => {
    const names = ['main', 'engines', 'other'];
    const per = (run, g, k) => run.r.reduce((a, p) => a + (p.groups[g]?.[k] ?? 0), 0);
    const cpu = (run, g) => per(run, g, 'user') + per(run, g, 'sys');
    const total = (run) => names.reduce((a, g) => a + cpu(run, g), 0);
    const wall = median(runs.map((r) => r.wall));
    console.log(`${label}: wall ${fmt(wall, 3)} s = ${fmt((bytes * 8) / wall / 1e9)} Gbps; CPU ${fmt(median(runs.map(total)), 2)} s ` +
      `(${fmt(median(runs.map((r) => names.reduce((a, g) => a + per(r, g, 'user'), 0))), 2)} user, ${fmt(median(runs.map((r) => names.reduce((a, g) => a + per(r, g, 'sys'), 0))), 2)} sys); ` +
      `peak RSS ${runs[0].r.map((p) => `${fmt(p.peakRssMb, 0)} MB`).join(' + ')}; decrypted ${fmt(runs[0].r.reduce((a, p) => a + p.decrypted, 0) / 2 ** 20, 1)} MiB`);
    for (const g of names) {
      if (!runs[0].r.some((p) => p.groups[g])) continue;
      const m = (k) => median(runs.map((r) => per(r, g, k)));
      console.log(`  ${g.padEnd(8)} ${runs[0].r.map((p) => p.groups[g]?.threads ?? 0).join('+')} threads: CPU ${fmt(m('user') + m('sys'), 3)} s (user ${fmt(m('user'), 2)}, sys ${fmt(m('sys'), 2)}), ` +
        `${fmt(((m('user') + m('sys')) * 1e9) / bytes, 3)} s per GB; minor faults ${fmt(m('minflt'), 0)}, ctx switches ${fmt(m('vcs'), 0)} voluntary / ${fmt(m('ncs'), 0)} involuntary`);
    }
    return { engineCpu: median(runs.map((r) => cpu(r, r.r.length > 1 ? 'main' : 'engines'))) };
  };
  const a = summary(th, '`replay --workers 2` (1 process: dispatcher + 2 engine threads)');
  const b = summary(pr, '2 independent single-engine replays of the two shards (2 processes at once)');
  console.log(`-> engine CPU for the same packets: threads ${fmt(a.engineCpu, 3)} s vs processes' main threads ${fmt(b.engineCpu, 3)} s ` +
    `(these also read and frame their shard) = ${fmt(a.engineCpu / b.engineCpu)}x`);
}
void ROOT;
