#!/usr/bin/env node
// New-session rate: 3,200 short connections, each a full handshake (1,600 TLS 1.2 ECDHE-RSA
// AES-128-GCM + 1,600 TLS 1.3 AES-128-GCM, curl --no-sessionid against nginx, one GET of a 2 KB
// page each; scripts/bench/make-bulk.sh sessions), replayed on one thread.
//
//   npm run build && node bench/sessions.mjs [--runs N] [--workers N]
//
// Each run is a fresh process; sessions/s = TLS sessions / wall time of the replay (the key log
// of 9,600 lines is loaded inside the measured time, as in `tlsdecrypt replay`).
import { parseArgs } from 'node:util';
import { CACHE, fmt, fmt0, mb, median, need, needBuild, printMachine, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '3' }, workers: { type: 'string', default: '1' },
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
console.log(`  anomalies ${JSON.stringify(s.anomalies)}`);
function r2(b) { return mb(b); }
