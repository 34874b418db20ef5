#!/usr/bin/env node
// Paired steady-state A/B in ONE process: two builds' replay modules loaded side by side, each
// warmed up, then passes over the same capture alternating A, B, B, A, ... Each pair shares the
// machine's load of its moment, so the per-pair ratio B/A says what the code changed, without
// the start-up and warm-up that dominate a short process (bench/warmup.mjs) and with less of a
// shared host's drift than separate processes.
//
//   npm run build && node bench/ab-steady.mjs BASE_DIR CAPTURE KEYLOG [PAIRS] [WARMUP]
const [base, capture, keylog, p, w] = process.argv.slice(2);
const pairs = Number(p ?? 6), warm = Number(w ?? 2);
const load = async (root) => ({
  replay: (await import(new URL(`file://${root}/dist/src/pipeline/replay.js`).href)).replay,
  Writer: (await import(new URL(`file://${root}/dist/src/pipeline/output.js`).href)).NdjsonWriter,
});
const here = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const builds = { A: await load(base), B: await load(here) };
async function pass(who) {
  const { replay, Writer } = builds[who];
  const out = await Writer.toFile('/dev/null');
  const a = process.cpuUsage();
  const stats = await replay({ capture, keylogs: [keylog], rsaKeys: [], engine: {} }, out);
  await out.close();
  const u = process.cpuUsage(a);
  return { cpu: (u.user + u.system) / 1e6, sessions: stats.tlsFlows, events: out.count };
}
for (let i = 0; i < warm; i++) for (const who of ['A', 'B']) await pass(who);
const ratios = [], cpu = { A: [], B: [] };
let sessions = 0;
for (let i = 0; i < pairs; i++) {
  const order = i % 2 ? ['B', 'A'] : ['A', 'B'];
  const r = {};
  for (const who of order) {
    const x = await pass(who);
    r[who] = x.cpu;
    cpu[who].push(x.cpu);
    sessions = x.sessions;
  }
  ratios.push(r.B / r.A);
  console.log(`pair ${i + 1}: A ${r.A.toFixed(3)} s, B ${r.B.toFixed(3)} s, B/A ${(r.B / r.A).toFixed(3)}`);
}
const med = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
console.log(`${capture}: ${sessions} sessions; median CPU per pass A ${med(cpu.A).toFixed(3)} s (${((med(cpu.A) / sessions) * 1e6).toFixed(0)} us/session), B ${med(cpu.B).toFixed(3)} s (${((med(cpu.B) / sessions) * 1e6).toFixed(0)} us/session); median B/A ${med(ratios).toFixed(3)}`);
