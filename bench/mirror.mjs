#!/usr/bin/env node
// 6. The mirror receiver: how many VXLAN datagrams per second (and Gbps of inner frames) one
// `publish mirror` process takes into the local broker with nothing dropped, and the latency
// from a packet on the wire to its event out of `run`.
//
//   npm run build && sudo bash bench/make-mirror-capture.sh
//   sudo node bench/mirror.mjs [--mbps 400,700,1000,1300] [--duration 8] [--latency-runs 20]
//                              [--brokers 127.0.0.1:19092] [--rcvbuf 33554432] [--receiver-args "..."]
//                              [--producers native,kafkajs] [--sender tcpreplay|own]
//                              [--max-in-flight 1,5] [--own-broker PORT [--broker-jvm stock|test]]
//
// --max-in-flight 1,5: for every rate, producer and thread count, one fresh receiver per value
// (publish mirror --max-in-flight N: produce requests in flight at once), alternated: 1 is round
// 7's behaviour (each send waits for the previous acknowledgement), 5 the default.
// --own-broker PORT: instead of --brokers, start a broker of its own on PORT with scripts/kafka.sh
// (TLSDECRYPT_KAFKA_PORT=PORT; its data under .cache/kafka/data-PORT) and stop it at the end.
// --broker-jvm stock (the default with --own-broker) gives it the JVM options of Kafka's own
// kafka-server-start.sh (1 GiB heap, G1, full tiered JIT: "a local broker as Kafka ships it");
// test gives the shared test broker's (scripts/kafka.sh default: SerialGC, C1 only, 512 MiB).
// A broker already running on PORT is reused as it is (stop it first to change its options).
// A broker started here is warmed up first by one unrecorded run of max(10 s, --duration) at the
// highest rate (needs --sender own): a fresh JVM's first seconds are several times slower
// (bench/produce-pipeline.mjs showed 240 -> 430 MB/s from the first round to the second).
//
// --threads 1,2,2s: for every rate and producer, one fresh receiver per thread count in turn
// (publish mirror --threads N; a trailing 's' adds --sensor bench, with which the receive threads
// drain the socket with read(2)).
// --producers: for every rate, one fresh receiver per producer (publish mirror --producer P), in
// turn, so the producers are compared alternated under the same load. --sender own: instead of
// tcpreplay onto the VXLAN device, bench/vxlan-send.c (compiled here) sends the frames already
// VXLAN-encapsulated from the server namespace with sendmmsg, 64 per syscall, paced to the same
// Mbps of inner frames; on 2 cores tcpreplay's per-frame cost plus the kernel's encapsulation
// otherwise caps the offered rate (~34,000 frames/s seen) below 1 Gbps.
//
// Throughput: the namespaces of test/mirror/netns.sh (prefix h13b); `tcpreplay -K --mbps R
// --duration D --loop 0` replays mirror-1400.pcap (real TLS, every frame 1,400 bytes) onto the
// kernel VXLAN device h13bvx, whose remote is the receiver (10.93.2.2:4789): the kernel
// encapsulates, as a `tc mirred` mirror does. For each rate the receiver's own metrics give the
// datagrams received and published and every drop (kernel socket buffer, buffer full, Kafka),
// /proc/PID/stat its CPU seconds; tcpreplay says what it sent and `ip -s link` what the VXLAN
// device dropped before the receiver.
//
// Latency: `run` consumes the same packets topic; the key log of mirror-session.pcap (one small
// HTTPS request) is published first; then, N times, the session's frames are sent as VXLAN
// datagrams with a fresh client port (a new flow each time) and the time from the last frame
// sent to the http event on run's stdout is taken. The receiver's linger is 100 ms (default).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CACHE, ROOT, deleteTopics, fmt, fmt0, need, needBuild, printMachine } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    mbps: { type: 'string', default: '400,700,1000,1300' },
    duration: { type: 'string', default: '8' },
    'latency-runs': { type: 'string', default: '20' },
    brokers: { type: 'string', default: '127.0.0.1:19092' },
    rcvbuf: { type: 'string', default: String(32 << 20) },
    'receiver-args': { type: 'string', default: '' },
    capture: { type: 'string', default: `${CACHE}/mirror-1400.pcap` },
    session: { type: 'string', default: `${CACHE}/mirror-session.pcap` },
    producers: { type: 'string', default: 'native' },
    threads: { type: 'string', default: '1' },
    sender: { type: 'string', default: 'tcpreplay' },
    'max-in-flight': { type: 'string', default: '5' },
    'own-broker': { type: 'string' },
    'broker-jvm': { type: 'string', default: 'stock' },
  },
});
needBuild();
need(values.capture, 'make it with: sudo bash bench/make-mirror-capture.sh');
need(values.session, 'make it with: sudo bash bench/make-mirror-capture.sh');
if (process.getuid() !== 0) {
  console.error('bench/mirror.mjs needs root (network namespaces, tcpreplay)');
  process.exit(2);
}

