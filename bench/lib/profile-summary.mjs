#!/usr/bin/env node
// Sums self time per function (name + file:line) from a V8 .cpuprofile (node --cpu-prof).
//   node bench/lib/profile-summary.mjs FILE.cpuprofile [TOP]
// Several profiles (one per thread of a --workers run) are summarised one after the other:
//   node bench/lib/profile-summary.mjs DIR/*.cpuprofile [TOP]
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
const args = process.argv.slice(2);
const files = args.filter((a) => a.endsWith('.cpuprofile'));
if (files.length > 1) {
  const rest = args.filter((a) => !a.endsWith('.cpuprofile'));
  for (const f of files) {
    console.log(`== ${f}`);
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), f, ...rest], { stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  process.exit(0);
}
const [file, topArg] = args;
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = p.timeDeltas;
let total = 0;
for (let i = 0; i < p.samples.length; i++) {
  const n = byId.get(p.samples[i]);
  const d = dt[i] ?? 0;
  total += d;
  const cf = n.callFrame;
  const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + d);
}
const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 30));
console.log(`total ${(total / 1000).toFixed(1)} ms`);
for (const [k, v] of top) console.log(`${(v / 1000).toFixed(1).padStart(9)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);

// Inclusive time of named functions (PROFILE_INCLUSIVE=name1,name2): samples whose stack contains
// the function (counted once per sample even under recursion).
if (process.env.PROFILE_INCLUSIVE) {
  const names = process.env.PROFILE_INCLUSIVE.split(',');
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map(names.map((x) => [x, 0]));
  for (let i = 0; i < p.samples.length; i++) {
    const seen = new Set();
    for (let id = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const fn = byId.get(id).callFrame.functionName;
      if (incl.has(fn) && !seen.has(fn)) { seen.add(fn); incl.set(fn, incl.get(fn) + (dt[i] ?? 0)); }
    }
  }
  console.log('inclusive:');
  for (const [k, v] of incl) console.log(`${(v / 1000).toFixed(1).padStart(9)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
}
