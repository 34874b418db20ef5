/**
 * An in-memory KafkaClient for tests that must drive `run` through one exact ordering of fetches,
 * assignments and commits (a real broker and kafkajs decide those themselves): the test appends
 * records to partitions, says which member fetches which partition when, changes assignments, and
 * sees every commit and event. Members fetch from the committed offset after an assignment.
 * The tests that check the same behaviour end to end use the real broker (resilience*.test.ts).
 */
import { readFileSync } from 'node:fs';
import type { Admin, GroupBatch, GroupConsumer, InRecord, KafkaClient, PartitionReader, Producer, TopicPartitionOffset } from '../../src/kafka/adapter.js';
import { PCAP_CONTENT_TYPE, PcapStreamBuilder } from '../../src/kafka/formats.js';
import type { RawPacket } from '../../src/types.js';

export interface FakeCommit extends TopicPartitionOffset {
  /** The member that committed. */
  member: string;
}

/** The packets topic (its partitions' records), the group's committed offsets and the events topic. */
export class FakeBroker {
  readonly logs = new Map<number, Buffer[]>();
  readonly committed = new Map<number, { offset: string; metadata?: string }>();
  readonly commits: FakeCommit[] = [];
  readonly events: Record<string, any>[] = [];
  constructor(readonly topic = 'packets') {}

  /** Appends records (pcap streams) to a partition of the packets topic. */
  append(partition: number, values: Buffer[]): void {
    const l = this.logs.get(partition) ?? [];
    l.push(...values);
    this.logs.set(partition, l);
  }

  member(name: string): FakeMember {
    return new FakeMember(this, name);
  }
}

/** One group member: the test says when it is assigned what and when it fetches which partition. */
export class FakeMember {
  private onBatch: ((b: GroupBatch) => Promise<void>) | undefined;
  private assignCbs: ((a: Record<string, number[]>) => void)[] = [];
  /** Fetch position per assigned partition. */
  private readonly pos = new Map<number, number>();
  private running!: () => void;
  readonly started = new Promise<void>((r) => (this.running = r));

  constructor(
    readonly broker: FakeBroker,
    readonly name: string,
  ) {}

  /** A new assignment (kafkajs's GROUP_JOIN): every assigned partition is fetched from its committed offset. */
  assign(partitions: number[]): void {
    this.pos.clear();
    for (const p of partitions) this.pos.set(p, Number(this.broker.committed.get(p)?.offset ?? 0));
    for (const cb of this.assignCbs) cb({ [this.broker.topic]: partitions });
  }

  /** Hands `run` one batch of the partition: its records from the fetch position to the end (at most `max`). */
  async fetch(partition: number, max = Infinity): Promise<void> {
    if (!this.onBatch) throw new Error('consumer not running');
    const first = this.pos.get(partition);
    if (first === undefined) throw new Error(`${this.name} does not own partition ${partition}`);
    const log = this.broker.logs.get(partition) ?? [];
    const values = log.slice(first, Math.min(log.length, first + max));
    if (!values.length) return;
    const records: InRecord[] = values.map((v, i) => ({ topic: this.broker.topic, partition, offset: String(first + i), key: null, value: v, headers: { 'content-type': Buffer.from(PCAP_CONTENT_TYPE) }, timestamp: Date.now() }));
    this.pos.set(partition, first + values.length);
    await this.onBatch({
      topic: this.broker.topic,
      partition,
      records,
      nextOffset: String(first + values.length),
      highWatermark: String(log.length),
      heartbeat: async () => {},
      resolveAll: () => {},
      isRunning: () => true,
      isStale: () => false,
    });
  }

  get client(): KafkaClient {
    const self = this;
    const broker = this.broker;
    const producer: Producer = {
      async send(_topic, records) {
        for (const r of records) broker.events.push(JSON.parse(String(r.value)));
      },
      async close() {},
    };
    const admin: Admin = {
      ensureTopic: async () => false,
      topicExists: async () => true,
      partitionCount: async () => broker.logs.size,
      topicOffsets: async () => [],
      groupOffsets: async () => [...broker.committed].map(([partition, c]) => ({ partition, offset: c.offset, metadata: c.metadata ?? null })),
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
        for (const o of offsets) {
          broker.commits.push({ ...o, member: self.name });
          broker.committed.set(o.partition, { offset: o.offset, metadata: o.metadata });
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

/**
 * One TCP RST of no connection at capture second `sec` (opens no flow, emits no event): the TCP
 * flow table sees capture time move on.
 */
export function tcpClockTick(sec: number): RawPacket {
  const eth = Buffer.from('020000000002020000000001' + '0800', 'hex');
  const ip = Buffer.from('450000280000000040060000' + '0a630001' + '0a630002', 'hex');
  const tcp = Buffer.from('d43101bb' + '00000001' + '00000000' + '5004000000000000', 'hex');
  const data = Buffer.concat([eth, ip, tcp]);
  return { linktype: 1, ts: { sec, nsec: 0 }, data, origLen: data.length, ifIndex: 0 };
}
