#!/usr/bin/env node
// Marginal CPU per new session: what one more session costs once the process is running (the
// streaming deployment, `run`), for tlsdecrypt and for tshark, from the same captures.
//
//   npm run build && node bench/sessions-marginal.mjs [--capture NAME] [--copies K] [--runs N]
//
// NAME.pcap / NAME.keys.log of .cache/bench (default nosni: 3,000 full handshakes, no SNI,
// self-signed; scripts/bench/make-bulk.sh nosni). The capture is copied K times one after another
// (copy i from client address 10.(i>>8).(i&255).1, its own timestamps: K times the sessions,
// the same key log) into NAME-xK.pcap. Each tool replays the original and the K-fold file in fresh
// processes, alternated run by run; CPU (user + system, all threads) of the K-fold run minus that
// of the original, divided by (K - 1) × sessions, is the cost of a session with start-up, module
// loading and the JIT's warm-up taken out — for tshark its start-up (dissector registration, ~0.5 s
// of CPU) likewise. `bench/sessions.mjs` measures the whole fresh process (issue 15's measure).
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CACHE, ROOT, fmt, fmt0, median, need, needBuild, printMachine, tsharkDecrypt, waitQuiet } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  capture: { type: 'string', default: 'nosni' }, copies: { type: 'string', default: '4' }, runs: { type: 'string', default: '3' },
} });
needBuild();
const K = Number(values.copies);
const base = `${CACHE}/${values.capture}.pcap`;
const keylog = `${CACHE}/${values.capture}.keys.log`;
need(base, 'make it with: sudo scripts/bench/make-bulk.sh nosni');
const multi = `${CACHE}/${values.capture}-x${K}.pcap`;
if (!existsSync(multi)) writeFileSync(multi, copies(readFileSync(base), K));

printMachine();
waitQuiet();
const rows = { ours1: [], oursK: [], tshark1: [], tsharkK: [] };
let sessions = 0;
for (let r = 0; r < Number(values.runs); r++) {
  for (const [k, file] of r % 2 ? [['oursK', multi], ['ours1', base]] : [['ours1', base], ['oursK', multi]]) {
    const out = ours(file);
    if (k === 'ours1') sessions = out.stats.tlsFlows;
    rows[k].push(out.cpu);
  }
  for (const [k, file] of r % 2 ? [['tsharkK', multi], ['tshark1', base]] : [['tshark1', base], ['tsharkK', multi]]) {
    const c0 = childCpu();
    const ts = tsharkDecrypt(file, keylog);
    if (ts.error) throw new Error(ts.error);
    rows[k].push(childCpu() - c0);
  }
  console.log(`  run ${r + 1}: ` + Object.entries(rows).map(([k, v]) => `${k} ${fmt(v[r], 2)} s`).join(', '));
}
const m = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, median(v)]));
const per = (one, many) => (many - one) / ((K - 1) * sessions);
const usOurs = per(m.ours1, m.oursK) * 1e6;
const usTshark = per(m.tshark1, m.tsharkK) * 1e6;
console.log(`${values.capture}: ${sessions} sessions, x${K} = ${sessions * K}; medians of ${values.runs} fresh processes (CPU s): ` +
  Object.entries(m).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(', '));
console.log(`  whole process: tlsdecrypt ${fmt0((m.ours1 / sessions) * 1e6)} us/session (x1), ${fmt0((m.oursK / (K * sessions)) * 1e6)} (x${K}); tshark ${fmt0((m.tshark1 / sessions) * 1e6)} / ${fmt0((m.tsharkK / (K * sessions)) * 1e6)}`);
console.log(`  marginal: tlsdecrypt ${fmt0(usOurs)} us per session = ${fmt0(1e6 / usOurs)} sessions per CPU-second; tshark ${fmt0(usTshark)} us; tlsdecrypt / tshark ${fmt(usOurs / usTshark, 2)}`);
const ratios = rows.ours1.map((_, i) => per(rows.ours1[i], rows.oursK[i]) / per(rows.tshark1[i], rows.tsharkK[i]));
console.log(`  per run (marginal ratio): ${ratios.map((x) => fmt(x, 2)).join(' ')}`);

