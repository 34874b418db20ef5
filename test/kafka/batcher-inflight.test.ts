/**
 * PartitionBatcher with several sends in flight (batcher.ts), against fake producers whose sends
 * the test settles one by one: the in-flight bound (the option and the producer's inFlightLimit),
 * memory counted until each send is acknowledged, and a failure in the middle of the pipeline
 * (nothing new leaves until every send in flight has settled; the undelivered records are sent
 * again, in their order, through a fresh producer). The same against the real broker is in
 * produce-pipeline.test.ts (producer) and mirror*.test.ts (receiver).
 */
import { describe, expect, it } from 'vitest';
import type { KafkaClient, OutRecord, Producer } from '../../src/kafka/adapter.js';
import { PartitionBatcher, type BatcherOptions } from '../../src/kafka/batcher.js';
import { KafkaProduceError } from '../../src/kafka/produce.js';
import { until } from './helpers.js';

interface FakeSend {
  records: OutRecord[];
  resolve: () => void;
  reject: (e: Error) => void;
}

class FakeProducer implements Producer {
  readonly sends: FakeSend[] = [];
  closed = false;
  constructor(readonly inFlightLimit?: number) {}
  send(_topic: string, records: OutRecord[]): Promise<void> {
    return new Promise((resolve, reject) => this.sends.push({ records, resolve, reject }));
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** Sends not settled yet. */
  get open(): FakeSend[] {
    return this.sends.filter((s) => !(s as { done?: boolean }).done);
  }
  settle(s: FakeSend, e?: Error): void {
    (s as { done?: boolean }).done = true;
    if (e) s.reject(e);
    else s.resolve();
  }
}

function fakeClient(limit?: number): { client: KafkaClient; producers: FakeProducer[] } {
  const producers: FakeProducer[] = [];
  const client = {
    brokers: ['fake:9092'],
    async producer(): Promise<Producer> {
      const p = new FakeProducer(limit);
      producers.push(p);
      return p;
    },
  } as unknown as KafkaClient;
  return { client, producers };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const idx = (r: OutRecord): number => (r.value as Buffer).readUInt32BE(0);

function batcher(client: KafkaClient, o: Partial<BatcherOptions> = {}): PartitionBatcher {
  return new PartitionBatcher(client, {
    topic: 't', partitions: 2, batchBytes: 1 << 20, lingerMs: 60_000, maxBufferBytes: 1 << 20, onKafkaError: 'reconnect', ...o,
  });
}

/** Queues record i (1,000 bytes, its index in the first 4) on partition `part`. */
function add(b: PartitionBatcher, i: number, part = 0): void {
  const v = Buffer.alloc(1000);
  v.writeUInt32BE(i, 0);
  expect(b.addRecord(part, { value: v })).toBe(true);
}

describe('PartitionBatcher: sends in flight', () => {
  it('keeps at most 5 sends in flight (one record per partition each, queue order); memory is released per acknowledgement', async () => {
    const { client, producers } = fakeClient(5);
    const b = batcher(client);
    for (let i = 0; i < 12; i++) add(b, i);
    await tick();
    const p = producers[0];
    expect(p.open.length).toBe(5);
    expect(p.sends.map((s) => s.records.map(idx))).toEqual([[0], [1], [2], [3], [4]]);
    const held = b.stats.bufferedBytes;
    expect(held).toBe(12 * 1064); // addRecord counts value + 64
    // the second acknowledgement before the first: nothing is accounted until the first arrives
    p.settle(p.sends[1]);
    await tick();
    expect(b.stats.bufferedBytes).toBe(held);
    expect(b.stats.publishedRecords).toBe(0);
    expect(p.open.length).toBe(4);
    p.settle(p.sends[0]);
    await tick();
    expect(b.stats.publishedRecords).toBe(2);
    expect(b.stats.bufferedBytes).toBe(held - 2 * 1064);
    expect(p.open.length).toBe(5); // two more left
    const flushed = b.flush();
    for (let k = 0; k < 20 && p.open.length; k++) {
      for (const s of p.open) p.settle(s);
      await tick();
    }
    await flushed;
    expect(p.sends.flatMap((s) => s.records.map(idx))).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(b.stats.bufferedBytes).toBe(0);
    expect(b.stats.publishedRecords).toBe(12);
    await b.close();
  });

  it('one send at a time with maxInFlight 1, and with a producer that does not pipeline (kafkajs)', async () => {
    for (const [limit, opt] of [[5, 1], [undefined, 5]] as const) {
      const { client, producers } = fakeClient(limit);
      const b = batcher(client, { maxInFlight: opt });
      for (let i = 0; i < 3; i++) add(b, i);
      await tick();
      const p = producers[0];
      for (let i = 0; i < 3; i++) {
        expect(p.open.length).toBe(1);
        expect(p.open[0].records.map(idx)).toEqual([i]);
        p.settle(p.open[0]);
        await tick();
      }
      await b.flush();
      await b.close();
    }
  });

  it('two partitions share a send; a partition never has two records in one send', async () => {
    const { client, producers } = fakeClient(5);
    const b = batcher(client, { maxInFlight: 2 });
    add(b, 0, 0);
    add(b, 1, 0);
    add(b, 2, 1);
    add(b, 3, 0);
    await tick();
    // queued before the producer was connected: each send takes the oldest record of each partition
    const p = producers[0];
    expect(p.sends.map((s) => s.records.map((r) => [r.partition, idx(r)]))).toEqual([[[0, 0], [1, 2]], [[0, 1]]]);
    for (let k = 0; k < 5; k++) {
      for (const s of p.open) p.settle(s);
      await tick();
    }
    expect(p.sends.map((s) => s.records.map((r) => [r.partition, idx(r)]))).toEqual([[[0, 0], [1, 2]], [[0, 1]], [[0, 3]]]);
    await b.close();
  });

  it('a transient failure in the middle: nothing new leaves until all in flight settle; the undelivered records go again in order through a fresh producer', async () => {
    const { client, producers } = fakeClient(5);
    const b = batcher(client);
    for (let i = 0; i < 8; i++) add(b, i);
    await tick();
    const p = producers[0];
    expect(p.open.length).toBe(5);
    // the failure is known before the acknowledgement of send 0 (else a sixth send could leave
    // when send 0 lands: until a failure is seen the window moves on)
    p.settle(p.sends[2], new KafkaProduceError('connection closed', true));
    await tick();
    p.settle(p.sends[0]);
    await tick();
    // record 0 acknowledged; send 1 still open: the failure waits for it, nothing new is sent
    expect(b.stats.publishedRecords).toBe(1);
    expect(p.sends.length).toBe(5);
    p.settle(p.sends[1]);
    await tick();
    expect(p.sends.length).toBe(5);
    // the producer fails the rest of its pipeline too (a real one re-sends or rejects them all)
    p.settle(p.sends[3], new KafkaProduceError('connection closed', true));
    p.settle(p.sends[4]); // acknowledged (another partition, say): counted, not sent again
    await tick();
    expect(b.stats.connected).toBe(false);
    expect(b.stats.sendRetries).toBe(1);
    expect(b.stats.publishedRecords).toBe(3);
    expect(p.closed).toBe(true);
    // after the back-off (0.5 s) a fresh producer gets 2, 3, then the rest of the queue
    await until('a fresh producer with a full window', () => producers[1]?.sends.length === 5, 10_000, 20);
    expect(producers.length).toBe(2);
    const q = producers[1];
    expect(q.sends.map((s) => s.records.map(idx))).toEqual([[2], [3], [5], [6], [7]]);
    for (const s of q.open) q.settle(s);
    await b.flush();
    expect(b.stats.connected).toBe(true);
    expect(b.stats.publishedRecords).toBe(8);
    expect(b.stats.bufferedBytes).toBe(0);
    expect(b.stats.drops).toEqual({ buffer_full: 0, kafka_unavailable: 0, kafka_rejected: 0, shutdown: 0 });
    await b.close();
  });

  it('a send Kafka refuses for good is dropped and counted; the others are delivered', async () => {
    const { client, producers } = fakeClient(5);
    const b = batcher(client);
    for (let i = 0; i < 3; i++) add(b, i);
    await tick();
    const p = producers[0];
    p.settle(p.sends[0]);
    p.settle(p.sends[1], new KafkaProduceError('MESSAGE_TOO_LARGE', false, 10));
    p.settle(p.sends[2]);
    await b.flush();
    expect(b.stats.publishedRecords).toBe(2);
    expect(b.stats.drops.kafka_rejected).toBe(1);
    expect(b.stats.bufferedBytes).toBe(0);
    expect(producers.length).toBe(1);
    await b.close();
  });

  it("'fail' (publishing a file): the first failure rejects flush()", async () => {
    const { client, producers } = fakeClient(5);
    const b = batcher(client, { onKafkaError: 'fail' });
    for (let i = 0; i < 3; i++) add(b, i);
    await tick();
    const p = producers[0];
    const flushed = b.flush().catch((e: unknown) => e);
    p.settle(p.sends[0]);
    p.settle(p.sends[1], new KafkaProduceError('cannot reach Kafka', true));
    p.settle(p.sends[2], new KafkaProduceError('cannot reach Kafka', true));
    expect(((await flushed) as Error).message).toBe('cannot reach Kafka');
    await expect(b.close()).rejects.toThrow('cannot reach Kafka');
  });
});
