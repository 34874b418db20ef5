/**
 * The native producer (src/kafka/produce.ts): its CRC-32C against published check values and
 * kafkajs's implementation, its murmur2 against kafkajs's partitioner hash, its RecordBatch v2
 * against kafkajs's decoder, and, against the real broker, records it produces read back by kafkajs
 * consumers byte-identical (keys, values, headers, partitions, timestamps; plain and gzip), and the
 * broker's refusals surfaced as not transient.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKafkaClient, isTransientKafkaError, resolveProducerImpl, type InRecord, type KafkaClient, type OutRecord, type Producer } from '../../src/kafka/adapter.js';
import { crc32c } from '../../src/kafka/crc32c.js';
import { BufferPool, PcapStreamBuilder } from '../../src/kafka/formats.js';
import { encodeRecordBatch, KafkaProduceError, murmur2 } from '../../src/kafka/produce.js';
import { brokers, ensureBuilt, readAll, REPO, uniq } from './helpers.js';

const require = createRequire(import.meta.url);
const kjsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
const kjsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (k: Buffer) => number;
const kjsDecoder = require('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => unknown;
const kjsRecordBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (d: unknown) => Promise<{
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  lastOffsetDelta: number;
  maxTimestamp: string;
  records: { key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer>; timestamp: string; offset: string }[];
}>;

describe('crc32c', () => {
  it('gives the published check values (RFC 3720 B.4, "123456789")', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i)))).toBe(0x46dd794e);
    expect(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)))).toBe(0x113fdb5c);
  });

  it('equals kafkajs crc32C on random buffers, unaligned slices and continued segments', () => {
    for (const n of [0, 1, 7, 8, 9, 63, 1000, 65_537]) {
      const b = randomBytes(n + 3);
      for (const off of [0, 1, 2, 3]) {
        const s = b.subarray(off, off + n);
        expect(crc32c(s)).toBe(kjsCrc32C(s));
      }
      const cut = n >> 1;
      expect(crc32c(b, crc32c(b, 0, 0, cut), cut)).toBe(kjsCrc32C(b));
    }
  });
});

describe('murmur2', () => {
  it('equals kafkajs (Java client) murmur2 for keys of every tail length', () => {
    for (let n = 0; n < 40; n++) {
      const k = randomBytes(n);
      expect(murmur2(k)).toBe(kjsMurmur2(k));
    }
    expect(murmur2(Buffer.from('21f0bd8e1e2b3e2d8a31a8b6a5d6e3c1'))).toBe(kjsMurmur2(Buffer.from('21f0bd8e1e2b3e2d8a31a8b6a5d6e3c1')));
  });
});

describe('encodeRecordBatch', () => {
  it('is a RecordBatch v2 that kafkajs decodes to the same records, CRC included', async () => {
    const big = randomBytes(10_000); // written by reference (not copied)
    const records: OutRecord[] = [
      { key: 'k1', value: 'small value', headers: { 'content-type': 'application/vnd.tcpdump.pcap', sensor: 'vni-7@10.0.0.1' }, timestamp: 1_700_000_000_123 },
      { key: null, value: big, headers: { bin: Buffer.from([0, 1, 2, 255]) }, timestamp: 1_700_000_000_100 },
      { value: '', timestamp: 1_700_000_000_200 },
    ];
    const enc = encodeRecordBatch(records, { producerId: 4242, producerEpoch: 3, baseSequence: 17 });
    expect(enc.segments).toContain(big);
    const bytes = Buffer.concat(enc.segments);
    expect(bytes.length).toBe(enc.bytes);
    expect(bytes.readInt32BE(8)).toBe(bytes.length - 12);
    expect(bytes.readUInt32BE(17)).toBe(kjsCrc32C(bytes.subarray(21)));
    const d = await kjsRecordBatch(new kjsDecoder(bytes));
    expect(bytes[16]).toBe(2); // magic
    expect(d.producerId).toBe('4242');
    expect(d.producerEpoch).toBe(3);
    expect(d.firstSequence).toBe(17);
    expect(d.lastOffsetDelta).toBe(2);
    expect(d.maxTimestamp).toBe('1700000000200');
    expect(d.records.map((r) => r.key?.toString() ?? null)).toEqual(['k1', null, null]);
    expect(d.records[1].value!.equals(big)).toBe(true);
    expect(d.records[2].value!.length).toBe(0);
    expect(d.records[0].headers.sensor.toString()).toBe('vni-7@10.0.0.1');
    expect(d.records[1].headers.bin.equals(Buffer.from([0, 1, 2, 255]))).toBe(true);
    expect(d.records.map((r) => Number(r.timestamp))).toEqual([1_700_000_000_123, 1_700_000_000_100, 1_700_000_000_200]);
    expect(d.records.map((r) => r.offset)).toEqual(['0', '1', '2']);
  });
});

describe('resolveProducerImpl', () => {
  it('auto is native on plaintext, kafkajs with TLS or SASL; an explicit choice is kept', () => {
    const plain = { brokers: ['b:9092'] };
    expect(resolveProducerImpl('auto', plain)).toBe('native');
    expect(resolveProducerImpl('auto', { ...plain, ssl: true })).toBe('kafkajs');
    expect(resolveProducerImpl('auto', { ...plain, sasl: { mechanism: 'plain', username: 'u', password: 'p' } })).toBe('kafkajs');
    expect(resolveProducerImpl('native', { ...plain, ssl: true })).toBe('native');
    expect(resolveProducerImpl('kafkajs', plain)).toBe('kafkajs');
  });
});

describe('BufferPool (record buffers reused once acknowledged)', () => {
  it('keeps at most maxBytes, hands out a buffer of min..2x min, and a builder writes a whole stream into it', () => {
    const pool = new BufferPool(300_000);
    const a = Buffer.alloc(100_000);
    const b = Buffer.alloc(150_000);
    pool.put(a);
    pool.put(b);
    pool.put(Buffer.alloc(100_000)); // over the bound: not kept
    expect(pool.bytes).toBe(250_000);
    expect(pool.get(200_000)).toBeUndefined();
    expect(pool.get(40_000)).toBeUndefined(); // 100,000 and 150,000 are more than 2x of it
    expect(pool.get(120_000)).toBe(b);
    expect(pool.bytes).toBe(100_000);
    const builder = new PcapStreamBuilder(pool);
    const data = randomBytes(1400);
    builder.add({ linktype: 1, ts: { sec: 1, nsec: 2 }, data, origLen: 1400, ifIndex: 0 });
    expect(builder.buffer).toBe(a); // nextCap 64 KiB: the 100,000-byte buffer fits
    const v = builder.take();
    expect(v.length).toBe(24 + 16 + 1400);
    expect(v.subarray(40).equals(data)).toBe(true);
  });
});

describe('native producer against the broker', () => {
  let c: KafkaClient;
  let p: Producer | undefined;
  beforeAll(() => {
    c = createKafkaClient({ brokers: [brokers()], clientId: 'tlsdecrypt-test-native' });
  });
  afterAll(async () => {
    await p?.close();
  });

  const sortKey = (r: { partition: number; offset: string }): number => r.partition * 1e9 + Number(r.offset);

  for (const compression of ['none', 'gzip'] as const) {
    it(`records read back by kafkajs are byte-identical (compression ${compression})`, async () => {
      const topic = uniq(`h13.native.${compression}`);
      const admin = await c.admin();
      await admin.ensureTopic(topic, 3);
      await admin.close();
      p = await c.producer({ impl: 'native', compression });
      const sent: (OutRecord & { partition: number })[] = [];
      for (let round = 0; round < 3; round++) {
        const batch: (OutRecord & { partition: number })[] = [];
        for (let part = 0; part < 3; part++) {
          batch.push({
            partition: part,
            value: randomBytes(round === 1 ? 300_000 : 1 + round * 997 + part),
            headers: { 'content-type': 'application/vnd.tcpdump.pcap', sensor: `s${round}.${part}` },
            timestamp: 1_700_000_000_000 + round * 10 + part,
          });
        }
        await p.send(topic, batch);
        sent.push(...batch);
      }
      // keyed records without a partition: the default (murmur2) partitioner, as kafkajs places them
      const keyed: OutRecord[] = Array.from({ length: 20 }, (_, i) => ({ key: `client-random-${i}`, value: `line ${i}` }));
      await p.send(topic, keyed);
      await p.close();
      p = undefined;

      const got = (await readAll(c, topic)).sort((a, b) => sortKey(a) - sortKey(b));
      expect(got.length).toBe(sent.length + keyed.length);
      const packets = got.filter((r) => r.key === null);
      const byPart = (n: number): InRecord[] => packets.filter((r) => r.partition === n);
      for (let part = 0; part < 3; part++) {
        const want = sent.filter((s) => s.partition === part);
        const have = byPart(part);
        expect(have.length).toBe(want.length);
        for (let i = 0; i < want.length; i++) {
          expect(have[i].value!.equals(want[i].value as Buffer)).toBe(true);
          expect(have[i].headers.sensor.toString()).toBe(want[i].headers!.sensor);
          expect(have[i].headers['content-type'].toString()).toBe('application/vnd.tcpdump.pcap');
          expect(have[i].timestamp).toBe(want[i].timestamp);
        }
      }
      for (const k of keyed) {
        const r = got.find((g) => g.key?.toString() === k.key);
        expect(r?.value?.toString()).toBe(k.value);
        expect(r?.partition).toBe((kjsMurmur2(Buffer.from(k.key as string)) & 0x7fffffff) % 3);
      }
    });
  }

  it('splits a partition\'s records into batches of at most maxBatchBytes, in order', async () => {
    const topic = uniq('h13.native.split');
    const admin = await c.admin();
    await admin.ensureTopic(topic, 1);
    await admin.close();
    p = await c.producer({ impl: 'native', maxBatchBytes: 100_000 });
    const recs = Array.from({ length: 12 }, (_, i) => ({ partition: 0, value: Buffer.alloc(30_000, i) }));
    await p.send(topic, recs);
    await p.close();
    p = undefined;
    const got = (await readAll(c, topic)).sort((a, b) => sortKey(a) - sortKey(b));
    expect(got.map((r) => r.value![0])).toEqual(recs.map((_, i) => i));
  });

  it('a record over the topic\'s max.message.bytes is refused, not transient', async () => {
    const topic = uniq('h13.native.toolarge');
    const admin = await c.admin();
    await admin.ensureTopic(topic, 1, { 'max.message.bytes': '50000' });
    await admin.close();
    p = await c.producer({ impl: 'native' });
    const err = await p.send(topic, [{ partition: 0, value: Buffer.alloc(80_000) }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KafkaProduceError);
    expect((err as KafkaProduceError).code).toBe(10); // MESSAGE_TOO_LARGE
    expect(isTransientKafkaError(err)).toBe(false);
    // the producer stays usable for what fits
    await p.send(topic, [{ partition: 0, value: Buffer.alloc(1000, 7) }]);
    await p.close();
    p = undefined;
    const got = await readAll(c, topic);
    expect(got.length).toBe(1);
    expect(got[0].value!.equals(Buffer.alloc(1000, 7))).toBe(true);
  });

  it('a partition that does not exist is refused, not transient', async () => {
    const topic = uniq('h13.native.nopart');
    const admin = await c.admin();
    await admin.ensureTopic(topic, 2);
    await admin.close();
    p = await c.producer({ impl: 'native' });
    const err = await p.send(topic, [{ partition: 5, value: 'x' }]).catch((e: unknown) => e);
    expect(isTransientKafkaError(err)).toBe(false);
    await p.close();
    p = undefined;
  });

  it('a topic that does not exist: retried with metadata refreshes, then a transient failure (the batcher waits and retries)', async () => {
    p = await c.producer({ impl: 'native' });
    const err = await p.send(uniq('h13.native.missing'), [{ partition: 0, value: 'x' }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KafkaProduceError);
    expect((err as KafkaProduceError).code).toBe(3); // UNKNOWN_TOPIC_OR_PARTITION
    expect(isTransientKafkaError(err)).toBe(true);
    await p.close();
    p = undefined;
  });

  it('an unreachable bootstrap broker is "cannot reach Kafka"', async () => {
    const dead = createKafkaClient({ brokers: ['127.0.0.1:1'], clientId: 'x', connectionTimeoutMs: 500 });
    await expect(dead.producer({ impl: 'native' })).rejects.toThrow(/cannot reach Kafka at 127.0.0.1:1/);
  });
});

describe('publish --producer', () => {
  beforeAll(() => ensureBuilt(), 300_000);
  const cli = (...args: string[]) => spawnSync(process.execPath, [`${REPO}/dist/src/cli.js`, ...args], { encoding: 'utf8', timeout: 60_000 });

  it('a bad value, native with SASL, or on publish keylog: exit 2 with one line', () => {
    const bad = cli('publish', 'mirror', '--listen', '127.0.0.1:4789', '--brokers', '127.0.0.1:1', '--topic', 't', '--producer', 'librdkafka');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual(["tlsdecrypt: --producer takes auto, native or kafkajs, got 'librdkafka'"]);
    const sasl = spawnSync(process.execPath, [`${REPO}/dist/src/cli.js`, 'publish', 'pcap', '-', '--brokers', '127.0.0.1:1', '--topic', 't', '--producer', 'native', '--tls', '--sasl-mechanism', 'plain', '--sasl-username', 'u'], {
      encoding: 'utf8', timeout: 60_000, input: '', env: { ...process.env, TLSDECRYPT_SASL_PASSWORD: 'pw' },
    });
    expect(sasl.status).toBe(2);
    expect(sasl.stderr.trim().split('\n')).toEqual(['tlsdecrypt: --producer native does not support SASL; use --producer kafkajs (or auto)']);
    const keylog = cli('publish', 'keylog', '/dev/null', '--brokers', '127.0.0.1:1', '--topic', 't', '--producer', 'native');
    expect(keylog.status).toBe(2);
    expect(keylog.stderr.trim().split('\n')).toEqual(['tlsdecrypt: --producer applies to publish pcap and publish mirror only']);
  });

  it('--max-in-flight: 1 to 5 (Kafka keeps 5 batches per partition in order), not on publish keylog', () => {
    for (const what of [['mirror', '--listen', '127.0.0.1:4789'], ['pcap', '/dev/null']]) {
      const r = cli('publish', ...what, '--brokers', '127.0.0.1:1', '--topic', 't', '--max-in-flight', '6');
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toEqual(["tlsdecrypt: --max-in-flight takes a whole number from 1 to 5, got '6'"]);
    }
    const keylog = cli('publish', 'keylog', '/dev/null', '--brokers', '127.0.0.1:1', '--topic', 't', '--max-in-flight', '2');
    expect(keylog.status).toBe(2);
    expect(keylog.stderr.trim().split('\n')).toEqual(['tlsdecrypt: --max-in-flight applies to publish pcap and publish mirror only']);
  });
});
