/**
 * A native Fetch of one topic's assigned partitions (`run --fetch native`), behind the adapter's
 * GroupConsumer (adapter.ts: kafkajs keeps the group membership, the assignment, heartbeats and
 * the commits; its own fetching of the topic is paused, and this fetches it instead).
 *
 * Why: kafkajs concatenates every fetch answer into a fresh buffer of up to 8 MiB
 * (network/connection.js processData); the page faults of that fresh memory were most of what the
 * main thread of `run --workers N` spent per byte on a real broker (bench/RESULTS.md round 8: 2.4-4
 * CPU-s per GB, the ceiling of `run --workers N`). Here an answer is read straight into a reused
 * buffer (BrokerConnection's frameBuffer, a BufferPool of answer buffers), its record batches are
 * decoded as slices of it (no copy), and the buffer is reused once the caller says (FetchedBatch.done)
 * that it no longer reads any of its records: `run --workers N` copies them into its workers' slots
 * first. A caller that never says so leaves the buffer to the GC (fresh memory, as with kafkajs).
 *
 * Wire formats (Kafka protocol guide; request header v1, response header v0):
 *   Fetch v4   replica_id -1, max_wait_ms, min_bytes, max_bytes, isolation_level (1: read committed,
 *              kafkajs's default), [topic, [partition, fetch_offset int64, partition_max_bytes]]
 *           -> throttle_time_ms, [topic, [partition, error, high_watermark int64, last_stable_offset
 *              int64, aborted_transactions [producer_id int64, first_offset int64]?, records bytes?]]
 *   RecordBatch v2 (produce.ts): base_offset, batch_length, leader_epoch, magic, crc, attributes
 *              (bits 0-2 codec, 3 log-append time, 4 transactional, 5 control), last_offset_delta,
 *              base_timestamp, max_timestamp, producer_id, producer_epoch, base_sequence, count, records
 *
 * Decoding (decodeRecordBatches): a batch cut at the answer's end is left for the next fetch (the
 * broker fills answers up to max_bytes); records before the fetch offset (a batch that starts
 * before a seek) are skipped; control batches and the batches of aborted transactions are skipped
 * (read committed, as kafkajs); codecs none and gzip are decoded; snappy, lz4 and zstd are not
 * (no codec in Node 20 without a new dependency): such a batch is counted
 * (kafka_fetch_codec_unsupported), logged and skipped, like a batch that does not parse
 * (kafka_fetch_batch_corrupt) and a batch of an old message format (kafka_fetch_magic_unsupported).
 * CRCs are not checked, as kafkajs does not (the broker checked them when the batch was produced;
 * a CRC-32C in JavaScript on the main thread would cost what this module saves).
 *
 * Errors: OFFSET_OUT_OF_RANGE resets the partition per the consumer's policy (the earliest offset
 * with --start-from earliest, else the latest); leader changes and other retriable answers refresh
 * the metadata and fetch again; a lost connection is retried with a bounded backoff, never fatal
 * (kafkajs's side of the consumer reports an outage that lasts); any other error code stops the
 * consumer (onCrash). A throttled answer (throttle_time_ms) delays the next fetch by that long.
 */
import type { ConnectionOptions } from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { BufferPool } from './bufferPool.js';
import { log } from './log.js';
import { BrokerConnection, errorName, pooledConnection, KafkaProduceError, parseBroker, readInt64, Reader, requestMetadata, RETRIABLE, Writer } from './produce.js';

const API_FETCH = 1;
const OFFSET_OUT_OF_RANGE = 1;

/** A consumed record (adapter.ts's InRecord is this type: adapter.ts imports this module, not the other way). */
export interface FetchedRecord {
  topic: string;
  partition: number;
  /** Offset as a decimal string (64-bit). */
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Header values as bytes (the first one when a header repeats). */
  headers: Record<string, Buffer>;
  /** Record timestamp, ms since the epoch. */
  timestamp: number;
}

/** What one partition's part of a Fetch answer held. */
export interface PartitionAnswer {
  partition: number;
  error: number;
  highWatermark: number;
  records: FetchedRecord[];
  /** The offset after the last whole batch (undefined: no whole batch in the answer). */
  next: number | undefined;
}

