#!/usr/bin/env node
// 4b. Kafka end to end with a real broker: publish the bulk capture, run the engine, time until
// the last event.
//
//   npm run build && node bench/kafka.mjs [--workers 1,2] [--runs 3] [--partitions 8] [--port 19792]
//                                         [--timeout 300] [--keep-broker] [--capture F --keylog K]
//                                         [--run-args="--max-bytes-per-partition 2097152 ..."]
//
// 1. Starts a private single-node KRaft broker (scripts/kafka.sh, TLSDECRYPT_KAFKA_PORT, default
//    19792: never the shared 19092) and stops it at the end, also on failure or Ctrl-C.
// 2. Replay of the same capture in this invocation: `node dist/src/cli.js replay` (its NDJSON
//    lines = the expected event count) and 3 fresh-process replays (bench/replay.mjs's
//    replay-child) for the replay throughput the Kafka figure is compared with.
// 3. Uniquely named topics; `tlsdecrypt publish keylog` then `publish pcap` (pcap-stream format,
//    --partitions 8), each a child process, timed separately.
// 4. For each --workers N, --runs times: `node dist/src/cli.js run` as a CHILD PROCESS (its own
//    consumer group, its own events topic, all reading the same packets topic), --max-cpu 0
//    --max-memory 0 so the resource governor never pauses decryption. Timed (admin polled every 100 ms) from spawn until the events topic holds the
//    expected number of events and the group's lag is 0. Lag 0 means every batch is committed,
//    i.e. its events acknowledged; flows still open when the capture ends (their closed/idle
//    timeouts run on capture time, which stops with the last packet) are finished by a stop, so
//    at lag 0 the bench sends SIGTERM (graceful: finish flows, produce, commit) and keeps timing
//    until the last event is in the topic. Gbps = capture wire bytes * 8 / that time; also shown
//    without the start-up (spawn -> the engine's "consuming" log line) and for the consume phase
//    alone (-> lag 0).
// 5. Deletes this invocation's topics (unless --keep-broker) and stops the broker.
//
// Why a child process rather than startRun in-process: the engine is measured as it is deployed
// (its own process, its own event loop and heap), peak RSS is the engine's alone (VmHWM via
// bench/lib/exit-usage.mjs), and the bench's 10 Hz admin polling does not share its event loop.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CACHE, ROOT, deleteTopics, fmt, fmt0, mb, median, need, needBuild, printMachine, runReplay, waitQuiet } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '1,2' }, partitions: { type: 'string', default: '8' },
  port: { type: 'string', default: process.env.TLSDECRYPT_KAFKA_PORT ?? '19792' },
  timeout: { type: 'string', default: '300' }, 'replay-runs': { type: 'string', default: '3' },
  runs: { type: 'string', default: '3' },
  'run-args': { type: 'string', default: '' },
  'keep-broker': { type: 'boolean' },
  capture: { type: 'string', default: `${CACHE}/bulk.pcap` }, keylog: { type: 'string', default: `${CACHE}/bulk.keys.log` },
} });
needBuild();
need(`${ROOT}dist/src/kafka/run.js`, "run 'npm run build' first");
need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
need(values.keylog, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
const PORT = Number(values.port);
if (PORT === 19092) {
  console.error('bench/kafka.mjs: refusing the shared default broker port 19092; pick another --port');
  process.exit(2);
}
const TIMEOUT_MS = Number(values.timeout) * 1000;
process.env.TLSDECRYPT_LOG_LEVEL ??= 'warn'; // this process's admin client and the publish children
const CLI = `${ROOT}dist/src/cli.js`;
const USAGE_HOOK = `${ROOT}bench/lib/exit-usage.mjs`;
const kafkaEnv = { ...process.env, TLSDECRYPT_KAFKA_PORT: String(PORT) };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
/** [busy, total] jiffies of all cores. */
const cpuTotals = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return [total - f[3] - (f[4] ?? 0), total];
};
const TICK = 100; // USER_HZ
/** utime+stime of a process in seconds (0 when gone). */
const procCpu = (pid) => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch { return 0; }
};
const hwmOf = (pid) => {
  try { return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024; } catch { return 0; }
};
const usageFrom = (stderr) => {
  const m = /BENCH_USAGE (\{.*\})/.exec(stderr);
  return m ? JSON.parse(m[1]) : undefined;
};

