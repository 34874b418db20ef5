/**
 * An in-memory KafkaClient for tests that must drive `run` through one exact ordering of batches,
 * assignments and commits (a real broker decides those itself): the test hands batches to `run`'s
 * handler one by one, changes the assignment when it wants, and sees every commit and event.
 * The tests that check the same behaviour end to end use the real broker (resilience*.test.ts).
 */
import { readFileSync } from 'node:fs';
import type { Admin, GroupBatch, GroupConsumer, InRecord, KafkaClient, PartitionReader, Producer, TopicPartitionOffset } from '../../src/kafka/adapter.js';
import { PCAP_CONTENT_TYPE, PcapStreamBuilder } from '../../src/kafka/formats.js';
import type { RawPacket } from '../../src/types.js';

export interface FakeCommit extends TopicPartitionOffset {
  /** The member generation the commit was made in (FakeKafka.generation at the call). */
  generation: number;
}

/** A group consumer whose batches and assignments the test delivers. */
export class FakeKafka {
  readonly events: Record<string, any>[] = [];
  readonly commits: FakeCommit[] = [];
  /** Committed offset and metadata per partition (the broker's view, what a new owner reads). */
  readonly committed = new Map<number, { offset: string; metadata?: string }>();
  generation = 1;
  /** Held commits: while set, commit() waits for it (a commit in flight across a rebalance). */
  commitGate: Promise<void> | undefined;
  private onBatch: ((b: GroupBatch) => Promise<void>) | undefined;
  private assignCbs: ((a: Record<string, number[]>) => void)[] = [];
  private next = new Map<number, number>();
  private running!: () => void;
  readonly started = new Promise<void>((r) => (this.running = r));

  constructor(readonly topic: string) {}

  /** Assignment of the packets topic (a rebalance: onAssign as kafkajs's GROUP_JOIN). */
  assign(partitions: number[]): void {
    this.generation++;
    for (const cb of this.assignCbs) cb({ [this.topic]: partitions });
  }

  /** One batch of `values` (packets-topic records) of `partition`, offsets continuing that partition's. */
  async batch(partition: number, values: Buffer[]): Promise<void> {
    if (!this.onBatch) throw new Error('consumer not running');
    const first = this.next.get(partition) ?? Number(this.committed.get(partition)?.offset ?? 0);
    const records: InRecord[] = values.map((v, i) => ({ topic: this.topic, partition, offset: String(first + i), key: null, value: v, headers: { 'content-type': Buffer.from(PCAP_CONTENT_TYPE) }, timestamp: Date.now() }));
    this.next.set(partition, first + values.length);
    await this.onBatch({
      topic: this.topic,
      partition,
      records,
      nextOffset: String(first + values.length),
      highWatermark: String(first + values.length),
      heartbeat: async () => {},
      resolveAll: () => {},
      isRunning: () => true,
      isStale: () => false,
    });
  }

  /** The next batch of `partition` starts at `offset` (a new owner starts at the committed offset). */
  seekTo(partition: number, offset: number): void {
    this.next.set(partition, offset);
  }

  get client(): KafkaClient {
    const self = this;
    const producer: Producer = {
      async send(_topic, records) {
        for (const r of records) self.events.push(JSON.parse(String(r.value)));
      },
      async close() {},
    };
    const admin: Admin = {
      ensureTopic: async () => false,
      topicExists: async () => true,
      partitionCount: async () => 4,
      topicOffsets: async () => [],
      groupOffsets: async () => [...self.committed].map(([partition, c]) => ({ partition, offset: c.offset, metadata: c.metadata ?? null })),
      lag: async () => 0,
      close: async () => {},
    };
    const consumer: GroupConsumer = {
      async run(onBatch) {
        self.onBatch = onBatch;
        self.running();
      },
      pause() {},
      resume() {},
      async commit(offsets) {
        const gate = self.commitGate;
        if (gate) await gate;
        for (const o of offsets) {
          self.commits.push({ ...o, generation: self.generation });
          self.committed.set(o.partition, { offset: o.offset, metadata: o.metadata });
        }
      },
      seek() {},
      onAssign: (cb) => void self.assignCbs.push(cb),
      onCrash() {},
      async stop() {},
      async close() {},
    };
    const reader: PartitionReader = { async start() {}, caughtUp: async () => true, async close() {} };
    return {
      brokers: ['fake:9092'],
      producer: async () => producer,
      admin: async () => admin,
      groupConsumer: async () => consumer,
      partitionReader: async () => reader,
    };
  }
}

/** The packets of a classic little-endian pcap file. */
export function pcapPackets(file: string): RawPacket[] {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`${file}: not a little-endian classic pcap`);
  const nano = magic === 0xa1b23c4d;
  const linktype = b.readUInt32LE(20);
  const out: RawPacket[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const len = b.readUInt32LE(o + 8);
    const frac = b.readUInt32LE(o + 4);
    out.push({ linktype, ts: { sec: b.readUInt32LE(o), nsec: nano ? frac : frac * 1000 }, data: b.subarray(o + 16, o + 16 + len), origLen: b.readUInt32LE(o + 12), ifIndex: 0 });
    o += 16 + len;
  }
  return out;
}

/** Packets as packets-topic records of `perRecord` packets each (pcap streams). */
export function pcapRecords(packets: RawPacket[], perRecord = 4): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < packets.length; i += perRecord) {
    const b = new PcapStreamBuilder();
    for (const p of packets.slice(i, i + perRecord)) b.add(p);
    out.push(b.take());
  }
  return out;
}

/** One UDP packet at capture second `sec` (opens no TCP flow, emits no event): capture time moves on. */
export function clockTick(sec: number): RawPacket {
  const eth = Buffer.from('020000000002020000000001' + '0800', 'hex');
  const ip = Buffer.from('4500001c0000000040110000' + '0a630001' + '0a630002', 'hex');
  const udp = Buffer.from('14e914e900080000', 'hex');
  const data = Buffer.concat([eth, ip, udp]);
  return { linktype: 1, ts: { sec, nsec: 0 }, data, origLen: data.length, ifIndex: 0 };
}