export interface FetchAnswer {
  throttleMs: number;
  partitions: PartitionAnswer[];
}

/** Counts of what decoding skipped (added to the run's bad-record counts). */
export type FetchCounts = Record<string, number>;

function count(c: FetchCounts, k: string): void {
  c[k] = (c[k] ?? 0) + 1;
}

/** A zigzag varint (Kafka records' lengths and deltas) at `st.p`, which moves past it. */
function varint(b: Buffer, st: { p: number }): number {
  let v = 0;
  let mul = 1;
  let byte: number;
  do {
    if (st.p >= b.length) throw new RangeError('varint past the end');
    byte = b[st.p++];
    v += (byte & 0x7f) * mul;
    mul *= 128;
  } while (byte & 0x80 && mul < 2 ** 63);
  return v % 2 === 1 ? -(v + 1) / 2 : v / 2;
}

/** `n` bytes at `st.p` (null when n < 0), a slice of `b` (no copy). */
function bytes(b: Buffer, st: { p: number }, n: number): Buffer | null {
  if (n < 0) return null;
  if (st.p + n > b.length) throw new RangeError('field past the end');
  const s = b.subarray(st.p, st.p + n);
  st.p += n;
  return s;
}

const BATCH_HEAD = 61;
const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
/** Codecs already logged as unsupported (once each). */
const loggedCodecs = new Set<number>();

/**
 * The records of a `records` field of a Fetch answer (RecordBatch v2), from `fetchOffset` on.
 * `aborted`: the partition's aborted transactions (producer id, first offset), read committed.
 * Returns the records and the offset after the last whole batch (undefined when there was none).
 */
export function decodeRecordBatches(
  buf: Buffer,
  topic: string,
  partition: number,
  fetchOffset: number,
  counts: FetchCounts,
  aborted: { producerId: string; firstOffset: number }[] = [],
): { records: FetchedRecord[]; next: number | undefined } {
  const records: FetchedRecord[] = [];
  let next: number | undefined;
  const pendingAborts = [...aborted].sort((a, b) => a.firstOffset - b.firstOffset);
  const abortedProducers = new Set<string>();
  let p = 0;
  while (p + 17 <= buf.length) {
    const base = readInt64(buf, p);
    const len = buf.readInt32BE(p + 8);
    const end = p + 12 + len;
    if (len < 0 || end > buf.length) break; // cut at the answer's end: the next fetch gets it whole
    const magic = buf.readInt8(p + 16);
    if (magic !== 2) {
      // message format v0/v1 (the offset is the last one of the message set entry)
      count(counts, 'kafka_fetch_magic_unsupported');
      next = base + 1;
      p = end;
      continue;
    }
    if (len + 12 < BATCH_HEAD) {
      count(counts, 'kafka_fetch_batch_corrupt');
      break;
    }
    const attributes = buf.readInt16BE(p + 21);
    const lastDelta = buf.readInt32BE(p + 23);
    const batchNext = base + lastDelta + 1;
    const producerId = buf.readBigInt64BE(p + 43).toString();
    while (pendingAborts.length && pendingAborts[0].firstOffset < batchNext) abortedProducers.add(pendingAborts.shift()!.producerId);
    const control = (attributes & 0x20) !== 0;
    const transactional = (attributes & 0x10) !== 0;
    if (control) {
      // an abort marker (control record key: version int16, type int16 = 0) ends its transaction
      if (abortedProducers.has(producerId) && buf.length >= p + BATCH_HEAD + 1) {
        try {
          const st = { p: p + BATCH_HEAD };
          varint(buf, st); // length
          st.p++; // attributes
          varint(buf, st); // timestamp delta
          varint(buf, st); // offset delta
          const key = bytes(buf, st, varint(buf, st));
          if (key && key.length >= 4 && key.readInt16BE(2) === 0) abortedProducers.delete(producerId);
        } catch {
          count(counts, 'kafka_fetch_batch_corrupt');
        }
      }
      next = batchNext;
      p = end;
      continue;
    }
    if (transactional && abortedProducers.has(producerId)) {
      next = batchNext;
      p = end;
      continue;
    }
    const codec = attributes & 7;
    let body = buf.subarray(p + BATCH_HEAD, end);
    if (codec === 1) {
      try {
        body = gunzipSync(body);
      } catch {
        count(counts, 'kafka_fetch_batch_corrupt');
        next = batchNext;
        p = end;
        continue;
      }
    } else if (codec !== 0) {
      count(counts, 'kafka_fetch_codec_unsupported');
      if (!loggedCodecs.has(codec)) {
        loggedCodecs.add(codec);
        log('error', 'record batches of an unsupported codec are skipped (counted kafka_fetch_codec_unsupported; use --fetch kafkajs or produce with none or gzip)', { topic, partition, codec: CODECS[codec] ?? codec });
      }
      next = batchNext;
      p = end;
      continue;
    }
    const logAppend = (attributes & 0x08) !== 0;
    const baseTs = readInt64(buf, p + 27);
    const maxTs = readInt64(buf, p + 35);
    const n = buf.readInt32BE(p + 57);
    const got: FetchedRecord[] = [];
    try {
      const st = { p: 0 };
      for (let i = 0; i < n; i++) {
        const rlen = varint(body, st);
        const rend = st.p + rlen;
        if (rlen < 0 || rend > body.length) throw new RangeError('record past the batch');
        st.p++; // attributes
        const tsDelta = varint(body, st);
        const offDelta = varint(body, st);
        const key = bytes(body, st, varint(body, st));
        const value = bytes(body, st, varint(body, st));
        const nh = varint(body, st);
        const headers: Record<string, Buffer> = {};
        for (let h = 0; h < nh; h++) {
          const hk = bytes(body, st, varint(body, st));
          const hv = bytes(body, st, varint(body, st));
          const name = hk ? hk.toString('utf8') : '';
          if (hv && !(name in headers)) headers[name] = hv;
        }
        if (st.p !== rend) throw new RangeError('record length mismatch');
        const offset = base + offDelta;
        if (offset < fetchOffset) continue;
        got.push({ topic, partition, offset: String(offset), key, value, headers, timestamp: logAppend ? maxTs : baseTs + tsDelta });
      }
    } catch {
      count(counts, 'kafka_fetch_batch_corrupt');
      next = batchNext;
      p = end;
      continue;
    }
    for (const r of got) records.push(r);
    next = batchNext;
    p = end;
  }
  return { records, next };
}

