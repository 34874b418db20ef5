// Cost of the wire-text rule (src/events/text.ts) that the event builder applies to every event:
// the events of every fixture (replayed once), cleaned again and again; µs per event, set against
// the per-session CPU cost in RESULTS.md. Usage: npm run build && node bench/wiretext.mjs [ROUNDS]
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cleanWireStrings } from '../dist/src/events/text.js';

const rounds = Number(process.argv[2] ?? 200);
const events = [];
for (const top of ['fixtures/https', 'fixtures/ftp', 'fixtures/smtp', 'fixtures/detect']) {
  for (const d of readdirSync(top)) {
    const cap = join(top, d, 'capture.pcap');
    if (!existsSync(cap)) continue;
    const keys = join(top, d, 'keys.log');
    const out = execFileSync(process.execPath, ['dist/src/cli.js', 'replay', cap, '-q', ...(existsSync(keys) ? ['--keylog', keys] : [])], { encoding: 'utf8', maxBuffer: 1 << 28 });
    for (const l of out.split('\n')) if (l) events.push(l);
  }
}
const bytes = events.reduce((n, l) => n + l.length, 0);
const copies = events.map((l) => JSON.parse(l));
let t = 0;
for (let r = 0; r < rounds; r++) {
  const batch = copies.map((e) => structuredClone(e)); // fresh objects, as the builder gets
  const t0 = process.cpuUsage();
  for (const e of batch) cleanWireStrings(e);
  const d = process.cpuUsage(t0);
  t += d.user + d.system;
}
const per = t / (rounds * events.length);
console.log(`${events.length} events (${(bytes / events.length).toFixed(0)} bytes of JSON each on average), ${rounds} rounds: ${per.toFixed(2)} µs CPU per event for cleanWireStrings`);
