#!/usr/bin/env node
// The main thread's CPU per GB of `run --workers N` consuming a published capture from a REAL
// broker, for builds and fetch paths taken in turn (issue 17: kafkajs's fetch path was the main
// thread's ceiling; `--fetch native` reads fetch answers into reused buffers).
//
//   node bench/run-fetch.mjs --brokers 127.0.0.1:19092 --capture CAP --keylog KEYS \
//        --variant A=/tmp/base: --variant K=.:--fetch=kafkajs --variant N=.:--fetch=native \
//        [--workers 2] [--runs 3] [--partitions 16] [--topic T (already published: skip publishing)]
//
// A variant is NAME=DIR:EXTRA-ARGS (DIR holds dist/src/cli.js; EXTRA-ARGS comma-separated). The
// capture is published once (`publish pcap`, 512 KiB records, `--partitions` partitions; its key
// log to a secrets topic). Each run is a fresh `run` process with a new consumer group reading the
// topic from the beginning (events to /dev/null; --replay-window 0, so that every offset is committed once fed); a preloaded hook (--import) prints the main
// thread's own CPU (/proc/self/task/PID/stat) on SIGUSR2. The measured window starts when `run`
// logs 'consuming' and ends when the group's lag is 0 (all committed): the main thread's CPU in
// that window, per GB of record values, with the window's wall time and the load average.
import { spawn, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdtempSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: '127.0.0.1:19092' },
    capture: { type: 'string' },
    keylog: { type: 'string' },
    variant: { type: 'string', multiple: true },
    workers: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    partitions: { type: 'string', default: '16' },
    topic: { type: 'string' },
  },
});
const die = (m) => {
  console.error(`bench/run-fetch.mjs: ${m}`);
  process.exit(2);
};
if (!values.capture || !values.keylog) die('--capture and --keylog are required');
if (!values.variant?.length) die('give at least one --variant NAME=DIR:ARGS');
const variants = values.variant.map((v) => {
  const m = /^([^=]+)=([^:]+):(.*)$/.exec(v);
  if (!m) die(`--variant ${v}: NAME=DIR:ARGS`);
  return { name: m[1], cli: resolve(m[2], 'dist/src/cli.js'), args: m[3] ? m[3].split(',').flatMap((a) => a.split('=')) : [] };
});
const self = resolve('dist/src/cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'run-fetch-'));
const hook = join(tmp, 'hook.mjs');
writeFileSync(
  hook,
  `import { readFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
if (isMainThread) process.on('SIGUSR2', () => {
  const f = readFileSync('/proc/self/task/' + process.pid + '/stat', 'utf8').split(') ')[1].split(' ');
  process.stderr.write('MAINCPU ' + (Number(f[11]) + Number(f[12])) / 100 + '\\n');
});
`,
);

const topic = values.topic ?? `bench.runfetch.${Date.now()}`;
const secrets = `${topic}.secrets`;
if (!values.topic) {
  for (const args of [
    ['publish', 'keylog', values.keylog, '--brokers', values.brokers, '--topic', secrets],
    ['publish', 'pcap', values.capture, '--brokers', values.brokers, '--topic', topic, '--partitions', values.partitions],
  ]) {
    const r = spawnSync('node', [self, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) die(`${args.slice(0, 2).join(' ')} failed`);
  }
}

// the bench's own Kafka client: lag of a group, bytes of the topic
const { createKafkaClient } = await import(new URL('../dist/src/kafka/adapter.js', import.meta.url).href);
const client = createKafkaClient({ brokers: values.brokers.split(','), clientId: 'bench-run-fetch' });
const admin = await client.admin();
const bytes = statSync(values.capture).size; // the record values hold the capture's packets (pcap-stream records)

function once(v, i) {
  return new Promise((done, fail) => {
    const group = `${topic}.g.${v.name}.${i}.${Date.now()}`;
    const load0 = loadavg()[0];
    const child = spawn('node', ['--import', hook, v.cli, 'run', '--brokers', values.brokers, '--packets-topic', topic, '--secrets-topic', secrets, '--events-topic', '', '--out', '/dev/null', '--group-id', group, '--workers', values.workers, '--stats-interval', '0', '--max-cpu', '0', '--max-memory', '0', '--finish-on-stop', '--replay-window', '0', ...v.args], { stdio: ['ignore', 'ignore', 'pipe'] });
    const cpu = [];
    let t0 = 0;
    let t1 = 0;
    let err = '';
    let polling = false;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      err += d;
      for (const m of d.matchAll(/MAINCPU ([\d.]+)/g)) cpu.push(Number(m[1]));
      if (!polling && /"message":"consuming"/.test(err)) {
        polling = true;
        t0 = performance.now();
        child.kill('SIGUSR2');
        void poll();
      }
    });
    const poll = async () => {
      for (;;) {
        await new Promise((r) => setTimeout(r, 100));
        const lag = await admin.lag(group, topic).catch(() => -1);
        const offs = await admin.groupOffsets(group, topic).catch(() => []);
        if (process.env.RUN_FETCH_DEBUG) console.error('lag', lag, offs.length, cpu);
        if (lag === 0 && offs.some((o) => o.offset !== '-1')) break;
      }
      t1 = performance.now();
      child.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGTERM');
    };
    child.on('exit', (code) => {
      if (cpu.length < 2) return fail(new Error(`${v.name}: no CPU figures (exit ${code}): ${err.slice(-2000)}`));
      const s = cpu[1] - cpu[0];
      done({ v: v.name, run: i, mainCpuS: s, sPerGB: s / (bytes / 1e9), wallS: (t1 - t0) / 1000, load: `${load0.toFixed(1)}-${loadavg()[0].toFixed(1)}` });
    });
  });
}

console.log(`# run-fetch: ${values.capture} (${bytes} bytes) on topic ${topic} (${values.partitions} partitions), run --workers ${values.workers}, ${values.runs} runs per variant, alternated`);
const res = [];
for (let i = 0; i < Number(values.runs); i++) {
  for (const v of variants) {
    const r = await once(v, i);
    res.push(r);
    console.log(`${r.v} run ${r.run}: main thread ${r.mainCpuS.toFixed(2)} CPU-s = ${r.sPerGB.toFixed(2)} s/GB, window ${r.wallS.toFixed(1)} s, load ${r.load}`);
  }
}
for (const v of variants) {
  const xs = res.filter((r) => r.v === v.name).map((r) => r.sPerGB).sort((a, b) => a - b);
  console.log(`${v.name} (${v.args.join(' ') || 'default'}): median ${xs[xs.length >> 1].toFixed(2)} s/GB (runs ${xs.map((x) => x.toFixed(2)).join(', ')})`);
}
await admin.close();