/** A Fetch v4 answer for one topic (`offsets`: each partition's fetch offset of the request). */
export function decodeFetchAnswer(body: Buffer, topic: string, offsets: ReadonlyMap<number, number>, counts: FetchCounts): FetchAnswer {
  const r = new Reader(body);
  const throttleMs = r.i32();
  const partitions: PartitionAnswer[] = [];
  r.array(() => {
    const name = r.str() ?? '';
    r.array(() => {
      const partition = r.i32();
      const error = r.i16();
      const highWatermark = r.i64();
      r.i64(); // last stable offset
      const na = r.i32();
      const aborted: { producerId: string; firstOffset: number }[] = [];
      for (let i = 0; i < na; i++) {
        const producerId = r.b.readBigInt64BE(r.off).toString();
        r.off += 8;
        aborted.push({ producerId, firstOffset: r.i64() });
      }
      const len = r.i32();
      const recs = len > 0 ? r.b.subarray(r.off, r.off + len) : undefined;
      if (len > 0) r.off += len;
      if (name !== topic) return;
      const from = offsets.get(partition) ?? 0;
      const d = recs && error === 0 ? decodeRecordBatches(recs, topic, partition, from, counts, aborted) : { records: [], next: undefined };
      partitions.push({ partition, error, highWatermark, records: d.records, next: d.next });
    });
  });
  return { throttleMs, partitions };
}

/** A partition's records of one answer, handed to the consumer. */
export interface FetchedBatch {
  partition: number;
  records: FetchedRecord[];
  /** Offset after the batch's last record (the fetch position now). */
  nextOffset: string;
  highWatermark: string;
  /** The partition was revoked or seeked since the answer came: drop the batch. */
  isStale(): boolean;
  isRunning(): boolean;
  /** The caller no longer reads any record of the batch (keys, values, headers): the answer's memory may be reused. */
  done(): void;
}

