// The dispatcher of `replay --workers N` alone, in a fresh process: reader + framing + host-pair
// routing + batching + transfer to N engine threads that drop every batch (src/pipeline/fanout.ts,
// `discard`). Its throughput bounds what one replay process can reach with any number of engines.
//   node bench/lib/dispatch-child.mjs CAPTURE KEYLOG ENGINES
// The threads start and load their modules first (a discarded run of a small fixture); then the
// capture is timed. Prints one JSON line: wall time, bytes and packets, CPU of the process (the
// dispatching thread plus the N nearly idle engine threads and the file reads of libuv's threads),
// and of the dispatching thread alone.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** CPU time of this (the dispatching) thread alone, in ns (Linux). */
const threadNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);

const dist = new URL('../../dist/src/', import.meta.url);
const { EnginePool, replayFanout } = await import(new URL('pipeline/fanout.js', dist).href);
const { NdjsonWriter } = await import(new URL('pipeline/output.js', dist).href);

const [capture, keylog, n] = process.argv.slice(2);
const out = await NdjsonWriter.toFile('/dev/null');
const pool = new EnginePool(Number(n ?? 2));
const small = fileURLToPath(new URL('../../fixtures/https/tls13-aes128gcm-h2/capture.pcap', import.meta.url));
await replayFanout({ capture: small, keylogs: [], rsaKeys: [], engine: {} }, out, pool, { discard: true });
const opts = { capture, keylogs: keylog ? [keylog] : [], rsaKeys: [], engine: {} };
const c0 = process.cpuUsage();
const m0 = threadNs();
const t0 = process.hrtime.bigint();
const stats = await replayFanout(opts, out, pool, { discard: true });
const wallNs = Number(process.hrtime.bigint() - t0);
const cpu = process.cpuUsage(c0);
const dispatcherCpuNs = threadNs() - m0;
await pool.close();
await out.close();
process.stdout.write(JSON.stringify({ wallNs, packets: stats.packets, cpuUserUs: cpu.user, cpuSysUs: cpu.system, dispatcherCpuNs }) + '\n');
