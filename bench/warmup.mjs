#!/usr/bin/env node
// Start-up and JIT warm-up against steady state: one process imports the replay modules, then
// replays the same capture N times in a row; each pass's CPU (user + system, process.cpuUsage).
// The first pass pays V8's warm-up (interpreted code, TurboFan compiling ~200 functions, caches
// filling); later passes show what a session costs once the process is warm (as in `run`, or a
// long replay).
//
//   npm run build && node --single-threaded bench/warmup.mjs CAPTURE KEYLOG [PASSES]
//   (run it with the flags of the CLI's shebang to measure what `tlsdecrypt replay` does)
const c0 = process.cpuUsage();
// TLSDECRYPT_DIST: another build's dist/src/ (bench/instructions.mjs --base)
const dist = process.env.TLSDECRYPT_DIST ? new URL(`file://${process.env.TLSDECRYPT_DIST}`) : new URL('../dist/src/', import.meta.url);
const { replay } = await import(new URL('pipeline/replay.js', dist).href);
const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);
const ci = process.cpuUsage();
const [capture, keylog, n] = process.argv.slice(2);
const passes = Number(n ?? 3);
const sec = (u) => (u.user + u.system) / 1e6;
console.log(`node ${process.version} ${process.execArgv.join(' ')}; ${capture}`);
console.log(`process start + module import: ${sec(ci).toFixed(3)} s CPU (node alone to this script: ${sec(c0).toFixed(3)} s)`);
for (let i = 1; i <= passes; i++) {
  const out = await NdjsonWriter.toFile('/dev/null');
  const a = process.cpuUsage();
  const stats = await replay({ capture, keylogs: keylog ? [keylog] : [], rsaKeys: [], engine: {} }, out);
  await out.close();
  const s = sec(process.cpuUsage(a));
  console.log(`pass ${i}: ${s.toFixed(3)} s CPU = ${((s / stats.tlsFlows) * 1e6).toFixed(0)} us per TLS session (${stats.tlsFlows} sessions, ${out.count} events)`);
}