export interface NativeFetcherOptions {
  brokers: string[];
  clientId: string;
  ssl?: boolean | ConnectionOptions;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  topic: string;
  maxBytesPerPartition: number;
  maxBytes: number;
  maxWaitMs: number;
  /** Where partitions just assigned start: their committed offsets, else per the reset policy. */
  startOffsets(partitions: number[]): Promise<Map<number, number>>;
  /** Where a partition whose offset is out of range starts again (the reset policy). */
  resetOffset(partition: number): Promise<number>;
  /** Awaited before the next batch is handed over (one at a time, in answer order). */
  onBatch(b: FetchedBatch): Promise<void>;
  /** A fetch error that retrying cannot cure: the consumer stops. */
  onCrash(e: Error): void;
}

interface PartState {
  /** The next offset to fetch (undefined: being looked up). */
  offset: number | undefined;
}

/** Answer buffers kept for reuse, at most this many bytes. */
const POOL_BYTES = 64 << 20;
const BACKOFF_MAX_MS = 5000;
/** The test hook's cuts per fetcher at most (TLSDECRYPT_TEST_FETCH_CUT). */
const CUTS_MAX = 6;
/** Fetch connections cut by the test hook (TLSDECRYPT_TEST_FETCH_CUT), in this process. */
export const fetchCuts = { count: 0, midAnswer: 0 };

/** Fetches the assigned partitions of one topic; see the module comment. */
export class NativeFetcher {
  private readonly parts = new Map<number, PartState>();
  private readonly conns = new Map<string, BrokerConnection>();
  private nodes = new Map<number, { host: string; port: number }>();
  private leaders: number[] = [];
  private needMetadata = true;
  private paused = false;
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private rotate = 0;
  private readonly pool = new BufferPool(POOL_BYTES);
  /** Answer buffers the pool made (by their memory), to give back the whole buffer from a slice. */
  private readonly made = new WeakMap<ArrayBufferLike, Buffer>();
  /** What decoding skipped (kafka_fetch_*). */
  readonly counts: FetchCounts = {};
  /** Answers read into a reused buffer, and into a fresh one (tests, bench). */
  readonly answers = { reused: 0, fresh: 0 };
  /**
   * Test hook, read once: `TLSDECRYPT_TEST_FETCH_CUT=N` closes the connection of every N-th fetch
   * that is not answered 1 ms after it was sent, and of the first and every N-th large answer after
   * it once its first bytes are read (a connection lost mid-fetch, mid-answer); counted in fetchCuts.
   * At most CUTS_MAX cuts per fetcher: a retry re-asks the same offsets, so on a slow broker the
   * two kinds could otherwise alternate on every attempt and never let one through.
   */
  private readonly cutEvery = Number(process.env.TLSDECRYPT_TEST_FETCH_CUT ?? 0) || 0;
  private cutsLeft = CUTS_MAX;
  private fetches = 0;
  private large = 0;

