/**
 * The packets-topic producer side shared by `publish pcap` (files and live pipes) and `publish
 * mirror`: packets in, pcap-stream records (formats.ts, CONTRACT.md) out, per partition and sensor.
 *
 *   add(partition, packet, sensor) -> the partition's PcapStreamBuilder
 *     a builder becomes a record when it reaches --batch-bytes, or --linger-ms after its first
 *     packet (so a trickle of live packets is out within the linger, not when a batch fills)
 *   records wait in one FIFO queue; each send takes at most one record per partition (so every
 *     partition's record batch stays under the broker's message size) in queue order; up to
 *     maxInFlight sends are in flight at once when the producer keeps their order (the native
 *     producer pipelines them, Producer.inFlightLimit; kafkajs: one at a time). A failed send is
 *     handled once every send in flight has settled: the undelivered records go back to the front
 *     of the queue in their order, so per-partition order is kept through retries.
 *
 * Memory: every byte held (builders, queue, the send in flight) counts against maxBufferBytes.
 * `add` refuses a packet that would exceed it (the caller drops and counts it, or waits with
 * `room()` when its input can wait, like a pipe).
 *
 * Kafka failures: with `onKafkaError: 'fail'` (publishing a file) the first failure rejects
 * `flush()`; with 'reconnect' (live input) transient failures are retried without limit with a
 * fresh producer (0.5 s doubling to 30 s) while the buffer fills and then drops; records Kafka
 * refuses for good (too large, not authorised) are dropped and counted.
 */
import { isTransientKafkaError, type KafkaClient, type OutRecord, type Producer, type ProducerOptions } from './adapter.js';
import { BufferPool, PCAP_CONTENT_TYPE, PcapStreamBuilder } from './formats.js';
import { log, RateLimitedLog } from './log.js';
import type { RawPacket } from '../types.js';

/** Why packets were not published (metric label `cause`). */
export type DropCause = 'buffer_full' | 'kafka_unavailable' | 'kafka_rejected' | 'shutdown';

export interface BatcherOptions {
  topic: string;
  partitions: number;
  /** A partition's record is closed at this size. */
  batchBytes: number;
  /** Longest a packet waits in a builder before its record is queued. */
  lingerMs: number;
  /** Bytes held at most (builders + queue + in flight). */
  maxBufferBytes: number;
  onKafkaError: 'fail' | 'reconnect';
  /**
   * 'refuse' (live receivers): add() refuses what does not fit. 'allow' (inputs that can wait):
   * add() always takes the packet and the caller awaits room() between input chunks, so the
   * buffer overshoots by one chunk at most.
   */
  overflow?: 'refuse' | 'allow';
  producer?: ProducerOptions;
  /** Bytes of one produce request at most (several partitions' records). */
  maxSendBytes?: number;
  /** Each acknowledged record: seconds from its first packet's arrival to the acknowledgement. */
  observeLatency?: (seconds: number) => void;
  /**
   * Sends in flight at most [5]; bounded further by the producer's inFlightLimit (1 for kafkajs).
   * 1 is the round-7 behaviour (each send waits for the previous acknowledgement).
   */
  maxInFlight?: number;
}

export interface BatcherStats {
  /** Packets accepted by add(). */
  packets: number;
  /** Packets and records acknowledged by Kafka. */
  publishedPackets: number;
  publishedRecords: number;
  publishedBytes: number;
  perPartition: number[];
  drops: Record<DropCause, number>;
  /** Bytes held now (allocated: open streams' buffers, queued and in-flight records). */
  bufferedBytes: number;
  /** Failed sends that were retried. */
  sendRetries: number;
  /** False from a transient send failure until the next successful send. */
  connected: boolean;
}

interface Queued {
  rec: OutRecord;
  partition: number;
  /** Memory held by the record (counted in bufferedBytes until acknowledged). */
  bytes: number;
  /** The whole buffer the record's value is a view of (back to the pool once acknowledged). */
  whole?: Buffer;
  packets: number;
  /** performance.now() of the first packet. */
  firstAt: number;
}

/** One send in flight: its records, and how it ended once settled. */
interface Flight {
  batch: Queued[];
  settled: boolean;
  error?: unknown;
}

