#!/usr/bin/env node
// Replay watermark of `run` (issue 12), without a broker: what a partition takeover costs the new
// owner, and what the watermark costs in steady state.
//
//   npm run build && node bench/rebalance.mjs [--capture .cache/bench/sessions-16k.pcap] [--keylog ...]
//       [--partitions 8] [--takeovers 20] [--rounds 3] [--record-bytes 4096]
//
// The capture is cut into packets-topic records as `publish pcap` does (flow hash % partitions,
// records of about --record-bytes), then read by one engine shard (ShardCore, as `run` uses) in
// fetch-sized batches (1 MiB; capture-time tick and take() after each).
//  1. Steady state: the whole capture read with the watermark on (--replay-window 120) and off (0),
//     alternated --rounds times; CPU seconds (user+system) of the read, ratio on/off.
//  2. Takeovers: at --takeovers points spread over the capture, each partition's commit (the low
//     watermark) and read position are noted; the bytes between them are what a new owner re-reads.
//     For each point and partition a fresh shard reads that region (the catch-up): CPU ms, p50/p99.
//     The group's own rebalance time (join, sync, session timeout after a crash) comes on top:
//     bench/takeover.mjs measures it end to end on a real broker.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CACHE, fmt, fmt0, mb, median, needBuild, printMachine } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    capture: { type: 'string', default: `${CACHE}/sessions-16k.pcap` },
    keylog: { type: 'string', default: `${CACHE}/sessions-16k.keys.log` },
    partitions: { type: 'string', default: '8' },
    takeovers: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    'record-bytes': { type: 'string', default: '4096' },
    window: { type: 'string', default: '120' },
    'max-bytes': { type: 'string', default: String(256 * 1024 * 1024) },
  },
});
const P = Number(values.partitions);
needBuild();
const d = (p) => import(new URL(`../dist/src/${p}`, import.meta.url).href);
const { CaptureReader } = await d('capture/index.js');
const { newDecodedPacket } = await d('decode/index.js');
const { packetHash } = await d('pipeline/flowHash.js');
const { ShardCore } = await d('kafka/shards.js');
printMachine();
console.log(`capture ${values.capture}, ${P} partitions, records of ~${values['record-bytes']} bytes`);

// ---- records ------------------------------------------------------------------------------
const packets = [];
const reader = new CaptureReader({ packet: (p) => packets.push({ ...p, data: Buffer.from(p.data), ts: { ...p.ts } }), secrets() {}, anomaly() {} });
reader.push(readFileSync(values.capture));
reader.end();
const scratch = newDecodedPacket();
const recordBytes = Number(values['record-bytes']);
/** records in capture order: { partition, offset, pos, bytes, packets: [] } */
const records = [];
const open = new Array(P).fill(undefined);
const nextOff = new Array(P).fill(0);
const pos = new Array(P).fill(0);
for (const p of packets) {
  const h = packetHash(p, true, scratch);
  const part = h < 0 ? 0 : h % P;
  let r = open[part];
  if (!r) {
    r = open[part] = { partition: part, offset: nextOff[part]++, pos: pos[part], bytes: 24, packets: [] };
    records.push(r);
  }
  r.packets.push(p);
  r.bytes += 16 + p.data.length;
  if (r.bytes >= recordBytes) {
    pos[part] += r.bytes;
    open[part] = undefined;
  }
}
for (const r of open) if (r) pos[r.partition] += r.bytes;
const totalBytes = records.reduce((a, r) => a + r.bytes, 0);
console.log(`${fmt0(packets.length)} packets, ${fmt0(records.length)} records, ${mb(totalBytes)}`);

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Reads records[from..to) (only those of `only` partitions when given, from `start` offsets). */
function read(core, list, onBatch) {
  let batch = 0;
  let maxTs = { sec: 0, nsec: 0 };
  const fed = new Map();
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    core.watermark.at(r.partition, r.offset, r.pos, 0);
    for (const p of r.packets) {
      if (p.ts.sec > maxTs.sec || (p.ts.sec === maxTs.sec && p.ts.nsec > maxTs.nsec)) maxTs = p.ts;
      core.packet({ ...p, ts: p.ts });
    }
    fed.set(r.partition, r.offset + 1);
    batch += r.bytes;
    if (batch >= 1 << 20 || i === list.length - 1) {
      batch = 0;
      core.tick(maxTs);
      const out = core.take();
      onBatch?.(i, out, fed);
    }
  }
}

