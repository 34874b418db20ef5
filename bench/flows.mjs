#!/usr/bin/env node
// Memory with 100,000 concurrent flows: each flow is a TCP handshake (SYN, SYN-ACK, ACK) and a
// real curl TLS 1.3 ClientHello (from fixtures/https/tls13-aes128gcm-h2, client random changed
// per flow) on a distinct 5-tuple; none is closed. Fed packet by packet into one Engine (no key
// log for these flows: they wait for a ServerHello / keys, as on a busy sensor), then RSS is read.
//
//   npm run build && node bench/flows.mjs [--flows N]
//
// Prints the RSS before and after, the peak (VmHWM), the V8 heap, and bytes per flow.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ROOT, fmt, fmt0, mb, needBuild, printMachine, waitQuiet } from './lib/common.mjs';

const { values } = parseArgs({ options: { flows: { type: 'string', default: '100000' } } });
const FLOWS = Number(values.flows);
needBuild();
const d = (p) => import(new URL(`../dist/src/${p}`, import.meta.url).href);
const { CaptureReader } = await d('capture/index.js');
const { decodePacket, newDecodedPacket } = await d('decode/index.js');
const { Engine } = await d('pipeline/engine.js');
const { SecretsStore } = await d('tls/crypto/keylog.js');
printMachine();
waitQuiet();

// The ClientHello TCP payload from a real capture.
let hello;
{
  const dp = newDecodedPacket();
  const sink = {
    packet(p) { if (!hello && decodePacket(p, dp, this) === 'tcp' && dp.payloadLen > 0 && dp.dstPort === 443) hello = Buffer.from(dp.payload.subarray(0, dp.payloadLen)); },
    secrets() {}, anomaly() {},
  };
  const r = new CaptureReader(sink);
  r.push(readFileSync(`${ROOT}fixtures/https/tls13-aes128gcm-h2/capture.pcap`));
  r.end();
}
if (!hello || hello[0] !== 22 || hello[5] !== 1) throw new Error('no ClientHello found in the fixture');

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const hwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

// Ethernet / IPv4 / TCP frame (checksums left zero: the decoder does not verify them, like a
// sensor behind checksum offload).
const frame = Buffer.alloc(14 + 20 + 20 + hello.length);
function build(src, dst, sport, dport, seq, ack, flags, payload) {
  const len = 54 + (payload ? payload.length : 0);
  const f = frame.subarray(0, len);
  f.fill(0, 0, 54);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(len - 14, 16);
  f[22] = 64; f[23] = 6;
  f.writeUInt32BE(src, 26); f.writeUInt32BE(dst, 30);
  f.writeUInt16BE(sport, 34); f.writeUInt16BE(dport, 36);
  f.writeUInt32BE(seq >>> 0, 38); f.writeUInt32BE(ack >>> 0, 42);
  f[46] = 0x50; f[47] = flags; f.writeUInt16BE(64240, 48);
  if (payload) payload.copy(f, 54);
  return f;
}
const SYN = 0x02, ACK = 0x10, PSH = 0x08;
let events = 0;
const engine = new Engine(() => { events++; }, { secrets: new SecretsStore(), rsaKeys: [] }, {});
global.gc?.();
const before = rss();
const t0 = process.hrtime.bigint();
const server = (10 << 24) | (99 << 16) | 1;
for (let i = 0; i < FLOWS; i++) {
  const client = (10 << 24) | (1 + (i >>> 14)) << 16 | ((i >>> 6) & 0xff) << 8 | 1 + (i & 0x3f);
  const sport = 20000 + (i % 40000);
  const ts = { sec: 1_700_000_000 + Math.floor(i / 20000), nsec: (i % 20000) * 50_000 };
  const cs = 1000 + i, ss = 5000 + i;
  hello.writeUInt32BE(i, 11); // client random: distinct per flow
  // one frame buffer, rebuilt per packet (the engine copies what it keeps)
  const feed = (data) => engine.packet({ linktype: 1, ts, data, origLen: data.length, ifIndex: 0 });
  feed(build(client, server, sport, 443, cs, 0, SYN));
  feed(build(server, client, 443, sport, ss, cs + 1, SYN | ACK));
  feed(build(client, server, sport, 443, cs + 1, ss + 1, ACK));
  feed(build(client, server, sport, 443, cs + 1, ss + 1, ACK | PSH, hello));
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
if (process.env.FLOWS_HEAPSNAPSHOT) (await import("node:v8")).writeHeapSnapshot(process.env.FLOWS_HEAPSNAPSHOT);
const after = rss();
global.gc?.();
const afterGc = rss();
const heap = process.memoryUsage();
const s = engine.stats;
console.log(`${fmt0(FLOWS)} flows (4 packets each, ClientHello ${hello.length} B) in ${fmt(ms / 1000, 2)} s (${fmt0((FLOWS * 4) / (ms / 1000))} packets/s, ${fmt0(FLOWS / (ms / 1000))} flows/s)`);
console.log(`  active flows ${fmt0(engine.activeFlows)}, TLS flows ${fmt0(s.tlsFlows)}, events ${events}, anomalies ${JSON.stringify(s.anomalies)}`);
console.log(`  RSS before ${mb(before)}, after ${mb(after)}${global.gc ? `, after full GC ${mb(afterGc)}` : ''}; peak (VmHWM) ${mb(hwm())}`);
console.log(`  V8 heap used ${mb(heap.heapUsed)}, external ${mb(heap.external)}, array buffers ${mb(heap.arrayBuffers)}`);
console.log(`  ${fmt0((afterGc - before) / FLOWS)} bytes of RSS per flow; target: peak <= 500 MiB -> ${hwm() <= 500 * 2 ** 20 ? 'met' : 'MISSED'}`);
