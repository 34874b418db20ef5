#!/usr/bin/env node
// New-session rate: 3,200 short connections, each a full handshake (1,600 TLS 1.2 ECDHE-RSA
// AES-128-GCM + 1,600 TLS 1.3 AES-128-GCM, curl --no-sessionid against nginx, one GET of a 2 KB
// page each; scripts/bench/make-bulk.sh sessions), replayed on one thread.
//
//   npm run build && node bench/sessions.mjs [--runs N] [--workers N] [--no-tshark] [--no-openssl]
//                                            [--capture F --keylog K]
//
// Each run is a fresh process; sessions/s = TLS sessions / wall time of the replay (the key log
// of 9,600 lines is loaded inside the measured time, as in `tlsdecrypt replay`). Then tshark on the
// same capture and key log (sessions/s and the ratio), and `openssl speed` for AES-128-GCM.
import { parseArgs } from 'node:util';
import { CACHE, fmt, fmt0, mb, median, need, needBuild, opensslSpeed, printMachine, tsharkDecrypt, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '3' }, workers: { type: 'string', default: '1' },
  'no-tshark': { type: 'boolean' }, 'no-openssl': { type: 'boolean' },
  capture: { type: 'string', default: `${CACHE}/sessions.pcap` }, keylog: { type: 'string', default: `${CACHE}/sessions.keys.log` },
} });
needBuild();
need(values.capture, 'make it with: sudo scripts/bench/make-bulk.sh sessions');
printMachine();
waitQuiet();
const rs = [];
for (let i = 0; i < Number(values.runs); i++) {
  const r = runReplay(values.capture, values.keylog, Number(values.workers));
  rs.push(r);
  console.log(`  run ${i + 1}: ${fmt(r.wallNs / 1e9, 3)} s, ${fmt0(r.stats.tlsFlows / (r.wallNs / 1e9))} sessions/s`);
}
const t = median(rs.map((r) => r.wallNs)) / 1e9;
const best = Math.min(...rs.map((r) => r.wallNs)) / 1e9;
const s = rs[0].stats;
console.log(`tlsdecrypt replay --workers ${values.workers}, ${s.tlsFlows} sessions ${JSON.stringify(s.sessionsByStatus)}, ${s.packets} packets, ${r2(s.bytes)} on the wire, ${rs[0].events} events:`);
console.log(`  median ${fmt(t, 3)} s -> ${fmt0(s.tlsFlows / t)} new sessions/s (best run ${fmt0(s.tlsFlows / best)}/s); ${fmt0(s.packets / t)} packets/s; ` +
  `${fmt(((rs[0].cpuUserUs + rs[0].cpuSysUs) / s.tlsFlows), 0)} us CPU per session; peak RSS ${mb(Math.max(...rs.map((r) => r.peakRssBytes)))}`);
console.log(`  ${fmt((s.bytes * 8) / t / 1e9, 3)} Gbps on the wire, ${fmt(s.decryptedBytes / t / 2 ** 20, 1)} MiB/s decrypted; anomalies ${JSON.stringify(s.anomalies)}`);

if (!values['no-tshark']) {
  const ts = tsharkDecrypt(values.capture, values.keylog);
  if (ts.error) console.log(ts.error);
  else {
    console.log(`${ts.command}: ${fmt(ts.seconds, 2)} s -> ${fmt0(s.tlsFlows / ts.seconds)} sessions/s (${ts.frames} HTTP frames decrypted)`);
    console.log(`  tlsdecrypt is ${fmt(ts.seconds / t, 1)}x tshark (the same capture and key log, wall time of each)`);
  }
}
if (!values['no-openssl']) {
  // The sessions' records are small (most under 100 bytes, the largest ~2.3 KB): the cipher's rate
  // on 1 KB blocks, against which the decrypted-bytes rate shows how little of the time is AES.
  const o = opensslSpeed('aes-128-gcm', 1024, 3);
  if (o) console.log(`openssl speed -evp aes-128-gcm -bytes 1024 -seconds 3: ${fmt(o.bytesPerSec / 2 ** 20, 1)} MiB/s; tlsdecrypt's decrypted-bytes rate is ${fmt(s.decryptedBytes / t / o.bytesPerSec, 4)} of it`);
  else console.log('openssl speed: no output parsed');
}
function r2(b) { return mb(b); }
