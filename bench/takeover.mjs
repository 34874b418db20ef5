#!/usr/bin/env node
// Partition takeover end to end on a real broker (issue 12): how long until a partition that moved
// between `run` instances is assigned to its new owner and caught up, the consumer group's own
// rebalance (join/sync, session timeout) included.
//
//   npm run build && node bench/takeover.mjs [--capture .cache/bench/sessions-16k.pcap] [--keylog ...]
//       [--cycles 10] [--kills 3] [--speed 0.08] [--session-timeout-ms 6000] [--port 19580]
//
// A private single-node broker (scripts/kafka.sh on --port, folder .cache/kafka-takeover-PORT, the
// jars of .cache/kafka or TLSDECRYPT_KAFKA_HOME shared by symlink) gets an 8-partition packets topic.
// A publisher child streams the capture into it at --speed x its capture rate (cut into 0.1 s slices,
// `publish pcap`'s flow-hash partitioning), so connections open and close all the time. Instance A
// (`node dist/src/cli.js run`) stays up; then --cycles times: instance B starts (planned join), then
// B gets SIGTERM (planned leave); then --kills times: B starts, then B gets SIGKILL (the group notices
// after --session-timeout-ms). Per partition that moved, from the trigger (B spawned, signal sent):
//   assigned    the new owner's "partitions assigned" log line naming it (the bench reads the
//               instances' stderr every 50 ms);
//   first commit the group's committed offset/metadata of the partition changes after that (the new
//               owner has fetched, fed and committed its first batch);
//   caught up   the new owner's commit says it has read (metadata tlsdecrypt-read-to:N) up to the
//               partition's end offset at the moment it was assigned: everything published before
//               the takeover is read again from the watermark and processed, and committed.
//   records re-read: the partition's end offset minus its committed offset (the low watermark) when
//               the new owner was assigned; one record is one 0.1 s slice's packets of the partition.
// The group offsets are polled every 100 ms, so each figure has up to ~100 ms of polling granularity.
// A join's figures include B's process start-up (node, connecting, reading the secrets backlog).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CACHE, fmt, fmt0, need, needBuild, printMachine, ROOT } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    capture: { type: 'string', default: `${CACHE}/sessions-16k.pcap` },
    keylog: { type: 'string', default: `${CACHE}/sessions-16k.keys.log` },
    cycles: { type: 'string', default: '10' },
    kills: { type: 'string', default: '3' },
    speed: { type: 'string', default: '0.08' },
    'session-timeout-ms': { type: 'string', default: '6000' },
    port: { type: 'string', default: '19580' },
    partitions: { type: 'string', default: '8' },
    // internal: the publisher child
    publisher: { type: 'string' },
  },
});

const PARTS = Number(values.partitions);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (values.publisher) {
  // Publisher child: --publisher JSON {brokers, topic, slices: [{file, at}]} ; `at` is ms after start.
  const { createKafkaClient } = await import(`${ROOT}dist/src/kafka/adapter.js`);
  const { publishPcap } = await import(`${ROOT}dist/src/kafka/publish.js`);
  const job = JSON.parse(readFileSync(values.publisher, 'utf8'));
  const c = createKafkaClient({ brokers: job.brokers, clientId: 'takeover-publisher' });
  const t0 = Date.now();
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  for (const s of job.slices) {
    if (stop) break;
    const wait = t0 + s.at - Date.now();
    if (wait > 0) await sleep(wait);
    await publishPcap(c, { capture: s.file, topic: job.topic, partitions: PARTS, format: 'pcap', batchBytes: 65536 });
  }
  process.stdout.write('publisher done\n');
  process.exit(0);
}

needBuild();
need(values.capture, 'make it with scripts/bench/make-bulk.sh, or pass --capture/--keylog');
need(values.keylog, 'the key log of --capture');
const m = printMachine();
const port = Number(values.port);
const sessionTimeoutMs = Number(values['session-timeout-ms']);
const speed = Number(values.speed);
const home = `${ROOT}.cache/kafka-takeover-${port}`;
const work = join(home, 'bench');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

