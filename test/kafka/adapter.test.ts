import { afterAll, describe, expect, it } from 'vitest';
import type { InRecord } from '../../src/kafka/adapter.js';
import { createKafkaClient, KafkaUnreachableError } from '../../src/kafka/adapter.js';
import { client, readAll, uniq, until } from './helpers.js';

describe('kafka adapter (real broker)', () => {
  const c = client();
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const f of closers.reverse()) await f().catch(() => {});
  });

  it('creates a topic once, with the partitions asked for', async () => {
    const admin = await c.admin();
    closers.push(() => admin.close());
    const topic = uniq('adapter.create');
    expect(await admin.ensureTopic(topic, 3)).toBe(true);
    expect(await admin.ensureTopic(topic, 5)).toBe(false);
    expect(await admin.partitionCount(topic)).toBe(3);
    expect(await admin.topicExists(topic)).toBe(true);
  });

  it('round-trips key/value/headers/partition through a consumer group with explicit commits', async () => {
    const admin = await c.admin();
    closers.push(() => admin.close());
    const topic = uniq('adapter.rt');
    await admin.ensureTopic(topic, 3);
    const producer = await c.producer();
    closers.push(() => producer.close());
    const sent = Array.from({ length: 30 }, (_, i) => ({
      key: `k${i}`,
      value: Buffer.from([i, 0, 255, i]),
      headers: { 'content-type': 'application/octet-stream', n: String(i) },
      partition: i % 3,
    }));
    await producer.send(topic, sent);

    const groupId = uniq('adapter.group');
    const consumer = await c.groupConsumer({ groupId, topics: [topic], fromBeginning: true });
    closers.push(() => consumer.close());
    const got: InRecord[] = [];
    await consumer.run(async (b) => {
      got.push(...b.records);
      await b.heartbeat();
      await consumer.commit([{ topic: b.topic, partition: b.partition, offset: b.nextOffset }]);
    });
    await until('all 30 records consumed', () => got.length >= 30);
    expect(got.length).toBe(30);
    for (const r of got) {
      const i = Number(r.headers.n.toString());
      expect(r.key?.toString()).toBe(`k${i}`);
      expect(r.partition).toBe(i % 3);
      expect([...r.value!]).toEqual([i, 0, 255, i]);
      expect(r.headers['content-type'].toString()).toBe('application/octet-stream');
    }
    await until('lag 0 after commits', async () => (await admin.lag(groupId, topic)) === 0);
    const offs = await admin.groupOffsets(groupId, topic);
    expect(offs.map((o) => Number(o.offset)).reduce((a, b) => a + b, 0)).toBe(30);

    // pause: nothing arrives while paused; after resume it does
    consumer.pause(topic);
    await producer.send(topic, [{ key: 'late', value: 'x', partition: 0, headers: { n: '99' } }]);
    const before = got.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(got.length).toBe(before);
    consumer.resume(topic);
    await until('record after resume', () => got.length === before + 1);
    await consumer.stop();
  });

  it('reads every partition outside the group from a look-back timestamp', async () => {
    const admin = await c.admin();
    closers.push(() => admin.close());
    const topic = uniq('adapter.reader');
    await admin.ensureTopic(topic, 4);
    const producer = await c.producer();
    closers.push(() => producer.close());
    const old = Date.now() - 3 * 3600_000;
    await producer.send(topic, [0, 1, 2, 3].map((p) => ({ key: `old${p}`, value: 'old', partition: p, timestamp: old })));
    await producer.send(topic, [0, 1, 2, 3].map((p) => ({ key: `new${p}`, value: 'new', partition: p })));
    const all = await readAll(c, topic);
    expect(all.length).toBe(8);
    const recent: InRecord[] = [];
    const reader = await c.partitionReader({ topic, sinceMs: Date.now() - 3600_000 });
    closers.push(() => reader.close());
    await reader.start((rs) => void recent.push(...rs));
    expect(await reader.caughtUp(60_000)).toBe(true);
    expect(recent.map((r) => r.key?.toString()).sort()).toEqual(['new0', 'new1', 'new2', 'new3']);
    // records arriving later are delivered too
    await producer.send(topic, [{ key: 'later', value: 'v', partition: 2 }]);
    await until('later record', () => recent.some((r) => r.key?.toString() === 'later'));
  });

  it('reports an unreachable broker as KafkaUnreachableError after a bounded retry', async () => {
    const bad = createKafkaClient({ brokers: ['127.0.0.1:1'], retries: 1, connectionTimeoutMs: 500 });
    await expect(bad.admin()).rejects.toBeInstanceOf(KafkaUnreachableError);
    await expect(bad.admin()).rejects.toThrow('cannot reach Kafka at 127.0.0.1:1');
  });
});
