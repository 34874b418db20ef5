// One measured replay in a fresh process (so peak RSS belongs to this run only).
//   node bench/lib/replay-child.mjs CAPTURE KEYLOG WORKERS
// Prints one JSON line: wall time of the replay call (key loading + worker start-up included),
// engine stats, peak RSS (VmHWM of this process, engine threads included) and CPU time (all
// threads; child processes' too, for builds that ran shards as processes).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../../dist/src/', import.meta.url);
const { replay } = await import(new URL('pipeline/replay.js', dist).href);
const { replaySharded } = await import(new URL('pipeline/fanout.js', dist).href);
const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);

const [capture, keylog, w] = process.argv.slice(2);
const workers = Number(w ?? 1);
const out = await NdjsonWriter.toFile('/dev/null');
const opts = { capture, keylogs: keylog ? [keylog] : [], rsaKeys: [], engine: {} };
const t0 = process.hrtime.bigint();
const stats = workers > 1 ? await replaySharded(opts, out, workers) : await replay(opts, out);
await out.close();
const wallNs = Number(process.hrtime.bigint() - t0);
const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
const ru = process.resourceUsage();
// cutime / cstime of /proc/self/stat (clock ticks, 100 per second on Linux): the shard child
// processes of `replay --workers N`, which have ended by now.
const stat = readFileSync('/proc/self/stat', 'utf8');
const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
const [cu, cs] = [Number(f[13]) * 10_000, Number(f[14]) * 10_000];
process.stdout.write(JSON.stringify({
  wallNs, events: out.count, stats,
  peakRssBytes: hwm ? Number(hwm[1]) * 1024 : ru.maxRSS * 1024,
  cpuUserUs: ru.userCPUTime + cu, cpuSysUs: ru.systemCPUTime + cs,
}) + '\n');
void fileURLToPath;
