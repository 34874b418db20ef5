// Replays every committed fixture capture with a build's dist/ and writes each one's events
// (NDJSON) and engine stats to OUTDIR, so two builds' outputs can be diffed byte for byte:
//   node bench/lib/fixture-outputs.mjs ROOT OUTDIR [--alerts all]
//   diff -r OUT_A OUT_B
// Keys: the fixture's keys.log and any server.key / server.pkcs8.pem (RSA key exchange).
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [root, outDir, flag, value] = process.argv.slice(2);
const all = flag === '--alerts' && value === 'all';
const { replay } = await import(new URL(`file://${root}/dist/src/pipeline/replay.js`).href);
const { NdjsonWriter } = await import(new URL(`file://${root}/dist/src/pipeline/output.js`).href);
const fixtures = new URL('../../fixtures/', import.meta.url).pathname;
const dirs = [];
(function walk(d) {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e === 'capture.pcap' || e === 'capture.pcapng') dirs.push([d, p]);
  }
})(fixtures);
mkdirSync(outDir, { recursive: true });
for (const [d, capture] of dirs.sort()) {
  const name = d.slice(fixtures.length).replaceAll('/', '__');
  const keylogs = existsSync(join(d, 'keys.log')) ? [join(d, 'keys.log')] : [];
  const rsaKeys = ['server.key', 'server.pkcs8.pem'].filter((f) => existsSync(join(d, f))).map((f) => ({ path: join(d, f) }));
  const file = join(outDir, `${name}.ndjson`);
  const out = await NdjsonWriter.toFile(file);
  let stats;
  try {
    stats = await replay({ capture, keylogs, rsaKeys, engine: all ? { detect: { threshold: { enabled: false } } } : {} }, out);
  } catch (e) {
    stats = { error: String(e.message) };
  }
  await out.close();
  writeFileSync(join(outDir, `${name}.stats.json`), JSON.stringify(stats, null, 1) + '\n');
}
console.log(`${dirs.length} fixture captures -> ${outDir}`);