export class PartitionBatcher {
  readonly stats: BatcherStats;
  private readonly builders = new Map<string, PcapStreamBuilder[]>();
  private readonly firstAt = new Map<PcapStreamBuilder, number>();
  private queue: Queued[] = [];
  /** Sends in flight, oldest first. */
  private flights: Flight[] = [];
  private producer: Producer | undefined;
  /** A producer being created (after a failure closed the previous one). */
  private opening: Promise<void> | undefined;
  /** Waiting out the back-off after a transient failure. */
  private retrying = false;
  /** Consecutive failed rounds (for the back-off), and whether the last round failed. */
  private attempt = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private closed = false;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly rl = new RateLimitedLog();
  private readonly maxSendBytes: number;
  /** Acknowledged records' buffers, reused by the builders (formats.ts BufferPool). */
  private readonly pool: BufferPool;

  constructor(
    private readonly client: KafkaClient,
    private readonly o: BatcherOptions,
    producer?: Producer,
  ) {
    this.producer = producer;
    this.maxSendBytes = o.maxSendBytes ?? 16 << 20;
    // a quarter of the buffer bound, so builders + queue + pool stay within 1.25x of it
    this.pool = new BufferPool(Math.min(32 << 20, Math.floor(o.maxBufferBytes / 4)));
    this.stats = {
      packets: 0, publishedPackets: 0, publishedRecords: 0, publishedBytes: 0,
      perPartition: new Array(o.partitions).fill(0),
      drops: { buffer_full: 0, kafka_unavailable: 0, kafka_rejected: 0, shutdown: 0 },
      bufferedBytes: 0, sendRetries: 0, connected: true,
    };
  }

  /**
   * Takes one packet for `partition`; false (nothing held) when the buffer has no room for it.
   * The packet's bytes are copied.
   */
  add(partition: number, p: RawPacket, sensor = ''): boolean {
    let bs = this.builders.get(sensor);
    if (!bs) {
      bs = Array.from({ length: this.o.partitions }, () => new PcapStreamBuilder(this.pool));
      this.builders.set(sensor, bs);
    }
    const b = bs[partition];
    if (b.count && b.linktype !== p.linktype) this.seal(b, partition, sensor);
    // memory is counted as allocated (a stream's buffer grows by doubling)
    if (this.o.overflow !== 'allow' && this.stats.bufferedBytes + b.growthFor(p) > this.o.maxBufferBytes) return false;
    const before = b.capacity;
    if (b.count === 0) {
      this.firstAt.set(b, performance.now());
      this.armLinger();
    }
    b.add(p);
    this.stats.bufferedBytes += b.capacity - before;
    this.stats.packets++;
    if (b.bytes >= this.o.batchBytes) this.seal(b, partition, sensor);
    return true;
  }

  /** Counts packets the caller could not hand over (buffer full), by the cause that applies now. */
  drop(n = 1): DropCause {
    const cause: DropCause = this.stats.connected ? 'buffer_full' : 'kafka_unavailable';
    this.stats.drops[cause] += n;
    this.rl.log('warn', `drop:${cause}`, 'packets dropped: buffer full', { cause, maxBufferBytes: this.o.maxBufferBytes, dropped: this.stats.drops[cause] });
    return cause;
  }

  /** A record of another form (e.g. a Metron frame) for `partition`; counted as one packet. */
  addRecord(partition: number, rec: OutRecord): boolean {
    const bytes = (rec.value as Buffer).length + 64;
    if (this.o.overflow !== 'allow' && this.stats.bufferedBytes + bytes > this.o.maxBufferBytes) return false;
    this.stats.bufferedBytes += bytes;
    this.stats.packets++;
    this.enqueue({ rec: { ...rec, partition }, partition, bytes, packets: 1, firstAt: performance.now() });
    return true;
  }

  /** Sends records to another topic through the same producer (e.g. key-log lines of a pcapng). */
  async sendOther(topic: string, records: OutRecord[]): Promise<void> {
    this.producer ??= await this.client.producer(this.o.producer);
    await this.producer.send(topic, records);
  }

