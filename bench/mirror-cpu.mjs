#!/usr/bin/env node
// 6b. CPU per datagram of the mirror receiver's stages, without the socket: VXLAN datagrams of
// mirror-1400.pcap (fresh Buffers, as dgram hands them over) go through MirrorReceiver.onDatagram
// -> decapsulation -> decode/partition -> PartitionBatcher, A = with a producer that drops the
// records (receive-side cost only), B = with the kafkajs producer into the local broker, C = with
// the native producer (src/kafka/produce.ts) into the same broker; both acks=all, idempotent.
// A, B and C alternate, --runs times each; CPU seconds from process.cpuUsage (this process only:
// the broker's own CPU is not in it). Datagrams/s per core = 1e6 / (us per datagram).
//
//   npm run build && node bench/mirror-cpu.mjs [--datagrams 50000] [--runs 3] [--brokers 127.0.0.1:19092]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CACHE, ROOT, fmt, fmt0, median, need, needBuild, printMachine } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    datagrams: { type: 'string', default: '50000' },
    runs: { type: 'string', default: '3' },
    brokers: { type: 'string', default: '127.0.0.1:19092' },
    'batch-bytes': { type: 'string', default: String(512 * 1024) },
    capture: { type: 'string', default: `${CACHE}/mirror-1400.pcap` },
  },
});
needBuild();
need(values.capture, 'make it with: sudo bash bench/make-mirror-capture.sh');
const { PartitionBatcher } = await import(`${ROOT}dist/src/kafka/batcher.js`);
const { MirrorReceiver } = await import(`${ROOT}dist/src/kafka/mirror.js`);
const { openPacketsTopic } = await import(`${ROOT}dist/src/kafka/publish.js`);
const { createKafkaClient } = await import(`${ROOT}dist/src/kafka/adapter.js`);

printMachine();
console.log(`load average: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (shared machine)`);
const N = Number(values.datagrams);
const bb = Number(values['batch-bytes']);
const b = readFileSync(values.capture);
const datagrams = [];
for (let o = 24; o + 16 <= b.length && datagrams.length < 4000; ) {
  const n = b.readUInt32LE(o + 8);
  datagrams.push(Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 42, 0]), b.subarray(o + 16, o + 16 + n)]));
  o += 16 + n;
}
const client = createKafkaClient({ brokers: [values.brokers], clientId: 'h13-bench-mirror-cpu' });
const topic = `h13.bench.cpu.${Date.now().toString(36)}`;
const { producer, partitions } = await openPacketsTopic(client, topic, 8, { impl: 'kafkajs' });
const native = await client.producer({ impl: 'native' });
const nullProducer = { send: async () => {}, close: async () => {} };

async function once(kafka) {
  const p = kafka === 'kafkajs' ? producer : kafka === 'native' ? native : nullProducer;
  const batcher = new PartitionBatcher({ producer: async () => p }, { topic, partitions, batchBytes: bb, lingerMs: 100, maxBufferBytes: 256 << 20, onKafkaError: 'fail', overflow: 'refuse' }, p);
  const rx = new MirrorReceiver(batcher, { listen: [], topic, partitions, lingerMs: 100, batchBytes: bb, maxBufferBytes: 256 << 20 }, partitions);
  rx.stats.datagrams.bench = 0;
  rx.stats.bytes.bench = 0;
  const rinfo = { address: '10.93.2.1', family: 'IPv4', port: 40000, size: 0 };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    rx.onDatagram(Buffer.from(datagrams[i % datagrams.length]), rinfo, 'bench', 'vxlan');
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await batcher.flush();
  const c = process.cpuUsage(c0);
  if (batcher.stats.publishedPackets !== N || batcher.stats.drops.buffer_full) throw new Error(`lost packets: ${JSON.stringify(batcher.stats)}`);
  return { us: (c.user + c.system) / N, wall: performance.now() - t0 };
}

await once(false); // warm-up
await once('native');
await once('kafkajs');
const A = [];
const B = [];
const C = [];
for (let r = 0; r < Number(values.runs); r++) {
  A.push(await once(false));
  B.push(await once('kafkajs'));
  C.push(await once('native'));
}
const ua = median(A.map((x) => x.us));
const ub = median(B.map((x) => x.us));
const uc = median(C.map((x) => x.us));
console.log(`per run, us per datagram: A ${A.map((x) => fmt(x.us, 1)).join(' ')} | B ${B.map((x) => fmt(x.us, 1)).join(' ')} | C ${C.map((x) => fmt(x.us, 1)).join(' ')}`);
console.log(`${fmt0(N)} datagrams of 1,408 bytes (VXLAN + 1,400-byte frame) per run, ${values.runs} runs each, alternated, medians:`);
console.log(`A receive side only (decap, decode, partition, batch): ${fmt(ua, 1)} us CPU per datagram = ${fmt0(1e6 / ua)} datagrams/s per core = ${fmt((1e6 / ua) * 1400 * 8 / 1e9, 2)} Gbps of frames`);
console.log(`B + kafkajs producer into ${values.brokers}: ${fmt(ub, 1)} us CPU per datagram = ${fmt0(1e6 / ub)} datagrams/s per core = ${fmt((1e6 / ub) * 1400 * 8 / 1e9, 2)} Gbps of frames (B/A ${fmt(ub / ua, 1)}x)`);
console.log(`C + native producer into ${values.brokers}: ${fmt(uc, 1)} us CPU per datagram = ${fmt0(1e6 / uc)} datagrams/s per core = ${fmt((1e6 / uc) * 1400 * 8 / 1e9, 2)} Gbps of frames (C/A ${fmt(uc / ua, 1)}x; producing alone: kafkajs ${fmt(ub - ua, 1)} us, native ${fmt(uc - ua, 1)} us per datagram)`);
console.log(`load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
await producer.close();
await native.close();