function ours(file) {
  const r = spawnSync(process.execPath, [`${ROOT}bench/lib/replay-child.mjs`, file, keylog, '1'], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`replay child failed (${r.status ?? r.signal}): ${r.stderr}`);
  const o = JSON.parse(r.stdout.trim().split('\n').pop());
  return { stats: o.stats, cpu: (o.cpuUserUs + o.cpuSysUs) / 1e6 };
}

/** CPU seconds (user + system) of this process's waited-for children so far. */
function childCpu() {
  const st = readFileSync('/proc/self/stat', 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}

/**
 * K copies of a classic little- or big-endian microsecond/nanosecond pcap of Ethernet + IPv4 one
 * after another: the client address (the source of the first SYN of each connection, else the
 * lower port's peer) becomes 10.(i>>8).(i&255).1 in copy i, timestamps shifted by the capture's
 * span; the IPv4 header checksum is recomputed (TCP checksums are not verified by either tool).
 */
function copies(buf, k) {
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4 || buf.readUInt32LE(0) === 0xa1b23c4d;
  const nano = (le ? buf.readUInt32LE(0) : buf.readUInt32BE(0)) === 0xa1b23c4d;
  const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  if ((le ? buf.readUInt32LE(20) : buf.readUInt32BE(20)) !== 1) throw new Error('copies: Ethernet captures only');
  const recs = [];
  for (let off = 24; off + 16 <= buf.length; ) {
    const incl = u32(off + 8);
    recs.push([off, incl]);
    off += 16 + incl;
  }
  const tsOf = ([off]) => u32(off) * 1e9 + u32(off + 4) * (nano ? 1 : 1000);
  const span = tsOf(recs[recs.length - 1]) - tsOf(recs[0]) + 1e6;
  // the client of each connection: the sender of a SYN without ACK
  const clients = new Set();
  for (const [off] of recs) {
    const f = off + 16;
    if (buf.readUInt16BE(f + 12) !== 0x0800 || buf[f + 23] !== 6) continue;
    const l4 = f + 14 + (buf[f + 14] & 15) * 4;
    if ((buf[l4 + 13] & 0x12) === 0x02) clients.add(buf.toString('hex', f + 26, f + 30) + buf.readUInt16BE(l4));
  }
  const out = Buffer.alloc(24 + (buf.length - 24) * k);
  buf.copy(out, 0, 0, 24);
  let w = 24;
  for (let i = 0; i < k; i++) {
    for (const rec of recs) {
      const [off, incl] = rec;
      buf.copy(out, w, off, off + 16 + incl);
      const t = tsOf(rec) + i * span;
      const sec = Math.floor(t / 1e9);
      const frac = nano ? t % 1e9 : Math.floor((t % 1e9) / 1000);
      if (le) { out.writeUInt32LE(sec, w); out.writeUInt32LE(frac, w + 4); } else { out.writeUInt32BE(sec, w); out.writeUInt32BE(frac, w + 4); }
      const f = w + 16;
      if (i > 0 && out.readUInt16BE(f + 12) === 0x0800) {
        const ihl = (out[f + 14] & 15) * 4;
        const l4 = f + 14 + ihl;
        const addr = [10, (i >> 8) & 255, i & 255, 1];
        if (clients.has(out.toString('hex', f + 26, f + 30) + out.readUInt16BE(l4))) out.set(addr, f + 26);
        else if (clients.has(out.toString('hex', f + 30, f + 34) + out.readUInt16BE(l4 + 2))) out.set(addr, f + 30);
        out.writeUInt16BE(0, f + 24);
        let s = 0;
        for (let j = 0; j < ihl; j += 2) s += out.readUInt16BE(f + 14 + j);
        while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
        out.writeUInt16BE(~s & 0xffff, f + 24);
      }
      w += 16 + incl;
    }
  }
  return out.subarray(0, w);
}