  constructor(private readonly o: NativeFetcherOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** The partitions assigned now: new ones look up their start offsets; revoked ones are dropped. */
  assign(partitions: number[]): void {
    const want = new Set(partitions);
    for (const p of [...this.parts.keys()]) if (!want.has(p)) this.parts.delete(p);
    const added = partitions.filter((p) => !this.parts.has(p));
    if (!added.length) return;
    const states = added.map((p) => {
      const st: PartState = { offset: undefined };
      this.parts.set(p, st);
      return st;
    });
    void this.lookUp(added, states);
  }

  private async lookUp(added: number[], states: PartState[]): Promise<void> {
    for (let attempt = 1; this.running || attempt === 1; attempt++) {
      try {
        const offs = await this.o.startOffsets(added);
        added.forEach((p, i) => {
          const o = offs.get(p);
          if (this.parts.get(p) === states[i] && states[i].offset === undefined && o !== undefined) states[i].offset = o;
        });
        this.wake();
        return;
      } catch (e) {
        log('warn', 'cannot look up the start offsets of partitions just assigned, retrying', { topic: this.o.topic, partitions: added, error: e as Error });
        await sleep(Math.min(BACKOFF_MAX_MS, 250 * attempt));
      }
    }
  }

  /** The next fetch of `partition` starts at `offset` (batches of it already fetched are stale). */
  seek(partition: number, offset: number): void {
    if (!this.parts.has(partition)) return;
    this.parts.set(partition, { offset });
    this.wake();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake();
  }

  /** Stops fetching; resolves once the fetch in flight and the batch being handed over are done. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  close(): void {
    log('debug', 'native fetch closed', { topic: this.o.topic, answersReused: this.answers.reused, answersFresh: this.answers.fresh, ...this.counts });
    this.running = false;
    this.wake();
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private idle(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        r();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  private conn(host: string, port: number): BrokerConnection {
    return pooledConnection(this.conns, host, port, {
      clientId: this.o.clientId,
      ssl: this.o.ssl,
      connectionTimeoutMs: this.o.connectionTimeoutMs,
      requestTimeoutMs: this.o.requestTimeoutMs + this.o.maxWaitMs,
      maxInFlight: 1,
      frameBuffer: (size) => this.answerBuffer(size),
    });
  }

  /** Memory for an answer of `size` bytes: a reused buffer (power-of-two sizes), else a new one kept for reuse. */
  private answerBuffer(size: number): Buffer {
    if (this.cutEvery && this.large++ % this.cutEvery === 0 && this.cutsLeft > 0) {
      this.cutsLeft--;
      setImmediate(() => {
        fetchCuts.midAnswer++;
        for (const c of this.conns.values()) c.close(new KafkaProduceError('test: fetch connection cut mid-answer', true));
      });
    }
    const cap = 2 ** Math.ceil(Math.log2(size));
    const b = this.pool.get(cap);
    if (b) {
      this.answers.reused++;
      return b;
    }
    this.answers.fresh++;
    const n = Buffer.allocUnsafeSlow(cap);
    this.made.set(n.buffer, n);
    return n;
  }

  private release(answer: Buffer): void {
    const b = this.made.get(answer.buffer);
    if (b) this.pool.put(b);
  }

  private async refreshMetadata(): Promise<void> {
    const candidates = [...this.nodes.values(), ...this.o.brokers.map(parseBroker)];
    let last: unknown;
    for (const b of candidates) {
      try {
        const md = await requestMetadata((k, v, body) => this.conn(b.host, b.port).request(k, v, [body]), [this.o.topic]);
        const t = md.topics.find((x) => x.name === this.o.topic);
        if (!t || t.error !== 0) throw new Error(`metadata for topic ${this.o.topic}: ${t ? errorName(t.error) : 'missing'}`);
        this.nodes = md.nodes;
        this.leaders = t.leaders;
        this.needMetadata = false;
        return;
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new Error(`cannot reach Kafka at ${this.o.brokers.join(',')}`);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      const ready = [...this.parts].filter(([, st]) => st.offset !== undefined);
      if (this.paused || !ready.length) {
        await this.idle(this.o.maxWaitMs);
        continue;
      }
      try {
        if (this.needMetadata) await this.refreshMetadata();
        // partitions by leader; the order turns each round, so no partition waits behind a full answer
        const byLeader = new Map<number, number[]>();
        const start = this.rotate++ % ready.length;
        for (let i = 0; i < ready.length; i++) {
          const p = ready[(start + i) % ready.length][0];
          const leader = this.leaders[p] ?? -1;
          if (leader < 0 || !this.nodes.has(leader)) {
            this.needMetadata = true;
            continue;
          }
          let l = byLeader.get(leader);
          if (!l) byLeader.set(leader, (l = []));
          l.push(p);
        }
        const asked = [...byLeader].map(([leader, ps]) => this.fetchFrom(leader, ps));
        let throttle = 0;
        let retriable = false;
        for (const a of asked) {
          const got = await a;
          throttle = Math.max(throttle, got.throttleMs);
          retriable ||= await this.deliver(got);
        }
        failures = 0;
        if (retriable || this.needMetadata) {
          this.needMetadata = true;
          await this.idle(100);
        }
        if (throttle > 0) await this.idle(Math.min(throttle, 30_000));
      } catch (e) {
        if (!this.running) break;
        failures++;
        this.needMetadata = true;
        const ms = Math.min(BACKOFF_MAX_MS, 300 * 2 ** Math.min(failures - 1, 5));
        log('warn', 'fetch failed (Kafka unavailable?), retrying', { topic: this.o.topic, attempt: failures, retryInMs: ms, error: e as Error });
        await this.idle(ms);
      }
    }
  }

  /** One Fetch request to `leader` for `partitions`, decoded, with the states and offsets it was asked for. */
  private async fetchFrom(leader: number, partitions: number[]): Promise<FetchAnswer & { body: Buffer; asked: Map<number, { st: PartState; offset: number }> }> {
    const node = this.nodes.get(leader)!;
    const asked = new Map<number, { st: PartState; offset: number }>();
    const w = new Writer().i32(-1).i32(this.o.maxWaitMs).i32(1).i32(this.o.maxBytes).i8(1).i32(1).str(this.o.topic).i32(partitions.length);
    for (const p of partitions) {
      const st = this.parts.get(p)!;
      asked.set(p, { st, offset: st.offset! });
      w.i32(p).i64(st.offset!).i32(this.o.maxBytesPerPartition);
    }
    const conn = this.conn(node.host, node.port);
    const req = conn.request(API_FETCH, 4, [w.done()]);
    if (this.cutEvery && ++this.fetches % this.cutEvery === 0 && this.cutsLeft > 0) {
      let answered = false;
      req.then(() => (answered = true), () => {});
      setTimeout(() => {
        if (answered || this.cutsLeft <= 0) return;
        this.cutsLeft--;
        fetchCuts.count++;
        conn.close(new KafkaProduceError('test: fetch connection cut', true));
      }, 1);
    }
    const body = await req;
    const offsets = new Map([...asked].map(([p, a]) => [p, a.offset]));
    return { ...decodeFetchAnswer(body, this.o.topic, offsets, this.counts), body, asked };
  }

  /** Hands an answer's batches over in order; true when a partition answered a retriable error. */
  private async deliver(a: FetchAnswer & { body: Buffer; asked: Map<number, { st: PartState; offset: number }> }): Promise<boolean> {
    let retriable = false;
    let refs = 1; // the delivery itself
    const unref = (): void => {
      if (--refs === 0) this.release(a.body);
    };
    try {
      for (const pa of a.partitions) {
        const ask = a.asked.get(pa.partition);
        if (!ask) continue;
        const { st, offset } = ask;
        // revoked or seeked meanwhile: the answer is stale for this partition
        const current = (): boolean => this.parts.get(pa.partition) === st && st.offset === offset;
        if (pa.error !== 0) {
          if (!current()) continue;
          if (pa.error === OFFSET_OUT_OF_RANGE) {
            st.offset = undefined;
            void this.reset(pa.partition, st, offset);
          } else if (RETRIABLE.has(pa.error) || pa.error === 9 /* REPLICA_NOT_AVAILABLE */) {
            retriable = true;
          } else {
            const e = new Error(`fetch ${this.o.topic}/${pa.partition}: ${errorName(pa.error)}`);
            log('error', 'fetch failed for good', { topic: this.o.topic, partition: pa.partition, error: e });
            this.running = false;
            this.o.onCrash(e);
            return false;
          }
          continue;
        }
        if (pa.next === undefined || !current()) continue;
        st.offset = pa.next;
        if (!pa.records.length) continue;
        refs++;
        let released = false;
        await this.o.onBatch({
          partition: pa.partition,
          records: pa.records,
          nextOffset: String(pa.next),
          highWatermark: String(pa.highWatermark),
          isStale: () => this.parts.get(pa.partition) !== st,
          isRunning: () => this.running && this.parts.get(pa.partition) === st,
          done: () => {
            if (released) return;
            released = true;
            unref();
          },
        });
      }
    } finally {
      unref();
    }
    return retriable;
  }

  private async reset(partition: number, st: PartState, from: number): Promise<void> {
    for (let attempt = 1; this.running; attempt++) {
      try {
        const to = await this.o.resetOffset(partition);
        log('warn', 'fetch offset out of range, reset per --start-from', { topic: this.o.topic, partition, from, to });
        if (this.parts.get(partition) === st && st.offset === undefined) st.offset = to;
        this.wake();
        return;
      } catch (e) {
        log('warn', 'cannot look up where an out-of-range partition starts again, retrying', { topic: this.o.topic, partition, error: e as Error });
        await sleep(Math.min(BACKOFF_MAX_MS, 250 * attempt));
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
