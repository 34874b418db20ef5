// Shared helpers for the benchmark scripts: machine description, child runs, formatting.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CACHE = process.env.BENCH_CACHE ?? `${ROOT}.cache/bench`;

export function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? '?';
  const flags = /flags\s*:\s*(.*)/.exec(cpuinfo)?.[1].split(' ') ?? [];
  const nproc = execFileSync('nproc').toString().trim();
  return {
    date: new Date().toISOString(),
    nproc: Number(nproc),
    cpu: model,
    aesni: flags.includes('aes'), avx2: flags.includes('avx2'), vaes: flags.includes('vaes'),
    memGiB: +(totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    openssl: process.versions.openssl,
  };
}

export function printMachine() {
  const m = machine();
  console.log(`machine: ${m.nproc} cores (nproc), ${m.cpu}, aes-ni ${m.aesni ? 'yes' : 'no'}, avx2 ${m.avx2 ? 'yes' : 'no'}, ${m.memGiB} GiB, node ${m.node} (OpenSSL ${m.openssl}), ${m.date}`);
  return m;
}

export function need(path, hint) {
  if (!existsSync(path)) {
    console.error(`missing ${path}: ${hint}`);
    process.exit(2);
  }
}

export function needBuild() {
  need(`${ROOT}dist/src/pipeline/replay.js`, "run 'npm run build' first");
}

/**
 * Runs one replay in a fresh node process; returns its JSON report. `stdin`: `replay -`, the
 * capture piped in by cat (as `cat FILE | tlsdecrypt replay -`).
 */
export function runReplay(capture, keylog, workers = 1, nodeArgs = [], stdin = false) {
  const args = [...nodeArgs, `${ROOT}bench/lib/replay-child.mjs`, stdin ? '-' : capture, keylog, String(workers)];
  const opts = { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 26 };
  const r = stdin
    ? spawnSync('bash', ['-o', 'pipefail', '-c', 'f=$1; shift; cat "$f" | exec "$@"', 'bash', capture, process.execPath, ...args], opts)
    : spawnSync(process.execPath, args, opts);
  if (r.status !== 0) throw new Error(`replay child failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export const fmt = (n, d = 2) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
export const fmt0 = (n) => Math.round(n).toLocaleString('en-US');
export const mb = (n) => `${fmt(n / 2 ** 20, 1)} MiB`;

/** `openssl speed -evp CIPHER -bytes N -seconds S` -> bytes/s on one core. */
export function opensslSpeed(cipher = 'aes-128-gcm', bytes = 16384, seconds = 3) {
  const r = spawnSync('openssl', ['speed', '-evp', cipher, '-bytes', String(bytes), '-seconds', String(seconds)], { encoding: 'utf8', timeout: 60_000 });
  // last line: "AES-128-GCM   4212345.67k"  (1000s of bytes per second)
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const m = /([\d.]+)k\s*$/.exec(line);
  return m ? { bytesPerSec: Number(m[1]) * 1000, line: line.replace(/\s+/g, ' ').trim() } : undefined;
}

/**
 * tshark decrypting a capture with a key log, made to decrypt every record (`-Y http` needs the
 * decrypted HTTP): { seconds, frames, command } or { error }.
 */
export function tsharkDecrypt(capture, keylog) {
  const args = ['-r', capture, '-o', `tls.keylog_file:${keylog}`, '-Y', 'http', '-T', 'fields', '-e', 'frame.number'];
  const t0 = process.hrtime.bigint();
  const ts = spawnSync('tshark', args, { encoding: 'utf8', timeout: 900_000, maxBuffer: 1 << 28 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (ts.status !== 0) return { error: `tshark failed (${ts.status ?? ts.signal}): ${(ts.stderr ?? '').slice(0, 300)}` };
  return { seconds, frames: ts.stdout.split('\n').filter(Boolean).length, command: `tshark ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')} > /dev/null` };
}

/** Fraction of CPU time idle over `ms` (from /proc/stat), all cores together. */
export function cpuIdle(ms = 1000) {
  const read = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const a = read();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const b = read();
  const d = b.map((x, i) => x - a[i]);
  const total = d.reduce((x, y) => x + y, 0);
  return total ? (d[3] + (d[4] ?? 0)) / total : 1;
}

/**
 * Other engineers share this machine: waits (bounded, BENCH_QUIET_WAIT seconds, default 120)
 * until at least `minIdle` of the CPU is idle, and says how idle it was when measuring starts.
 */
export function waitQuiet(minIdle = 0.85) {
  const limit = Number(process.env.BENCH_QUIET_WAIT ?? 120);
  const t0 = Date.now();
  let idle = cpuIdle(1000);
  while (idle < minIdle && Date.now() - t0 < limit * 1000) idle = cpuIdle(2000);
  const msg = `CPU idle before measuring: ${(idle * 100).toFixed(0)}%` + (idle < minIdle ? ` (machine busy with other work after waiting ${limit} s: figures are pessimistic)` : '');
  console.log(msg);
  return idle;
}

/**
 * Deletes a bench invocation's topics, those whose name `match` accepts (kafkajs admin directly:
 * the project's adapter has no delete). A bench writes ~0.75 GB per receiver run: left behind,
 * they slowed the broker down (bench/RESULTS.md §6, round 7) and filled the disk.
 */
export async function deleteTopics(brokers, match, label) {
  try {
    const { Kafka, logLevel } = await import('kafkajs');
    const a = new Kafka({ clientId: 'bench-cleanup', brokers: [brokers], logLevel: logLevel.NOTHING }).admin();
    await a.connect();
    const topics = (await a.listTopics()).filter(match);
    if (topics.length) await a.deleteTopics({ topics, timeout: 30_000 });
    await a.disconnect();
    console.log(`deleted ${topics.length} bench topics (${label})`);
  } catch (e) {
    console.log(`could not delete the bench topics ${label}: ${e.message}`);
  }
}
