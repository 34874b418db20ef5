#!/usr/bin/env node
// Whole-process A/B: each run is a fresh `node bench/lib/replay-child.mjs` of one build (start-up,
// module loading and key loading included, as a user's `tlsdecrypt replay` pays them), runs
// alternating A, B, B, A, ... so each pair shares the host's load of its moment. Prints each run's
// CPU seconds (user + sys, all threads) and wall time, then per build the median CPU, Gbps per
// CPU-second (capture wire bytes * 8 / CPU seconds) and the median of the per-pair ratios A/B.
//
//   npm run build && node bench/ab-process.mjs BASE_DIR CAPTURE KEYLOG [PAIRS]
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';

const [base, capture, keylog, p] = process.argv.slice(2);
const pairs = Number(p ?? 5);
const here = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const roots = { A: base, B: here };
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
function run(who) {
  const r = spawnSync(process.execPath, [`${roots[who]}/bench/lib/replay-child.mjs`, capture, keylog, '1'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${who}: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  return { cpu: (j.cpuUserUs + j.cpuSysUs) / 1e6, user: j.cpuUserUs / 1e6, sys: j.cpuSysUs / 1e6, wall: j.wallNs / 1e9, bytes: j.stats.bytes, events: j.events, dec: j.stats.decryptedBytes };
}
console.log(`capture ${capture}; A = ${base}, B = ${here}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
run('A'); run('B'); // page cache and disk warm for both
const res = { A: [], B: [] }, ratios = [];
for (let i = 0; i < pairs; i++) {
  const order = i % 2 ? ['B', 'A'] : ['A', 'B'];
  const got = {};
  for (const who of order) {
    got[who] = run(who);
    res[who].push(got[who]);
    const g = got[who];
    console.log(`  ${who}: cpu ${g.cpu.toFixed(3)} s (user ${g.user.toFixed(3)} sys ${g.sys.toFixed(3)}), wall ${g.wall.toFixed(3)} s, ${g.events} events, ${g.dec} bytes decrypted`);
  }
  ratios.push(got.A.cpu / got.B.cpu);
}
for (const who of ['A', 'B']) {
  const cpu = median(res[who].map((x) => x.cpu));
  const bytes = res[who][0].bytes;
  console.log(`${who}: median CPU ${cpu.toFixed(3)} s -> ${((bytes * 8) / cpu / 1e9).toFixed(2)} Gbps per CPU-second; median wall ${median(res[who].map((x) => x.wall)).toFixed(3)} s`);
}
console.log(`CPU A/B per pair: ${ratios.map((r) => r.toFixed(3)).join(' ')}; median ${median(ratios).toFixed(3)}; load after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