const P = 'h13b';
const NETNS = `${ROOT}test/mirror/netns.sh`;
const CLI = `${ROOT}dist/src/cli.js`;
const OWN = values['own-broker'];
if (OWN !== undefined && !/^\d+$/.test(OWN)) {
  console.error(`--own-broker takes a port, got '${OWN}'`);
  process.exit(2);
}
const KAFKA_ENV = { ...process.env, TLSDECRYPT_KAFKA_PORT: OWN, TLSDECRYPT_KAFKA_JVM: values['broker-jvm'] };
const B = OWN ? `127.0.0.1:${OWN}` : values.brokers;
const stamp = Date.now().toString(36);
const topic = `h13b.bench.packets.${stamp}`;
const secrets = `h13b.bench.secrets.${stamp}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (s) => execFileSync('bash', ['-c', s], { encoding: 'utf8' });

// detached: its own session, so its own scheduler autogroup (sched_autogroup_enabled=1 here: under
// contention the CPU is shared per session, and the receiver would otherwise share one with the sender)
function start(args) {
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const r = { p, out: '', err: '' };
  p.stdout.on('data', (d) => (r.out += d));
  p.stderr.on('data', (d) => (r.err += d));
  return r;
}

async function until(what, f, ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

async function metrics(url) {
  const text = await (await fetch(url)).text();
  const m = {};
  for (const l of text.split('\n')) {
    if (!l.startsWith('tlsdecrypt_')) continue;
    const i = l.lastIndexOf(' ');
    m[l.slice(0, i)] = Number(l.slice(i + 1));
  }
  return m;
}
const sum = (m, prefix) => Object.entries(m).filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks (100 Hz)
}

function vxlanTxDrops() {
  const s = sh(`ip netns exec ${P}srv ip -s link show ${P}vx`).split('\n');
  const i = s.findIndex((l) => l.trim().startsWith('TX:'));
  return Number(s[i + 1].trim().split(/\s+/)[3]);
}

/** Frames of a classic pcap file (tcpdump: microseconds, little-endian). */
function pcapFrames(path) {
  const b = readFileSync(path);
  const out = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const n = b.readUInt32LE(o + 8);
    out.push(Buffer.from(b.subarray(o + 16, o + 16 + n)));
    o += 16 + n;
  }
  return out;
}

const m0 = printMachine();
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`load average at start: ${load} (the machine is shared with other helpers' builds and tests)`);
const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
const wantRcvbuf = Number(values.rcvbuf);
let restoreRmem = false;
spawnSync('bash', [NETNS, 'down', P]);
sh(`bash ${NETNS} up ${P} >/dev/null`);
let receiver;
let run;
let startedBroker = false;
try {
  if (OWN) {
    const k = spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'start'], { env: KAFKA_ENV, encoding: 'utf8' });
    if (k.status !== 0) throw new Error(`scripts/kafka.sh start (port ${OWN}) failed: ${k.stderr.trim().split('\n').slice(-2).join(' ')}`);
    startedBroker = !k.stderr.includes('reusing');
    console.log(`broker: our own on ${B}, scripts/kafka.sh with TLSDECRYPT_KAFKA_JVM=${values['broker-jvm']} (${startedBroker ? 'started now' : 'reused, already running: its options are whatever it was started with'})`);
  } else {
    console.log(`broker: ${B} (not started here; the test broker of scripts/kafka.sh runs with test-speed JVM options)`);
  }
  if (rmemMax < wantRcvbuf) {
    sh(`sysctl -qw net.core.rmem_max=${wantRcvbuf}`);
    restoreRmem = true;
  }
  const own = values.sender === 'own';
  const SENDER = `${CACHE}/vxlan-send`;
  if (own) sh(`gcc -O2 -o ${SENDER} ${ROOT}bench/vxlan-send.c`);
  const startReceiver = async (producer, threads = 1, inFlight = '5') => {
    const rc = start([CLI, 'publish', 'mirror', '--listen', '10.93.2.2:4789', '--brokers', B, '--topic', topic, '--partitions', '8', '--metrics-port', '0', '--rcvbuf', String(wantRcvbuf), '--producer', producer, '--threads', String(parseInt(threads)), '--max-in-flight', inFlight, ...(String(threads).endsWith('s') ? ['--sensor', 'bench'] : []), ...values['receiver-args'].split(' ').filter(Boolean)]);
    try {
      await until('receiver listening', () => rc.err.includes('mirror receiver listening') || rc.p.exitCode !== null);
    } catch (e) {
      rc.p.kill('SIGKILL');
      throw e;
    }
    if (rc.p.exitCode !== null) throw new Error(`the receiver exited (${rc.p.exitCode}): ${rc.err.trim().split('\n').slice(-3).join(' | ')}`);
    rc.url = /metrics on (http:\/\/\S+)/.exec(rc.err)[1];
    rc.rcvbuf = /"rcvbuf":(\d+)/.exec(rc.err)?.[1];
    return rc;
  };
  const stopReceiver = async (rc) => {
    rc.p.kill('SIGTERM');
    await new Promise((r) => (rc.p.exitCode !== null ? r() : rc.p.once('exit', r)));
  };
  const producers = values.producers.split(',');
  console.log(`receiver: one fresh process per rate and producer (${producers.join(', ')}, alternated), SO_RCVBUF asked ${wantRcvbuf}, topic ${topic} (8 partitions), broker ${B}, linger 100 ms, batch 512 KiB`);
  const frames = sh(`tcpdump -r ${values.capture} 2>/dev/null | wc -l`).trim();
  console.log(`feed: ${values.capture} (${frames} frames of 1400 bytes, real TLS 1.3), ${own ? 'bench/vxlan-send.c: pre-encapsulated VXLAN datagrams (1,408 bytes of UDP payload), sendmmsg 64 per call, from 10.93.2.1' : 'tcpreplay -K onto the kernel VXLAN device'} (datagrams of 1450 bytes on the wire: 1400 + 8 VXLAN + 8 UDP + 20 IP + 14 outer Ethernet)`);
  console.log('');
  const threadCounts = values.threads.split(',');
  const inFlights = values['max-in-flight'].split(',');
  console.log('producer | threads | in flight | offered Mbps | sent pkts | recv datagrams/s | inner Gbps | published | dropped: kernel / buffer / kafka | vxlan dev drops | receiver CPU s (% of one core) | broker CPU s | load');
  const rows = [];
  if (startedBroker && own) {
    // a broker started just now runs interpreted and C1-compiled code for its first seconds
    // (the first receiver saw seconds-long stalls and dropped); one unrecorded run warms it up
    const rate = Math.max(...values.mbps.split(',').map(Number));
    const warm = String(Math.max(10, Number(values.duration)));
    console.log(`(warm-up of the fresh broker: ${warm} s at ${rate} Mbps, not recorded)`);
    receiver = await startReceiver(producers[0], threadCounts[0], inFlights[inFlights.length - 1]);
    spawnSync('ip', ['netns', 'exec', `${P}srv`, SENDER, values.capture, '10.93.2.2', '4789', String(rate), warm, '42', '10.93.2.1'], { encoding: 'utf8' });
    await sleep(1500);
    await stopReceiver(receiver);
    receiver = undefined;
  }
  const brokerPid = Number(sh(`ss -ltnpH 'sport = :${B.split(':').pop()}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2`).trim()) || undefined;
  for (const r of values.mbps.split(',').map(Number)) for (const producer of producers) for (const threads of threadCounts) for (const inFlight of inFlights) {
    receiver = await startReceiver(producer, threads, inFlight);
    const url = receiver.url;
    await sleep(1000);
    const before = await metrics(url);
    const cpu0 = cpuSeconds(receiver.p.pid);
    const bcpu0 = brokerPid ? cpuSeconds(brokerPid) : NaN;
    const vx0 = vxlanTxDrops();
    const t0 = performance.now();
    const tr = own
      ? spawnSync('ip', ['netns', 'exec', `${P}srv`, SENDER, values.capture, '10.93.2.2', '4789', String(r), values.duration, '42', '10.93.2.1'], { encoding: 'utf8' })
      : spawnSync('ip', ['netns', 'exec', `${P}srv`, 'tcpreplay', '-K', '-q', `--mbps=${r}`, `--duration=${values.duration}`, '--loop=0', '-i', `${P}vx`, values.capture], { encoding: 'utf8' });
    const secs = (performance.now() - t0) / 1000;
    await sleep(1500); // linger + the last sends
    const after = await metrics(url);
    const cpu = cpuSeconds(receiver.p.pid) - cpu0;
    const bcpu = brokerPid ? cpuSeconds(brokerPid) - bcpu0 : NaN;
    const vxDrops = vxlanTxDrops() - vx0;
    const d = (k) => (after[k] ?? 0) - (before[k] ?? 0);
    const dg = sum(after, 'tlsdecrypt_mirror_datagrams_total') - sum(before, 'tlsdecrypt_mirror_datagrams_total');
    const kern = d('tlsdecrypt_publish_drops_total{cause="kernel_socket_buffer"}');
    const buf = d('tlsdecrypt_publish_drops_total{cause="buffer_full"}');
    const kafka = d('tlsdecrypt_publish_drops_total{cause="kafka_unavailable"}') + d('tlsdecrypt_publish_drops_total{cause="kafka_rejected"}');
    const pub = d('tlsdecrypt_publish_published_packets_total');
    const sent = Number((own ? /sent (\d+) datagrams/ : /Actual: (\d+) packets/).exec(tr.stdout)?.[1] ?? NaN);
    const sentSecs = Number((own ? /in ([\d.]+) seconds/ : /sent in ([\d.]+) seconds/).exec(tr.stdout)?.[1] ?? secs);
    const row = { producer, threads, inFlight, mbps: r, sent, sentSecs, dg, dgps: dg / sentSecs, gbps: (dg * 1400 * 8) / sentSecs / 1e9, pub, kern, buf, kafka, vxDrops, cpu, cpuPct: (100 * cpu) / sentSecs };
    rows.push(row);
    const lt = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
    const m = await metrics(url);
    const lat = m['tlsdecrypt_publish_latency_seconds_sum'] / m['tlsdecrypt_publish_latency_seconds_count'];
    console.log(`${producer} | ${threads} | ${inFlight} | ${r} | ${fmt0(sent)} | ${fmt0(row.dgps)} | ${fmt(row.gbps, 3)} | ${fmt0(pub)} | ${kern} / ${buf} / ${kafka} | ${vxDrops} | ${fmt(cpu, 1)} (${fmt0(row.cpuPct)} %) | ${fmt(bcpu, 1)} | ${lt} | publish latency ${fmt(lat * 1000, 1)} ms`);
    if (!own && tr.status !== 0) console.log(`tcpreplay: ${tr.stderr.trim().split('\n').slice(-2).join(' ')}`);
    await stopReceiver(receiver);
    receiver = undefined;
  }
  for (const producer of producers) for (const threads of threadCounts) for (const inFlight of new Set(inFlights)) {
    const mine = rows.filter((x) => x.producer === producer && x.threads === threads && x.inFlight === inFlight);
    const clean = mine.filter((x) => x.kern + x.buf + x.kafka + x.vxDrops === 0 && x.pub === x.dg);
    const best = clean.sort((a, b) => b.dgps - a.dgps)[0];
    console.log(`${producer}, --threads ${threads}, --max-in-flight ${inFlight}: ` + (best ? `highest rate with nothing dropped: ${fmt0(best.dgps)} datagrams/s = ${fmt(best.gbps, 3)} Gbps of 1,400-byte frames, receiver CPU ${fmt0(best.cpuPct)} % of one core` : 'every rate dropped something') + ` (runs with nothing dropped: ${clean.length} of ${mine.length})`);
  }
  if (Number(values['latency-runs']) > 0) {
  receiver = await startReceiver(producers[0]);

  // ---- latency: packet on the wire -> event
  console.log('');
  sh(`node ${CLI} publish keylog ${values.session.replace(/\.pcap$/, '.keys.log')} --brokers ${B} --topic ${secrets} -q`);
  run = start([CLI, 'run', '--brokers', B, '--packets-topic', topic, '--secrets-topic', secrets, '--events-topic', '', '--stdout', '--group-id', `h13b.bench.${stamp}`, '--start-from', 'latest', '--stats-interval', '0', '--max-cpu', '0', '--max-memory', '0']);
  await until('run consuming', () => run.err.includes('"consuming"'), 60_000);
  await sleep(2000);
  const sframes = pcapFrames(values.session);
  const sock = createSocket('udp4');
  const vx = Buffer.from([0x08, 0, 0, 0, 0, 0, 42, 0]);
  const lats = [];
  const runs = Number(values['latency-runs']);
  for (let i = 0; i < runs; i++) {
    const port = 20000 + i;
    let last = 0;
    for (const f of sframes) {
      const g = Buffer.from(f);
      const ihl = (g[14] & 0x0f) * 4;
      const tcp = 14 + ihl;
      if (g[26] === 10 && g[27] === 93 && g[28] === 1 && g[29] === 2) g.writeUInt16BE(port, tcp); // from the client
      else g.writeUInt16BE(port, tcp + 2);
      await new Promise((r) => sock.send(Buffer.concat([vx, g]), 4789, '10.93.2.2', r));
      last = performance.now();
    }
    const ev = await until(`event of run ${i}`, () => run.out.split('\n').some((l) => l.includes('"dataset":"http"') && l.includes(`"port":${port}`)), 30_000);
    if (ev) lats.push(performance.now() - last);
    await sleep(300);
  }
  sock.close();
  lats.sort((a, b) => a - b);
  const q = (p) => lats[Math.min(lats.length - 1, Math.floor(p * lats.length))];
  console.log(`end-to-end latency (receiver --producer ${producers[0]}), last packet sent -> its http event on run's stdout (${lats.length} new flows, receiver linger 100 ms, run defaults): median ${fmt0(q(0.5))} ms, p90 ${fmt0(q(0.9))} ms, max ${fmt0(lats[lats.length - 1])} ms`);
  }
  console.log(`(machine: ${m0.nproc} cores, shared; load average now ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`);
} finally {
  run?.p.kill('SIGTERM');
  receiver?.p.kill('SIGTERM');
  await sleep(1000);
  if (receiver?.err) {
    const s = receiver.err.split('\n').filter((l) => l.startsWith('tlsdecrypt: received'));
    if (s.length) console.log(s[0]);
  }
  if (restoreRmem) sh(`sysctl -qw net.core.rmem_max=${rmemMax}`);
  spawnSync('bash', [NETNS, 'down', P]);
  await deleteTopics(B, (t) => t === topic || t === secrets, `${topic}, ${secrets}`);
  if (startedBroker) spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'stop'], { env: KAFKA_ENV, stdio: 'inherit' });
}