// ---- private broker -------------------------------------------------------------------------
const shared = process.env.TLSDECRYPT_KAFKA_HOME ?? `${ROOT}.cache/kafka`;
for (const e of existsSync(shared) ? readdirSync(shared) : []) {
  if (e.startsWith('lib-') && !existsSync(join(home, e))) symlinkSync(join(shared, e), join(home, e));
}
const kafkaSh = (cmd) => {
  const r = spawnSync('bash', [`${ROOT}scripts/kafka.sh`, cmd], {
    encoding: 'utf8', timeout: 300_000,
    env: { ...process.env, TLSDECRYPT_KAFKA_HOME: home, TLSDECRYPT_KAFKA_PORT: String(port), TLSDECRYPT_KAFKA_CONTROLLER_PORT: String(port + 1), TLSDECRYPT_KAFKA_HEAP_OPTS: '-Xms64m -Xmx256m' },
  });
  if (r.status !== 0 && cmd !== 'status') throw new Error(`kafka.sh ${cmd} on ${port}: ${(r.stderr ?? '').split('\n').slice(-8).join('\n')}`);
  return r;
};
const brokers = [`127.0.0.1:${port}`];

// ---- capture slices -------------------------------------------------------------------------
function slices(file, sliceUs) {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian classic pcap`);
  const unit = magic === 0xa1b2c3d4 ? 1 : 1000; // µs or ns
  const head = b.subarray(0, 24);
  const out = [];
  let cur = [], curStart, first, packets = 0;
  const flush = () => {
    if (!cur.length) return;
    const f = join(work, `slice-${String(out.length).padStart(5, '0')}.pcap`);
    writeFileSync(f, Buffer.concat([head, ...cur]));
    out.push({ file: f, at: Math.round((curStart - first) / 1000 / speed) });
    cur = [];
  };
  for (let o = 24; o + 16 <= b.length; ) {
    const len = b.readUInt32LE(o + 8);
    const t = b.readUInt32LE(o) * 1e6 + b.readUInt32LE(o + 4) / unit;
    first ??= t;
    if (curStart === undefined || t - curStart >= sliceUs) {
      flush();
      curStart = t;
    }
    cur.push(b.subarray(o, o + 16 + len));
    o += 16 + len;
    packets++;
  }
  flush();
  return { slices: out, packets, seconds: out.length ? out[out.length - 1].at / 1000 : 0 };
}

// ---- run instances --------------------------------------------------------------------------
const instances = [];
function spawnRun(name, args) {
  const child = spawn(process.execPath, [`${ROOT}dist/src/cli.js`, 'run', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const r = { name, child, err: '', assigned: undefined, seenAt: new Map(), exited: new Promise((ok) => child.on('exit', (code, sig) => ok(code ?? sig))) };
  child.on('exit', () => (r.exitAt = Date.now()));
  child.stderr.on('data', (d) => {
    r.err += d;
    // Each "partitions assigned" line: the time the bench saw it, per partition newly listed.
    let nl;
    while ((nl = r.err.indexOf('\n', r.scan ?? 0)) >= 0) {
      const line = r.err.slice(r.scan ?? 0, nl);
      r.scan = nl + 1;
      if (!line.includes('"partitions assigned"')) continue;
      try {
        const ps = JSON.parse(line).partitions;
        const now = Date.now();
        for (const p of ps) if (!r.assigned?.includes(p)) r.seenAt.set(p, now);
        r.assigned = ps;
      } catch {
        /* not JSON */
      }
    }
  });
  instances.push(r);
  return r;
}
const alive = (r) => r.child.exitCode === null && r.child.signalCode === null;
async function until(what, f, ms = 120_000, step = 50) {
  const t0 = Date.now();
  for (;;) {
    if (await f()) return;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(step);
  }
}

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] : NaN;
};
const READ_TO = 'tlsdecrypt-read-to:';
const readTo = (meta) => (meta?.startsWith(READ_TO) ? BigInt(meta.slice(READ_TO.length).split(' ')[0]) : -1n);

let admin, publisher, c, a;
const results = { join: [], leave: [], kill: [] };
const rebalances = { join: [], leave: [], kill: [] };
/** ms from SIGTERM to B's exit (it finishes its batches, commits, leaves the group). */
const exits = [];
try {
  console.log('starting the private broker ...');
  kafkaSh('start');
  const { createKafkaClient } = await import(`${ROOT}dist/src/kafka/adapter.js`);
  const { publishKeylog } = await import(`${ROOT}dist/src/kafka/publish.js`);
  c = createKafkaClient({ brokers, clientId: 'takeover-bench' });
  admin = await c.admin();
  const t = `takeover-${Date.now().toString(36)}`;
  const topics = { packets: `${t}.packets`, secrets: `${t}.secrets`, events: `${t}.events`, group: `${t}.group` };
  await admin.ensureTopic(topics.packets, PARTS);
  await admin.ensureTopic(topics.events, PARTS);
  const kl = await publishKeylog(c, { file: values.keylog, topic: topics.secrets, partitions: 1, follow: false });
  const cut = slices(values.capture, 100_000);
  console.log(`capture: ${values.capture} (${fmt0(cut.packets)} packets), streamed at ${values.speed} x capture rate in ${cut.slices.length} slices of 0.1 s capture time over ${fmt(cut.seconds, 0)} s; key log ${fmt0(kl.published)} lines in the secrets topic`);
  console.log(`group: ${PARTS} partitions, instances: node dist/src/cli.js run --session-timeout-ms ${sessionTimeoutMs} (other settings default)`);

  const args = ['--brokers', brokers[0], '--packets-topic', topics.packets, '--secrets-topic', topics.secrets, '--events-topic', topics.events, '--group-id', topics.group, '--session-timeout-ms', String(sessionTimeoutMs)];
  a = spawnRun('A', args);
  await until('A owns every partition', () => a.assigned?.length === PARTS);
  const job = join(work, 'publisher.json');
  writeFileSync(job, JSON.stringify({ brokers, topic: topics.packets, slices: cut.slices }));
  publisher = spawn(process.execPath, [`${ROOT}bench/takeover.mjs`, '--publisher', job, '--partitions', String(PARTS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let publishing = true;
  publisher.on('exit', () => (publishing = false));
  await sleep(5000); // the stream runs, A is caught up

  /** Waits for every moved partition's assignment to `to`, first commit and catch-up; returns per-partition figures. */
  async function measure(kind, trigger, moved, to) {
    const state = new Map(moved.map((p) => [p, {}]));
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && [...state.values()].some((s) => s.caught === undefined)) {
      const [offs, ends] = await Promise.all([admin.groupOffsets(topics.group, topics.packets), admin.topicOffsets(topics.packets)]);
      const now = Date.now();
      for (const [p, s] of state) {
        const g = offs.find((o) => o.partition === p);
        const meta = `${g?.offset}|${g?.metadata ?? ''}`;
        if (s.assigned === undefined) {
          const seen = to.assigned?.includes(p) ? to.seenAt.get(p) : undefined;
          if (seen === undefined || seen < trigger) continue;
          s.assigned = seen;
          s.meta0 = meta;
          s.end = BigInt(ends.find((e) => e.partition === p).high);
          s.reread = g && BigInt(g.offset) >= 0n ? Number(s.end - BigInt(g.offset)) : NaN;
          continue;
        }
        if (s.first === undefined && meta !== s.meta0) s.first = now;
        if (s.first !== undefined && s.caught === undefined && readTo(g?.metadata) >= s.end) s.caught = now;
      }
      await sleep(100);
    }
    for (const [p, s] of state) {
      const r = { partition: p, assignMs: s.assigned - trigger, firstMs: s.first - trigger, caughtMs: s.caught - trigger, reread: s.reread };
      if (s.caught === undefined) console.log(`  ${kind}: partition ${p} not caught up within 90 s (assigned ${s.assigned !== undefined})`);
      else results[kind].push(r);
    }
    const maxAssign = Math.max(...[...state.values()].map((s) => s.assigned ?? NaN));
    rebalances[kind].push(maxAssign - trigger);
    return state;
  }

  const plan = [...Array(Number(values.cycles)).fill('leave'), ...Array(Number(values.kills)).fill('kill')];
  let i = 0;
  for (const end of plan) {
    if (!publishing) {
      console.log(`the stream ended after ${i} cycles: figures below are from those`);
      break;
    }
    i++;
    // planned join
    const tJoin = Date.now();
    const b = spawnRun(`B${i}`, args);
    await until(`B${i} assigned`, () => b.assigned?.length > 0 && a.assigned?.length + b.assigned.length === PARTS);
    const movedIn = [...b.assigned];
    await measure('join', tJoin, movedIn, b);
    await sleep(2000);
    // planned leave (SIGTERM) or crash (SIGKILL)
    const movedOut = [...b.assigned];
    const tEnd = Date.now();
    b.child.kill(end === 'leave' ? 'SIGTERM' : 'SIGKILL');
    await measure(end, tEnd, movedOut, a);
    const code = await Promise.race([b.exited, sleep(60_000).then(() => 'timeout')]);
    if (end === 'leave' && code !== 0) console.log(`  B${i} exit after SIGTERM: ${code}`);
    if (end === 'leave') exits.push(b.exitAt - tEnd);
    const last = results[end].slice(-movedOut.length);
    console.log(`cycle ${i}: join moved [${movedIn}] caught up in ≤ ${fmt0(Math.max(...results.join.slice(-movedIn.length).map((r) => r.caughtMs)))} ms; ${end} moved [${movedOut}] caught up in ≤ ${fmt0(Math.max(...last.map((r) => r.caughtMs)))} ms${end === 'leave' ? ` (B exited after ${fmt0(b.exitAt - tEnd)} ms)` : ''}`);
    await sleep(2000);
  }

  console.log('');
  console.log(`per partition moved, ms from the trigger (join: B spawned; leave: SIGTERM to B; kill: SIGKILL to B):`);
  console.log(`| trigger | partitions moved | assigned p50 / p99 | first commit p50 / p99 | caught up p50 / p99 | caught up max | records re-read p50 / max |`);
  console.log(`|---|---:|---:|---:|---:|---:|---:|`);
  for (const k of ['join', 'leave', 'kill']) {
    const rs = results[k];
    if (!rs.length) continue;
    const f = (key) => `${fmt0(pct(rs.map((r) => r[key]), 0.5))} / ${fmt0(pct(rs.map((r) => r[key]), 0.99))}`;
    console.log(`| ${k} | ${rs.length} (${rebalances[k].length} triggers) | ${f('assignMs')} | ${f('firstMs')} | ${f('caughtMs')} | ${fmt0(Math.max(...rs.map((r) => r.caughtMs)))} | ${fmt0(pct(rs.map((r) => r.reread), 0.5))} / ${fmt0(Math.max(...rs.map((r) => r.reread)))} |`);
  }
  if (exits.length) console.log(`leave: B exited ${fmt0(pct(exits, 0.5))} ms (p50) / ${fmt0(Math.max(...exits))} ms (max) after SIGTERM; a remaining member learns of a rebalance at its next heartbeat (run's --heartbeat-interval-ms, 1 s by default)`);
  console.log(`(p99 of fewer than 100 samples is the largest one; the machine (${m.nproc} vCPUs) was shared with other work)`);
} finally {
  if (publisher && publisher.exitCode === null) publisher.kill('SIGTERM');
  for (const r of instances) if (alive(r)) r.child.kill('SIGTERM');
  await sleep(3000);
  for (const r of instances) if (alive(r)) r.child.kill('SIGKILL');
  await admin?.close().catch(() => {});
  try {
    kafkaSh('stop');
  } catch (e) {
    console.error(String(e));
  }
  rmSync(work, { recursive: true, force: true });
  rmSync(join(home, `data-${port}`), { recursive: true, force: true });
}
