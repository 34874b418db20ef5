#!/usr/bin/env node
// Replay throughput on bulk TLS 1.3 AES-128-GCM traffic (scripts/bench/make-bulk.sh bulk).
//
//   npm run build && node bench/replay.mjs [--runs N] [--workers N] [--no-tshark] [--no-openssl]
//                                          [--capture F --keylog K]
//
// Each run is a fresh node process (bench/lib/replay-child.mjs) replaying the capture through the
// whole pipeline (events serialised to /dev/null). Figures are for the median run by wall time:
// Gbps = capture wire bytes (sum of frame lengths) * 8 / wall time. Compared in the same
// invocation with tshark decrypting every record (-Y http, which needs the decrypted HTTP) and with
// `openssl speed -evp aes-128-gcm -bytes 16384` (raw one-core AES-GCM, the ceiling for our record
// decryption).
import { parseArgs } from 'node:util';
import { CACHE, fmt, fmt0, mb, median, need, needBuild, opensslSpeed, printMachine, tsharkDecrypt, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '3' }, workers: { type: 'string', default: '1' },
  'no-tshark': { type: 'boolean' }, 'no-openssl': { type: 'boolean' },
  capture: { type: 'string', default: `${CACHE}/bulk.pcap` }, keylog: { type: 'string', default: `${CACHE}/bulk.keys.log` },
} });
needBuild();
need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh bulk');
printMachine();
waitQuiet();
console.log(`input: ${values.capture}`);

const runs = [];
for (let i = 0; i < Number(values.runs); i++) {
  const r = runReplay(values.capture, values.keylog, Number(values.workers));
  runs.push(r);
  console.log(`  run ${i + 1}: ${fmt(r.wallNs / 1e9, 3)} s, peak RSS ${mb(r.peakRssBytes)}`);
}
const r = runs.find((x) => x.wallNs === median(runs.map((y) => y.wallNs))) ?? runs[0];
const s = r.stats, t = r.wallNs / 1e9;
const gbps = (s.bytes * 8) / t / 1e9;
console.log(`tlsdecrypt replay --workers ${values.workers} (median of ${runs.length}):`);
console.log(`  ${fmt(t, 3)} s wall, ${fmt(gbps)} Gbps on the wire (${mb(s.bytes)} in ${fmt0(s.packets)} packets)`);
console.log(`  ${fmt0(s.packets / t)} packets/s, ${fmt(s.tlsFlows / t, 1)} sessions/s (${s.tlsFlows} sessions: ${JSON.stringify(s.sessionsByStatus)})`);
console.log(`  ${fmt(s.decryptedBytes / t / 2 ** 20, 1)} MiB/s decrypted (${mb(s.decryptedBytes)}), ${r.events} events, anomalies ${JSON.stringify(s.anomalies)}`);
console.log(`  peak RSS ${mb(Math.max(...runs.map((x) => x.peakRssBytes)))}; CPU user ${fmt(r.cpuUserUs / 1e6, 2)} s + sys ${fmt(r.cpuSysUs / 1e6, 2)} s`);

if (!values['no-openssl']) {
  const o = opensslSpeed('aes-128-gcm', 16384, 3);
  if (o) {
    console.log(`openssl speed -evp aes-128-gcm -bytes 16384 -seconds 3: ${fmt(o.bytesPerSec / 2 ** 20, 1)} MiB/s = ${fmt((o.bytesPerSec * 8) / 1e9)} Gbps  [${o.line}]`);
    console.log(`  tlsdecrypt decrypted-bytes rate / openssl AES-128-GCM rate = ${fmt(s.decryptedBytes / t / o.bytesPerSec, 3)}`);
  } else console.log('openssl speed: no output parsed');
}

if (!values['no-tshark']) {
  const ts = tsharkDecrypt(values.capture, values.keylog);
  if (ts.error) console.log(ts.error);
  else {
    console.log(`${ts.command}: ${fmt(ts.seconds, 2)} s, ${fmt((s.bytes * 8) / ts.seconds / 1e9, 3)} Gbps (${ts.frames} HTTP frames decrypted)`);
    console.log(`  tlsdecrypt is ${fmt(ts.seconds / t, 1)}x tshark`);
  }
}
