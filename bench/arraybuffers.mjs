#!/usr/bin/env node
// Memory outside the V8 heap during one replay: every N events, after a full GC, the ArrayBuffer
// bytes still allocated (process.memoryUsage().arrayBuffers) and the heap. A small Buffer is a
// slice of node's shared 8 KiB pool and keeps the whole pool alive: state kept per session (key-log
// secrets once decoded, resumption master secrets) that was made from the pool pinned ~8 KiB per
// session (bench/RESULTS.md, round 9). Backing stores are released by a background thread after
// the GC, so a figure may still count some just freed: compare builds, not absolute bytes.
//
//   npm run build && node --expose-gc bench/arraybuffers.mjs CAPTURE KEYLOG [EVERY] [DIST_DIR]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [capture, keylog, every, distDir] = process.argv.slice(2);
if (!capture || typeof globalThis.gc !== 'function') {
  console.error('usage: node --expose-gc bench/arraybuffers.mjs CAPTURE KEYLOG [EVERY_EVENTS] [DIST_DIR]');
  process.exit(2);
}
const dist = distDir ? pathToFileURL(resolve(distDir) + '/') : new URL('../dist/src/', import.meta.url);
const { replay } = await import(new URL('pipeline/replay.js', dist).href);
const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);
const out = await NdjsonWriter.toFile('/dev/null');
const write = out.write.bind(out);
const step = Number(every ?? 8000);
let n = 0;
const mb = (b) => (b / 2 ** 20).toFixed(1);
out.write = (ev) => {
  write(ev);
  if (++n % step !== 0) return;
  globalThis.gc();
  const m = process.memoryUsage();
  console.log(`${n} events: arrayBuffers ${mb(m.arrayBuffers)} MiB, heap used ${mb(m.heapUsed)} MiB, rss ${mb(m.rss)} MiB`);
};
await replay({ capture, keylogs: keylog ? [keylog] : [], rsaKeys: [], engine: {} }, out);
await out.close();
