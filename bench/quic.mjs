#!/usr/bin/env node
// Bulk HTTP/3 download replay (issue 14) against tshark on the same capture and key log.
//
//   npm run build
//   sudo env BULK_MB=40 BULK_OUT=$PWD/.cache/bench/quic-bulk scripts/fixtures/make-quic.sh bulk
//   node bench/quic.mjs [--runs N] [--tshark-runs N] [--reps N] [--capture F --keylog K]
//
// Each tlsdecrypt run is a fresh node process replaying the capture through the whole pipeline
// (events to /dev/null); it reports the CPU time of the replay call itself (process.cpuUsage
// around it: module loading excluded) and of the whole process (both for its first replay), and
// the CPU time of `--reps`-1 more replays in the same process (warm: a long-running engine). tshark runs are alternated with
// ours; tshark is made to decrypt every packet (`-Y quic.stream.stream_id` needs the decrypted
// frames) and its CPU time is read from /usr/bin/time. Gbps = capture wire bytes * 8 / seconds.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

if (process.argv[2] === '--child') {
  const dist = new URL('../dist/src/', import.meta.url);
  const { replay } = await import(new URL('pipeline/replay.js', dist).href);
  const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);
  const [, , , capture, keylog, reps] = process.argv;
  // the first replay is the figure (a fresh process); later ones in the same process show the
  // steady state of a long-running engine (JIT-compiled code, grown heap)
  const warmCpuUs = [];
  let first;
  for (let i = 0; i < Number(reps ?? 1); i++) {
    const out = await NdjsonWriter.toFile('/dev/null');
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const stats = await replay({ capture, keylogs: [keylog], rsaKeys: [], engine: {} }, out);
    await out.close();
    const wallNs = Number(process.hrtime.bigint() - t0);
    const c = process.cpuUsage(c0);
    if (i === 0) {
      const ru = process.resourceUsage();
      first = { wallNs, cpuUs: c.user + c.system, processCpuUs: ru.userCPUTime + ru.systemCPUTime, events: out.count, stats };
    } else warmCpuUs.push(c.user + c.system);
  }
  process.stdout.write(JSON.stringify({ ...first, warmCpuUs }) + '\n');
  process.exit(0);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '5' }, 'tshark-runs': { type: 'string', default: '2' },
  // replays per tlsdecrypt process: the 2nd.. are the warm (steady-state) figure
  reps: { type: 'string', default: '3' },
  capture: { type: 'string', default: `${ROOT}.cache/bench/quic-bulk/capture.pcap` },
  keylog: { type: 'string', default: `${ROOT}.cache/bench/quic-bulk/keys.log` },
} });
const { printMachine, waitQuiet, fmt, median } = await import('./lib/common.mjs');
printMachine();
waitQuiet();
console.log(`input: ${values.capture} (${readFileSync(values.capture).length} bytes)`);

function ours() {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', values.capture, values.keylog, values.reps], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}
function tshark() {
  const tf = `${tmpdir()}/tlsdecrypt-quic-bench-time.txt`;
  const args = ['-f', '%U %S %e', '-o', tf, 'tshark', '-n', '-r', values.capture, '-o', `tls.keylog_file:${values.keylog}`, '-Y', 'quic.stream.stream_id', '-T', 'fields', '-e', 'frame.number'];
  const r = spawnSync('/usr/bin/time', args, { encoding: 'utf8', timeout: 1_800_000, maxBuffer: 1 << 28 });
  const [u, s, e] = readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { cpu: u + s, wall: e, frames: r.stdout.split('\n').filter(Boolean).length };
}

const a = [], b = [];
const n = Number(values.runs), nt = Number(values['tshark-runs']);
for (let i = 0; i < Math.max(n, nt); i++) {
  if (i < n) {
    const r = ours();
    a.push(r);
    console.log(`  tlsdecrypt run ${i + 1}: ${fmt(r.wallNs / 1e9, 3)} s wall, replay CPU ${fmt(r.cpuUs / 1e6, 3)} s, process CPU ${fmt(r.processCpuUs / 1e6, 3)} s` + (r.warmCpuUs.length ? `; same process again: replay CPU ${r.warmCpuUs.map((u) => fmt(u / 1e6, 3)).join(', ')} s` : ''));
  }
  if (i < nt) {
    const t = tshark();
    b.push(t);
    console.log(`  tshark run ${i + 1}: ${fmt(t.wall, 2)} s wall, CPU ${fmt(t.cpu, 2)} s, ${t.frames} frames with STREAM data`);
  }
}
const s = a[0].stats;
const bits = s.bytes * 8;
const cpu = median(a.map((r) => r.cpuUs / 1e6));
const pcpu = median(a.map((r) => r.processCpuUs / 1e6));
const wall = median(a.map((r) => r.wallNs / 1e9));
const tcpu = median(b.map((t) => t.cpu));
const twall = median(b.map((t) => t.wall));
console.log(`capture: ${s.packets} packets, ${s.bytes} wire bytes; sessions ${JSON.stringify(s.sessionsByStatus)}, ${s.decryptedBytes} bytes decrypted, ${a[0].events} events`);
console.log(`tlsdecrypt (median of ${a.length}): ${fmt(bits / cpu / 1e9, 3)} Gbps per replay CPU-second (${fmt(cpu, 3)} s), ${fmt(bits / pcpu / 1e9, 3)} Gbps per process CPU-second (${fmt(pcpu, 3)} s), ${fmt(bits / wall / 1e9, 3)} Gbps wall (${fmt(wall, 3)} s)`);
const warm = a.flatMap((r) => r.warmCpuUs.slice(-1));
if (warm.length) console.log(`tlsdecrypt warm (the last replay of each process, median of ${warm.length}): ${fmt(bits / (median(warm) / 1e6) / 1e9, 3)} Gbps per replay CPU-second (${fmt(median(warm) / 1e6, 3)} s)`);
if (b.length) {
  console.log(`tshark (median of ${b.length}): ${fmt(bits / tcpu / 1e9, 3)} Gbps per CPU-second (${fmt(tcpu, 2)} s), ${fmt(twall, 2)} s wall`);
  console.log(`ratio: ${fmt(tcpu / pcpu, 1)}x tshark in CPU time (process), ${fmt(tcpu / cpu, 1)}x (replay call), ${fmt(twall / wall, 1)}x in wall time`);
}