// ---- broker ---------------------------------------------------------------------------------
let brokerStarted = false;
function stopBroker() {
  if (!brokerStarted || values['keep-broker']) return;
  brokerStarted = false;
  const r = spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'stop'], { env: kafkaEnv, encoding: 'utf8', timeout: 90_000 });
  console.log(`broker on port ${PORT}: ${(r.stderr || '').trim().split('\n').pop() ?? ''}`);
}
const children = new Set();
function cleanupAndExit(code) {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  stopBroker();
  process.exit(code);
}
process.on('SIGINT', () => cleanupAndExit(130));
process.on('SIGTERM', () => cleanupAndExit(143));

async function main() {
  printMachine();
  console.log(`load average at start: ${loadavg()}`);
  console.log(`starting a private broker on 127.0.0.1:${PORT} (scripts/kafka.sh) ...`);
  brokerStarted = true; // stop it even if start fails half-way
  const ks = spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'start'], { env: kafkaEnv, encoding: 'utf8', timeout: 240_000 });
  if (ks.status !== 0) throw new Error(`scripts/kafka.sh start failed (${ks.status ?? ks.signal}): ${ks.stderr.slice(-600)}`);
  const brokers = ks.stdout.trim().split('\n').pop();
  const brokerPid = Number(readFileSync(`${ROOT}.cache/kafka/kafka-${PORT}.pid`, 'utf8').trim());
  console.log(`broker ${brokers} (pid ${brokerPid}) ${ks.stderr.includes('reusing') ? '(reused, already running)' : ''}`);

  const { createKafkaClient } = await import(`${ROOT}dist/src/kafka/adapter.js`);
  const client = createKafkaClient({ brokers: [brokers], clientId: 'bench-kafka' });
  const admin = await client.admin();
  let tag;

  try {
    // ---- replay in the same invocation: expected events and replay throughput ----------------
    waitQuiet();
    console.log(`input: ${values.capture} (${mb(statSync(values.capture).size)} file), keys ${values.keylog}`);
    const t0 = process.hrtime.bigint();
    const rp = spawnSync(process.execPath, [CLI, 'replay', values.capture, '--keylog', values.keylog], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: 600_000 });
    const cliReplayS = Number(process.hrtime.bigint() - t0) / 1e9;
    if (rp.status !== 0) throw new Error(`tlsdecrypt replay failed (${rp.status ?? rp.signal}): ${rp.stderr.slice(0, 400)}`);
    const replayLines = rp.stdout.split('\n').filter(Boolean);
    const expected = replayLines.length;
    const byDataset = {};
    for (const l of replayLines) { const d = JSON.parse(l).event?.dataset ?? '?'; byDataset[d] = (byDataset[d] ?? 0) + 1; }
    const runs = [];
    for (let i = 0; i < Number(values['replay-runs']); i++) runs.push(runReplay(values.capture, values.keylog, 1));
    const rr = runs.find((x) => x.wallNs === median(runs.map((y) => y.wallNs))) ?? runs[0];
    const s = rr.stats;
    const wireBytes = s.bytes;
    const replayS = rr.wallNs / 1e9;
    const replayGbps = (wireBytes * 8) / replayS / 1e9;
    console.log(`capture: ${fmt0(wireBytes)} bytes on the wire (${mb(wireBytes)}), ${fmt0(s.packets)} packets, ${s.tlsFlows} TLS sessions ${JSON.stringify(s.sessionsByStatus)}`);
    console.log(`expected events (node dist/src/cli.js replay, NDJSON lines): ${expected} ${JSON.stringify(byDataset)}; that command took ${fmt(cliReplayS, 3)} s end to end (process start + JSON to a pipe) = ${fmt((wireBytes * 8) / cliReplayS / 1e9)} Gbps`);
    console.log(`replay --workers 1, median of ${runs.length} fresh processes (${runs.map((r) => fmt(r.wallNs / 1e9, 3)).join(', ')} s): ${fmt(replayS, 3)} s, ${fmt(replayGbps)} Gbps, ${fmt0(s.packets / replayS)} packets/s, ${fmt(s.tlsFlows / replayS, 1)} sessions/s, peak RSS ${mb(rr.peakRssBytes)}, ${rr.events} events`);
    if (rr.events !== expected) console.log(`  note: replay-child counted ${rr.events} events, cli replay ${expected}`);

    // ---- topics and publish ---------------------------------------------------------------------
    tag = `bench-${Date.now().toString(36)}-${process.pid}`;
    const packetsTopic = `${tag}.packets`, secretsTopic = `${tag}.secrets`;
    const publish = (args) => {
      const c0 = cpuTotals(), b0 = procCpu(brokerPid), la = loadavg();
      const t = process.hrtime.bigint();
      const r = spawnSync(process.execPath, ['--import', USAGE_HOOK, CLI, 'publish', ...args, '--brokers', brokers], { encoding: 'utf8', timeout: 600_000 });
      const sec = Number(process.hrtime.bigint() - t) / 1e9;
      if (r.status !== 0) throw new Error(`publish ${args[0]} failed (${r.status ?? r.signal}): ${r.stderr.slice(0, 600)}`);
      const c1 = cpuTotals();
      return { sec, usage: usageFrom(r.stderr), summary: r.stderr.split('\n').filter((l) => l && !l.startsWith('BENCH_USAGE')).join(' | '), brokerCpu: procCpu(brokerPid) - b0, machineBusy: (c1[0] - c0[0]) / (c1[1] - c0[1]), la };
    };
    const pk = publish(['keylog', values.keylog, '--topic', secretsTopic]);
    console.log(`publish keylog -> ${secretsTopic}: ${fmt(pk.sec, 3)} s  [${pk.summary.slice(0, 200)}]`);
    const pp = publish(['pcap', values.capture, '--topic', packetsTopic, '--partitions', values.partitions, '--format', 'pcap']);
    const pubCpu = pp.usage ? (pp.usage.cpuUserUs + pp.usage.cpuSysUs) / 1e6 : NaN;
    console.log(`publish pcap (pcap-stream, ${values.partitions} partitions) -> ${packetsTopic}: ${fmt(pp.sec, 3)} s = ${fmt((wireBytes * 8) / pp.sec / 1e9)} Gbps, ${fmt0(s.packets / pp.sec)} packets/s; publisher CPU ${fmt(pubCpu)} s, peak RSS ${pp.usage ? mb(pp.usage.peakRssBytes) : '?'}; broker CPU ${fmt(pp.brokerCpu)} s; machine ${fmt(pp.machineBusy * 100, 0)} % busy (both cores), load ${pp.la}`);
    console.log(`  [${pp.summary.slice(0, 300)}]`);
    const packetRecords = (await admin.topicOffsets(packetsTopic)).reduce((a, o) => a + Number(o.high) - Number(o.low), 0);
    console.log(`  packets topic: ${packetRecords} records`);

    // ---- engine runs ------------------------------------------------------------------------------
    const results = [];
    for (const w of values.workers.split(',').map(Number)) for (let run = 1; run <= Number(values.runs); run++) {
      waitQuiet();
      const eventsTopic = `${tag}.events.w${w}.r${run}`, groupId = `${tag}.group.w${w}.r${run}`;
      await admin.ensureTopic(eventsTopic, 8); // created before the clock starts (run would create it too)
      const args = ['--import', USAGE_HOOK, CLI, 'run', '--brokers', brokers, '--packets-topic', packetsTopic, '--secrets-topic', secretsTopic,
        '--events-topic', eventsTopic, '--group-id', groupId, '--workers', String(w), '--start-from', 'earliest', '--secrets-lookback', '0',
        '--max-cpu', '0', '--max-memory', '0', '--stats-interval', '0', ...values['run-args'].split(' ').filter(Boolean)];
      const la = loadavg();
      const c0 = cpuTotals(), b0 = procCpu(brokerPid);
      const t0r = process.hrtime.bigint();
      const el = () => Number(process.hrtime.bigint() - t0r) / 1e9;
      const child = spawn(process.execPath, args, { env: { ...process.env, TLSDECRYPT_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
      children.add(child);
      let stderr = '', tConsuming;
      child.stderr.on('data', (d) => {
        stderr += d;
        if (tConsuming === undefined && stderr.includes('"message":"consuming"')) tConsuming = el();
      });
      let exited = false, exitCode;
      const exitP = new Promise((r) => child.on('exit', (code, sig) => { exited = true; exitCode = code ?? sig; r(); }));
      let tLag0, tDone, tSig, peak = 0, firstEventAt, events = 0, lag = -1;
      while (el() * 1000 < TIMEOUT_MS) {
        await sleep(100);
        peak = Math.max(peak, hwmOf(child.pid));
        events = (await admin.topicOffsets(eventsTopic)).reduce((a, o) => a + Number(o.high), 0);
        lag = await admin.lag(groupId, packetsTopic).catch(() => -1);
        if (events > 0 && firstEventAt === undefined) firstEventAt = el();
        if (lag === 0 && tLag0 === undefined) tLag0 = el();
        if (events >= expected && lag === 0) { tDone = el(); break; }
        // Lag 0 = every batch committed, which happens only after its events were acknowledged:
        // what is missing now comes from flows still open (capture-time timeouts stop advancing
        // with the last packet), which only a stop finishes.
        if (lag === 0 && tSig === undefined) { tSig = el(); child.kill('SIGTERM'); }
        if (exited) {
          events = (await admin.topicOffsets(eventsTopic)).reduce((a, o) => a + Number(o.high), 0);
          if (events >= expected) tDone = el();
          break;
        }
      }
      const c1 = cpuTotals(), brokerCpu = procCpu(brokerPid) - b0;
      if (!exited && tSig === undefined) child.kill('SIGTERM');
      await Promise.race([exitP, sleep(60_000)]);
      if (!exited) child.kill('SIGKILL');
      await Promise.race([exitP, sleep(5_000)]);
      children.delete(child);
      events = (await admin.topicOffsets(eventsTopic)).reduce((a, o) => a + Number(o.high), 0);
      const usage = usageFrom(stderr);
      const summaryLine = stderr.split('\n').find((l) => l.startsWith('tlsdecrypt:')) ?? '';
      const warnLines = stderr.split('\n').filter((l) => /"log\.level":"(warn|error|fatal)"/.test(l)).length;
      const engineCpu = usage ? (usage.cpuUserUs + usage.cpuSysUs) / 1e6 : NaN;
      const t = tDone;
      const r = { w, run, t, tConsuming, tLag0, tSig, firstEventAt, events, expected, exitCode, peakRss: Math.max(peak, usage?.peakRssBytes ?? 0), engineCpu, brokerCpu, machineBusy: (c1[0] - c0[0]) / (c1[1] - c0[1]), la, summaryLine, warnLines };
      results.push(r);
      console.log(`tlsdecrypt run --workers ${w}, run ${run} (child process, --max-cpu 0 --max-memory 0: governor off), group ${groupId}:`);
      if (t === undefined) {
        console.log(`  DID NOT COMPLETE within ${values.timeout} s: ${events}/${expected} events, lag ${lag}, exit ${exitCode}`);
      } else {
        console.log(`  last event after ${fmt(t, 3)} s (from spawn; consumer running at ${tConsuming !== undefined ? fmt(tConsuming, 2) : '?'} s; lag 0 at ${tLag0 !== undefined ? fmt(tLag0, 2) : '?'} s, first event at ${firstEventAt !== undefined ? fmt(firstEventAt, 2) : '?'} s${tSig !== undefined ? `, SIGTERM at ${fmt(tSig, 2)} s to finish the flows still open` : ', no SIGTERM needed'})`);
        console.log(`  ${fmt((wireBytes * 8) / t / 1e9)} Gbps on the wire, ${fmt0(s.packets / t)} packets/s, ${fmt(s.tlsFlows / t, 1)} sessions/s, ${events} events (expected ${expected})`);
        console.log(`  vs replay in this invocation: ${fmt((wireBytes * 8) / t / 1e9 / replayGbps, 3)} of replay --workers 1 (${fmt(replayGbps)} Gbps)`);
        if (tConsuming !== undefined && tLag0 !== undefined) console.log(`  consume phase alone (consumer running -> lag 0, before the stop that finishes the last flows): ${fmt(tLag0 - tConsuming, 3)} s = ${fmt((wireBytes * 8) / (tLag0 - tConsuming) / 1e9)} Gbps = ${fmt((wireBytes * 8) / (tLag0 - tConsuming) / 1e9 / replayGbps, 3)} of replay; stop (SIGTERM -> last event) ${fmt(t - tLag0, 3)} s`);
        if (tConsuming !== undefined) console.log(`  without start-up (process start, connect, secrets catch-up, group join: ${fmt(tConsuming, 2)} s): ${fmt(t - tConsuming, 3)} s, ${fmt((wireBytes * 8) / (t - tConsuming) / 1e9)} Gbps = ${fmt((wireBytes * 8) / (t - tConsuming) / 1e9 / replayGbps, 3)} of replay`);
      }
      console.log(`  engine peak RSS ${mb(r.peakRss)}, engine CPU ${fmt(engineCpu)} s (all threads, start-up and SIGTERM included), broker CPU ${fmt(brokerCpu)} s, machine ${fmt(r.machineBusy * 100, 0)} % busy over the run (both cores), load at start ${la}; exit ${exitCode}; ${warnLines} warn/error log lines`);
      console.log(`  ${summaryLine.trim()}`);
    }

    console.log('\nsummary:');
    console.log(`  capture ${fmt0(wireBytes)} bytes, ${fmt0(s.packets)} packets, ${s.tlsFlows} sessions, ${expected} events`);
    console.log(`  replay --workers 1: ${fmt(replayS, 3)} s, ${fmt(replayGbps)} Gbps`);
    console.log(`  publish pcap: ${fmt(pp.sec, 3)} s, ${fmt((wireBytes * 8) / pp.sec / 1e9)} Gbps`);
    for (const w of [...new Set(results.map((r) => r.w))]) {
      const rs = results.filter((r) => r.w === w);
      if (rs.some((r) => r.t === undefined)) { console.log(`  run --workers ${w}: ${rs.filter((r) => r.t === undefined).length} run(s) incomplete`); continue; }
      const m = median(rs.map((r) => r.t));
      const r = rs.find((x) => x.t === m) ?? rs[0];
      const ex = rs.filter((x) => x.tConsuming !== undefined).map((x) => x.t - x.tConsuming);
      console.log(`  run --workers ${w}, median of ${rs.length} (${rs.map((x) => fmt(x.t, 2)).join(', ')} s): ${fmt(r.t, 3)} s,`
        + ` ${fmt((wireBytes * 8) / r.t / 1e9)} Gbps, ${fmt0(s.packets / r.t)} packets/s, ${fmt(s.tlsFlows / r.t, 1)} sessions/s, ${r.events} events, peak RSS ${mb(Math.max(...rs.map((x) => x.peakRss)))}, engine CPU ${fmt(median(rs.map((x) => x.engineCpu)))} s, ${fmt((wireBytes * 8) / r.t / 1e9 / replayGbps, 3)}x replay; target >= 0.5x: ${(wireBytes * 8) / r.t / 1e9 / replayGbps >= 0.5 ? 'met' : 'NOT met'}`);
      const cp = rs.filter((x) => x.tConsuming !== undefined && x.tLag0 !== undefined).map((x) => x.tLag0 - x.tConsuming);
      if (cp.length) console.log(`    consume phase alone (consumer running -> lag 0): median ${fmt(median(cp), 3)} s = ${fmt((wireBytes * 8) / median(cp) / 1e9)} Gbps = ${fmt((wireBytes * 8) / median(cp) / 1e9 / replayGbps, 3)}x replay`);
      if (ex.length) console.log(`    without start-up: median ${fmt(median(ex), 3)} s = ${fmt((wireBytes * 8) / median(ex) / 1e9)} Gbps = ${fmt((wireBytes * 8) / median(ex) / 1e9 / replayGbps, 3)}x replay`);
    }
    console.log(`  load average at end: ${loadavg()}`);
    return results.every((r) => r.t !== undefined && r.events === r.expected) ? 0 : 1;
  } finally {
    await admin.close().catch(() => {});
    if (tag && !values['keep-broker']) await deleteTopics(brokers, (t) => t.startsWith(`${tag}.`), `${tag}.*`); // ~0.5 GB per invocation otherwise
  }
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`bench/kafka.mjs: ${e.stack ?? e}`);
} finally {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  stopBroker();
}
process.exit(code);
