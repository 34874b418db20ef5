#!/usr/bin/env node
// New-session rate: 3,200 short connections, each a full handshake (1,600 TLS 1.2 ECDHE-RSA
// AES-128-GCM + 1,600 TLS 1.3 AES-128-GCM, curl --no-sessionid against nginx, one GET of a 2 KB
// page each; scripts/bench/make-bulk.sh sessions), replayed on one thread.
//
//   npm run build && node bench/sessions.mjs [--runs N] [--workers N] [--no-tshark] [--no-openssl]
//                                            [--capture F --keylog K] [--captures NAME,NAME]
//                                            [--base DIR] [--no-cli-flags]
//
// CPU per session: every run reports the CPU time (user + system) of the replay process and of
// tshark, divided by the TLS sessions. `--captures nosni,sessions-16k` measures several captures
// of .cache/bench (NAME.pcap + NAME.keys.log) in one go; `--base DIR` (another checkout, built)
// alternates its replay with this one run by run (A/B on a shared machine: compare the ratios).
// Each build's replay child runs with the node flags of that build's CLI shebang
// (none today: see README, Node flags); --no-cli-flags runs both without.
//
// Each run is a fresh process; sessions/s = TLS sessions / wall time of the replay (the key log
// of 9,600 lines is loaded inside the measured time, as in `tlsdecrypt replay`). Then tshark on the
// same capture and key log (sessions/s and the ratio), and `openssl speed` for AES-128-GCM.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CACHE, fmt, fmt0, mb, median, need, needBuild, opensslSpeed, printMachine, tsharkDecrypt, waitQuiet, runReplay } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  runs: { type: 'string', default: '3' }, workers: { type: 'string', default: '1' },
  'no-tshark': { type: 'boolean' }, 'no-openssl': { type: 'boolean' },
  capture: { type: 'string', default: `${CACHE}/sessions.pcap` }, keylog: { type: 'string', default: `${CACHE}/sessions.keys.log` },
  captures: { type: 'string' }, base: { type: 'string' }, 'no-cli-flags': { type: 'boolean' },
} });
needBuild();
if (values.captures) {
  cpuPerSession(values.captures.split(','));
  process.exit(0);
}
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

/** CPU seconds (user + system) of this process's waited-for children so far. */
function childCpu() {
  const st = readFileSync('/proc/self/stat', 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}

/**
 * The node flags a build's CLI runs with (its shebang, `#!/usr/bin/env -S node FLAGS`), so the
 * measured child runs as `tlsdecrypt replay` does; none with --no-cli-flags or for a build whose
 * shebang has none.
 */
function cliFlags(root) {
  if (values['no-cli-flags']) return [];
  const first = readFileSync(`${root}/dist/src/cli.js`, 'utf8').split('\n', 1)[0];
  const m = /^#!\/usr\/bin\/env -S node (.+)$/.exec(first);
  return m ? m[1].trim().split(/\s+/) : [];
}

function replayAt(root, capture, keylog) {
  const r = spawnSync(process.execPath, [...cliFlags(root), `${root}/bench/lib/replay-child.mjs`, capture, keylog, '1'], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`replay child in ${root} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** A (--base), B (this checkout) and tshark alternated run by run on each capture: CPU per session. */
function cpuPerSession(names) {
  printMachine();
  waitQuiet();
  const here = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
  for (const name of names) {
    const capture = `${CACHE}/${name}.pcap`, keylog = `${CACHE}/${name}.keys.log`;
    need(capture, `make it with: sudo scripts/bench/make-bulk.sh ${name === 'nosni' ? 'nosni' : 'sessions'}`);
    const rows = { A: [], B: [], tshark: [] };
    let sessions = 0, wireBytes = 0, events = {};
    for (let i = 0; i < Number(values.runs); i++) {
      const order = values.base ? (i % 2 ? ['B', 'A'] : ['A', 'B']) : ['B'];
      for (const who of order) {
        const r = replayAt(who === 'A' ? values.base : here, capture, keylog);
        sessions = r.stats.tlsFlows;
        wireBytes = r.stats.bytes;
        events[who] = r.events;
        rows[who].push((r.cpuUserUs + r.cpuSysUs) / 1e6);
      }
      if (!values['no-tshark']) {
        const c0 = childCpu();
        const ts = tsharkDecrypt(capture, keylog);
        if (ts.error) { console.log(ts.error); values['no-tshark'] = true; } else rows.tshark.push(childCpu() - c0);
      }
      console.log(`  ${name} run ${i + 1}: ` + Object.entries(rows).filter(([, v]) => v.length > i).map(([k, v]) => `${k} ${fmt(v[i], 2)} s`).join(', '));
    }
    if (values.base) console.log(`  node flags: A ${JSON.stringify(cliFlags(values.base))}, B ${JSON.stringify(cliFlags(here))} (from each build's dist/src/cli.js shebang)`);
    console.log(`${name}: ${sessions} TLS sessions; events ${JSON.stringify(events)}; CPU per session (median of ${values.runs}, process start to exit for tlsdecrypt replay, tshark -Y http):`);
    const med = Object.fromEntries(Object.entries(rows).filter(([, v]) => v.length).map(([k, v]) => [k, median(v)]));
    for (const [k, v] of Object.entries(med)) console.log(`  ${k.padEnd(6)} ${fmt(v, 3)} s CPU = ${fmt0((v / sessions) * 1e6)} us/session = ${fmt0(sessions / v)} sessions per CPU-second = ${fmt((wireBytes * 8) / v / 1e9, 2)} Gbps (wire bytes) per CPU-second`);
    if (med.tshark) for (const k of ['A', 'B']) if (med[k]) console.log(`  ${k}: ${fmt(med[k] / med.tshark, 2)} of tshark's CPU per session`);
    if (med.A && med.B) {
      const ratios = rows.A.map((a, i) => rows.B[i] / a);
      console.log(`  B/A per run: ${ratios.map((x) => fmt(x, 2)).join(' ')} (median ${fmt(median(ratios), 2)})`);
    }
  }
}