const keylogs = [values.keylog];
const wm = { windowSec: Number(values.window), maxBytes: Number(values['max-bytes']) };

// ---- 1. steady state, on vs off ----------------------------------------------------------
const rounds = Number(values.rounds);
const on = [], off = [];
const ratios = [];
for (let i = 0; i < rounds; i++) {
  // alternated, and the order swapped every round (warm-up and drift hit both sides)
  const order = i % 2 ? [['on', on], ['off', off]] : [['off', off], ['on', on]];
  for (const [label, list] of order) {
    const core = new ShardCore({ keylogs, rsaKeys: [], engine: {}, watermark: label === 'on' ? wm : { windowSec: 0, maxBytes: 0 } });
    const t0 = cpu();
    let events = 0;
    read(core, records, (_i, out) => (events += out.values.length));
    core.finish();
    events += core.take().values.length;
    list.push(cpu() - t0);
    console.log(`round ${i + 1} watermark ${label}: ${fmt0(list[list.length - 1])} ms CPU, ${fmt0(events)} events`);
  }
  ratios.push(on[on.length - 1] / off[off.length - 1]);
}
const mOn = median(on), mOff = median(off);
if (rounds) console.log(`steady state: watermark on ${fmt0(mOn)} ms, off ${fmt0(mOff)} ms (medians of ${rounds}); on/off of the medians ${fmt(mOn / mOff, 3)}, median of the per-round ratios ${fmt(median(ratios), 3)} (rounds: ${ratios.map((r) => fmt(r, 2)).join(' ')}); ${fmt(totalBytes / 2 ** 20 / (mOn / 1000), 0)} MiB/s with it on`);

// ---- 2. takeovers ----------------------------------------------------------------------------
const K = Number(values.takeovers);
const points = new Set(Array.from({ length: K }, (_, k) => Math.floor(((k + 1) * records.length) / (K + 1))));
const snaps = [];
{
  const core = new ShardCore({ keylogs, rsaKeys: [], engine: {}, watermark: wm });
  let released = 0;
  read(core, records, (i, out, fed) => {
    released = core.engine.stats.anomalies.flow_replay_released ?? 0;
    // the first batch end at or after each point
    for (const p of points) {
      if (i >= p) {
        points.delete(p);
        const commit = new Map();
        for (const [part, f] of fed) commit.set(part, Math.min(f, out.low?.[part] ?? f));
        snaps.push({ i, commit, fed: new Map(fed), open: core.engine.activeFlows });
      }
    }
  });
  console.log(`flows released by the window/bound while reading: ${released}`);
}
const byPart = Array.from({ length: P }, () => []);
for (const r of records) byPart[r.partition].push(r);
const reread = [], catchup = [], flowsRebuilt = [], perPoint = [];
for (const s of snaps) {
  let sum = 0;
  for (let part = 0; part < P; part++) {
    const from = s.commit.get(part), to = s.fed.get(part);
    if (from === undefined) continue;
    const region = byPart[part].filter((r) => r.offset >= from && r.offset < to);
    reread.push(region.reduce((a, r) => a + r.bytes, 0));
    sum += reread[reread.length - 1];
    const core = new ShardCore({ keylogs, rsaKeys: [], engine: {}, watermark: wm });
    const t0 = cpu();
    read(core, region);
    catchup.push(cpu() - t0);
    flowsRebuilt.push(core.engine.activeFlows);
  }
  perPoint.push(sum);
}
const kb = (n) => `${fmt(n / 1024, 1)} KiB`;
const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))];
};
console.log(`takeovers: ${snaps.length} points x ${P} partitions = ${reread.length} partition takeovers`);
console.log(`bytes re-read per partition takeover: p50 ${kb(pct(reread, 0.5))}, p99 ${kb(pct(reread, 0.99))}, max ${kb(Math.max(...reread))}; per point, all ${P} partitions together: p50 ${kb(pct(perPoint, 0.5))}, p99 ${kb(pct(perPoint, 0.99))}`);
console.log(`catch-up CPU per partition takeover: p50 ${fmt(pct(catchup, 0.5), 1)} ms, p99 ${fmt(pct(catchup, 0.99), 1)} ms; open flows rebuilt p50 ${pct(flowsRebuilt, 0.5)}, p99 ${pct(flowsRebuilt, 0.99)}`);