  /** Resolves once the buffer is at most half full (for inputs that can wait). */
  room(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.stats.bufferedBytes <= this.o.maxBufferBytes / 2) return Promise.resolve();
    return new Promise((r) => this.roomWaiters.push(r));
  }

  /** Closes every builder now and resolves when everything queued is acknowledged (or dropped). */
  async flush(): Promise<void> {
    this.closeAll();
    if (this.failure === undefined && this.busy()) await new Promise<void>((r) => this.idleWaiters.push(r));
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Flushes (bounded by timeoutMs for live input: what is still held then is dropped as
   * 'shutdown') and closes the producer.
   */
  async close(timeoutMs = Infinity): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.flush(),
        ...(Number.isFinite(timeoutMs) ? [new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))] : []),
      ]);
    } finally {
      clearTimeout(timer);
      this.closed = true;
      if (this.lingerTimer) clearTimeout(this.lingerTimer);
      let left = 0;
      for (const q of this.queue) left += q.packets;
      for (const f of this.flights) for (const q of f.batch) left += q.packets;
      if (left) {
        this.stats.drops.shutdown += left;
        log('warn', 'packets not delivered at shutdown', { topic: this.o.topic, packets: left });
      }
      this.queue = [];
      await this.producer?.close().catch(() => {});
      this.producer = undefined;
    }
  }

  /** Turns a builder's packets into a queued record. */
  private seal(builder: PcapStreamBuilder, partition: number, sensor: string): void {
    if (!builder.count) return;
    const packets = builder.count;
    const bytes = builder.capacity; // held until acknowledged, as counted in add()
    const firstAt = this.firstAt.get(builder) ?? performance.now();
    this.firstAt.delete(builder);
    const headers: Record<string, string> = { 'content-type': PCAP_CONTENT_TYPE };
    if (sensor) headers.sensor = sensor;
    const whole = builder.buffer;
    this.enqueue({ rec: { partition, value: builder.take(), headers }, partition, bytes, packets, firstAt, whole });
  }

  private closeAll(): void {
    for (const [sensor, bs] of this.builders) for (let i = 0; i < bs.length; i++) this.seal(bs[i], i, sensor);
  }

  private armLinger(): void {
    if (this.lingerTimer || this.closed) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      const now = performance.now();
      let pending = false;
      for (const [sensor, bs] of this.builders) {
        for (let i = 0; i < bs.length; i++) {
          const at = this.firstAt.get(bs[i]);
          if (at === undefined) continue;
          if (now - at >= this.o.lingerMs - 1) this.seal(bs[i], i, sensor);
          else pending = true;
        }
      }
      if (pending) this.armLinger();
    }, this.o.lingerMs);
  }

  private enqueue(q: Queued): void {
    this.queue.push(q);
    this.pump();
  }

  /** Records queued or in flight, or a retry pending. */
  private busy(): boolean {
    return this.queue.length > 0 || this.flights.length > 0 || this.retrying || this.opening !== undefined;
  }

  private wakeIdle(): void {
    if (this.flights.length || this.retrying || this.opening || (this.queue.length && this.failure === undefined && !this.closed)) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** In-flight bound: the option, and what the producer keeps in order. */
  private limit(): number {
    return Math.max(1, Math.min(this.o.maxInFlight ?? 5, this.producer?.inFlightLimit ?? 1));
  }

  /** Starts sends while the queue has records and fewer than limit() are in flight. */
  private pump(): void {
    if (this.failure !== undefined || this.closed || this.retrying || this.opening) return;
    // after a failure, nothing new leaves until every send in flight has settled
    if (this.flights.some((f) => f.settled && f.error !== undefined)) return;
    if (!this.producer) {
      if (!this.queue.length) return;
      this.opening = this.client.producer(this.o.producer).then(
        (p) => {
          this.opening = undefined;
          if (this.closed) void p.close().catch(() => {});
          else this.producer = p;
          this.pump();
        },
        (e: unknown) => {
          this.opening = undefined;
          this.afterFailure([], e);
        },
      );
      return;
    }
    const producer = this.producer;
    while (this.queue.length && this.flights.length < this.limit()) {
      const f: Flight = { batch: this.take(), settled: false };
      this.flights.push(f);
      producer.send(this.o.topic, f.batch.map((q) => q.rec)).then(
        () => this.landed(f, undefined),
        (e: unknown) => this.landed(f, e ?? new Error('send failed')),
      );
    }
  }

  /** A send settled: acknowledged sends are accounted oldest first; a failure waits for the rest. */
  private landed(f: Flight, error: unknown): void {
    f.settled = true;
    f.error = error;
    if (this.closed) return; // close() counted what was still in flight
    while (this.flights.length && this.flights[0].settled && this.flights[0].error === undefined) {
      this.acknowledged(this.flights.shift()!.batch);
    }
    if (!this.flights.length) {
      this.pump();
      this.wakeIdle();
      return;
    }
    if (this.flights.some((x) => !x.settled)) {
      if (this.flights[0].error === undefined) this.pump();
      return;
    }
    // every send in flight has settled and the oldest failed
    const flights = this.flights;
    this.flights = [];
    const failed: Queued[] = [];
    let first: unknown;
    for (const x of flights) {
      if (x.error === undefined) this.acknowledged(x.batch);
      else if (this.o.onKafkaError !== 'fail' && !isTransientKafkaError(x.error)) this.rejected(x.batch, x.error);
      else {
        first ??= x.error;
        failed.push(...x.batch);
      }
    }
    if (first === undefined) {
      this.pump();
      this.wakeIdle();
      return;
    }
    this.afterFailure(failed, first);
  }

  /** Records Kafka acknowledged: counted, their buffers back to the pool, their memory released. */
  private acknowledged(batch: Queued[]): void {
    const now = performance.now();
    let bytes = 0;
    for (const q of batch) {
      this.stats.publishedPackets += q.packets;
      this.stats.publishedRecords++;
      this.stats.publishedBytes += (q.rec.value as Buffer).length;
      this.stats.perPartition[q.partition] += q.packets;
      this.o.observeLatency?.((now - q.firstAt) / 1000);
      // acknowledged: neither producer references the value any more (kafkajs copied it when
      // encoding; the native producer's request was written out before the answer came)
      if (q.whole) this.pool.put(q.whole);
      bytes += q.bytes;
    }
    if (this.attempt) log('info', 'packets producer recovered', { topic: this.o.topic, attempts: this.attempt + 1 });
    this.attempt = 0;
    this.stats.connected = true;
    this.released(bytes);
  }

  /** Records Kafka refuses for good (too large, not authorised): dropped and counted. */
  private rejected(batch: Queued[], e: unknown): void {
    let packets = 0;
    let bytes = 0;
    for (const q of batch) {
      packets += q.packets;
      bytes += q.bytes;
    }
    this.stats.drops.kafka_rejected += packets;
    this.rl.log('error', 'kafka_rejected', 'Kafka refused packets records, dropped', { topic: this.o.topic, packets, error: e as Error });
    this.released(bytes);
  }

  /**
   * A transient failure ('reconnect'): the undelivered records go back to the front of the queue
   * in their order, the producer is replaced after a back-off (0.5 s doubling to 30 s). 'fail':
   * flush() rejects.
   */
  private afterFailure(failed: Queued[], e: unknown): void {
    this.queue = [...failed, ...this.queue];
    if (this.o.onKafkaError === 'fail') {
      this.failure = e;
      this.wakeAll();
      return;
    }
    this.attempt++;
    this.stats.connected = false;
    this.stats.sendRetries++;
    const delayMs = Math.min(30_000, 500 * 2 ** Math.min(this.attempt - 1, 6));
    this.rl.log('warn', 'kafka_unavailable', 'cannot produce packets (Kafka unavailable?), retrying', { topic: this.o.topic, attempt: this.attempt, retryInMs: delayMs, error: e as Error });
    const old = this.producer;
    this.producer = undefined;
    this.retrying = true;
    void (async () => {
      await old?.close().catch(() => {});
      if (!this.closed) await new Promise((r) => setTimeout(r, delayMs));
      this.retrying = false;
      this.pump();
      this.wakeIdle();
    })();
  }

  private released(bytes: number): void {
    this.stats.bufferedBytes -= bytes;
    if (this.stats.bufferedBytes <= this.o.maxBufferBytes / 2 && this.roomWaiters.length) {
      const w = this.roomWaiters;
      this.roomWaiters = [];
      for (const f of w) f();
    }
  }

  /** Takes the next request: queue order, at most one record per partition, maxSendBytes. */
  private take(): Queued[] {
    const batch: Queued[] = [];
    const rest: Queued[] = [];
    const used = new Set<number>();
    let bytes = 0;
    for (const q of this.queue) {
      if (!used.has(q.partition) && (batch.length === 0 || bytes + q.bytes <= this.maxSendBytes)) {
        used.add(q.partition);
        batch.push(q);
        bytes += q.bytes;
      } else {
        rest.push(q);
      }
    }
    this.queue = rest;
    return batch;
  }

  private wakeAll(): void {
    const w = [...this.roomWaiters, ...this.idleWaiters];
    this.roomWaiters = [];
    this.idleWaiters = [];
    for (const f of w) f();
  }
}
