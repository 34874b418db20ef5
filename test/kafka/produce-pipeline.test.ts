/**
 * The native producer with several produce requests in flight on one partition (produce.ts:
 * sequence numbers reserved at encoding, requests written in call order, recovery re-sends what
 * was not delivered in its order), against the real broker: every record read back, in the order
 * of the send() calls, also when the connection is cut with requests in flight and when the broker
 * refuses one batch in the middle of the pipeline.
 */
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKafkaClient, isTransientKafkaError, type KafkaClient } from '../../src/kafka/adapter.js';
import { BrokerConnection, KafkaProduceError, NativeProducer } from '../../src/kafka/produce.js';
import { brokers, readAll, uniq } from './helpers.js';

/** The index each record carries (its first 4 bytes), in partition 0's offset order. */
async function indices(c: KafkaClient, topic: string): Promise<number[]> {
  const got = await readAll(c, topic);
  expect(new Set(got.map((r) => r.partition))).toEqual(new Set([0]));
  return got.sort((a, b) => Number(a.offset) - Number(b.offset)).map((r) => r.value!.readUInt32BE(0));
}

function value(i: number, size = 2000): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

/** Counts the produce requests awaiting an answer at once (the most seen). */
function inFlightProbe(): { max: () => number; restore: () => void } {
  let now = 0;
  let max = 0;
  const orig = BrokerConnection.prototype.request;
  const spy = vi.spyOn(BrokerConnection.prototype, 'request').mockImplementation(function (this: BrokerConnection, apiKey, version, body) {
    if (apiKey !== 0) return orig.call(this, apiKey, version, body);
    now++;
    max = Math.max(max, now);
    return orig.call(this, apiKey, version, body).finally(() => now--);
  });
  return { max: () => max, restore: () => spy.mockRestore() };
}

describe('native producer: several requests in flight on one partition', () => {
  let c: KafkaClient;
  beforeAll(() => {
    c = createKafkaClient({ brokers: [brokers()], clientId: 'tlsdecrypt-test-pipeline' });
  });
  afterAll(() => vi.restoreAllMocks());

  async function topic1(prefix: string, config?: Record<string, string>): Promise<string> {
    const t = uniq(prefix);
    const admin = await c.admin();
    await admin.ensureTopic(t, 1, config);
    await admin.close();
    return t;
  }

  it('200 sends issued at once: up to 5 requests in flight, every record read back in send order', async () => {
    const topic = await topic1('h13.pipe.order');
    const p = (await c.producer({ impl: 'native' })) as NativeProducer;
    expect(p.inFlightLimit).toBe(5);
    const probe = inFlightProbe();
    try {
      const sends = Array.from({ length: 200 }, (_, i) => p.send(topic, [{ partition: 0, value: value(i) }]));
      await Promise.all(sends);
    } finally {
      probe.restore();
      await p.close();
    }
    expect(probe.max()).toBe(5);
    expect(await indices(c, topic)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('the connection cut with requests in flight: the undelivered ones are re-sent in order, none lost or duplicated', async () => {
    const topic = await topic1('h13.pipe.cut');
    const p = (await c.producer({ impl: 'native' })) as NativeProducer;
    const n = 300;
    let cuts = 0;
    const sends: Promise<void>[] = [];
    try {
      for (let i = 0; i < n; i++) {
        sends.push(p.send(topic, [{ partition: 0, value: value(i, 20_000) }]));
        // cut every open broker connection three times while the pipeline is full
        if (i === 60 || i === 150 || i === 240) {
          await sends[i - 50];
          for (const conn of (p as unknown as { conns: Map<string, { socket?: Socket }> }).conns.values()) {
            if (conn.socket && !conn.socket.destroyed) {
              conn.socket.destroy();
              cuts++;
            }
          }
        }
      }
      await Promise.all(sends);
    } finally {
      await p.close();
    }
    expect(cuts).toBeGreaterThanOrEqual(3);
    // the producer id is kept across these retries (the failures are transient), so batches the
    // broker had stored before the cut are answered as duplicates, not appended again
    expect(await indices(c, topic)).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('a batch refused in the middle of the pipeline: that send rejects (not transient), every other one is delivered in order', async () => {
    const topic = await topic1('h13.pipe.refused', { 'max.message.bytes': '50000' });
    const p = (await c.producer({ impl: 'native' })) as NativeProducer;
    const n = 40;
    const bad = new Set([12, 27]);
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => p.send(topic, [{ partition: 0, value: value(i, bad.has(i) ? 80_000 : 1000) }])),
    ).finally(() => p.close());
    for (let i = 0; i < n; i++) {
      if (!bad.has(i)) {
        expect(results[i].status, `send ${i}`).toBe('fulfilled');
        continue;
      }
      const r = results[i] as PromiseRejectedResult;
      expect(r.status).toBe('rejected');
      expect(r.reason).toBeInstanceOf(KafkaProduceError);
      expect((r.reason as KafkaProduceError).code).toBe(10); // MESSAGE_TOO_LARGE
      expect(isTransientKafkaError(r.reason)).toBe(false);
    }
    // the sends behind a refused batch were refused as OUT_OF_ORDER_SEQUENCE_NUMBER (never
    // stored) and re-sent under a new producer id: each once
    expect(await indices(c, topic)).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !bad.has(i)));
  });
});
