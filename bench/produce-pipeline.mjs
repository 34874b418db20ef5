#!/usr/bin/env node
// 6b. The native producer alone into ONE partition (what one mirrored TCP flow becomes): MB/s of
// records acknowledged with N sends in flight, A/B alternated in one run. No receiver, no sender:
// this isolates the producer + broker path that `publish mirror` feeds (bench/mirror.mjs is the
// whole receiver).
//
//   npm run build && node bench/produce-pipeline.mjs [--brokers 127.0.0.1:19092 | --own-broker PORT
//                     [--broker-jvm stock|test]] [--sizes 262144,524288,2097152] [--in-flight 1,5]
//                     [--seconds 4] [--rounds 2]
//
// Each round, for each record size and in-flight count in turn: a fresh NativeProducer (adapter
// createKafkaClient, --producer native), records of SIZE bytes (one pcap-stream record of
// --batch-bytes SIZE) sent to partition 0 of a fresh 8-partition topic for --seconds, at most N
// sends outstanding (as the batcher keeps them: PartitionBatcher maxInFlight), each awaited.
// Printed: MB/s acknowledged, acknowledgement latency (median, p99), the process's CPU seconds.
// --own-broker PORT starts a broker with scripts/kafka.sh (TLSDECRYPT_KAFKA_JVM, default stock:
// Kafka's own JVM options), warms it up for --seconds, and stops it at the end.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ROOT, deleteTopics, fmt, needBuild, printMachine } from './lib/common.mjs';

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: '127.0.0.1:19092' },
    'own-broker': { type: 'string' },
    'broker-jvm': { type: 'string', default: 'stock' },
    sizes: { type: 'string', default: '262144,524288,2097152' },
    'in-flight': { type: 'string', default: '1,5' },
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '2' },
  },
});
needBuild();
const { createKafkaClient } = await import(`${ROOT}dist/src/kafka/adapter.js`);
const OWN = values['own-broker'];
const env = { ...process.env, TLSDECRYPT_KAFKA_PORT: OWN, TLSDECRYPT_KAFKA_JVM: values['broker-jvm'] };
const B = OWN ? `127.0.0.1:${OWN}` : values.brokers;
const secs = Number(values.seconds);

async function one(c, size, inFlight, seconds) {
  const topic = `h13.produce-pipeline.${Date.now().toString(36)}.${size}.${inFlight}`;
  const a = await c.admin();
  await a.ensureTopic(topic, 8);
  await a.close();
  const p = await c.producer({ impl: 'native' });
  const value = Buffer.alloc(size, 7);
  const lat = [];
  let acked = 0;
  let open = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((done, fail) => {
    const pump = () => {
      while (open < inFlight && performance.now() - t0 < seconds * 1000) {
        open++;
        const ts = performance.now();
        p.send(topic, [{ partition: 0, value }]).then(() => {
          open--;
          acked++;
          lat.push(performance.now() - ts);
          pump();
          if (!open) done();
        }, fail);
      }
    };
    pump();
  });
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await p.close();
  lat.sort((x, y) => x - y);
  return { mbs: (acked * size) / s / 1e6, median: lat[lat.length >> 1], p99: lat[Math.floor(lat.length * 0.99)], cpu: (cpu.user + cpu.system) / 1e6 };
}

printMachine();
let started = false;
try {
  if (OWN) {
    const k = spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'start'], { env, encoding: 'utf8' });
    if (k.status !== 0) throw new Error(`scripts/kafka.sh start (port ${OWN}) failed: ${k.stderr.trim().split('\n').slice(-2).join(' ')}`);
    started = !k.stderr.includes('reusing');
    console.log(`broker: our own on ${B}, TLSDECRYPT_KAFKA_JVM=${values['broker-jvm']} (${started ? 'started now' : 'reused as it runs'})`);
  } else console.log(`broker: ${B}`);
  const c = createKafkaClient({ brokers: [B], clientId: 'bench-produce-pipeline' });
  const sizes = values.sizes.split(',').map(Number);
  const inFlights = values['in-flight'].split(',').map(Number);
  if (started) {
    console.log(`(warm-up: ${secs} s, not recorded)`);
    await one(c, sizes[0], Math.max(...inFlights), secs);
  }
  console.log(`load average at start: ${spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.split(' ').slice(0, 3).join(' ')}`);
  console.log('round | record bytes | in flight | MB/s acked (Gbps) | ack latency median / p99 ms | producer CPU s | load');
  for (let r = 1; r <= Number(values.rounds); r++) {
    for (const size of sizes) for (const n of inFlights) {
      const x = await one(c, size, n, secs);
      const load = spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.split(' ')[0];
      console.log(`${r} | ${size} | ${n} | ${fmt(x.mbs, 1)} (${fmt((x.mbs * 8) / 1000, 3)}) | ${fmt(x.median, 1)} / ${fmt(x.p99, 1)} | ${fmt(x.cpu, 2)} | ${load}`);
    }
  }
} finally {
  await deleteTopics(B, (t) => t.startsWith('h13.produce-pipeline.'), 'h13.produce-pipeline.*');
  if (started) spawnSync('bash', [`${ROOT}scripts/kafka.sh`, 'stop'], { env, stdio: 'inherit' });
}
