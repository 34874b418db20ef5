/**
 * A lean Kafka producer for the packets publishers (`publish pcap`, `publish mirror`), behind the
 * adapter's Producer interface (adapter.ts picks it with ProducerOptions.impl 'native').
 *
 * Why: kafkajs spends ~23 µs of CPU per 1.4 KB packet producing 512 KiB records (its Encoder grows
 * zero-filled buffers, Buffer.concat copies every level, byte-wise JavaScript CRC-32C, GC;
 * bench/RESULTS.md §6). Here a record value is never copied: each RecordBatch is a small header
 * buffer plus the record values themselves, written with one writev (socket.cork/uncork), and the
 * CRC-32C is a slicing-by-8 table loop (crc32c.ts) run over those same segments.
 *
 * Wire formats (Kafka protocol guide; non-flexible versions, request header v1, response header v0):
 *   Metadata v4        topics [string], allow_auto_topic_creation bool
 *                   -> throttle, brokers [node_id, host, port, rack?], cluster_id?, controller_id,
 *                      topics [error, name, internal, partitions [error, index, leader, replicas[], isr[]]]
 *   InitProducerId v1  transactional_id? (null), transaction_timeout_ms
 *                   -> throttle, error, producer_id int64, producer_epoch int16
 *   Produce v3         transactional_id? (null), acks int16, timeout int32, [topic, [partition, records]]
 *                   -> [topic, [partition, error, base_offset, log_append_time]], throttle
 *   RecordBatch v2     base_offset int64, batch_length int32, leader_epoch int32, magic 2, crc uint32
 *                      (CRC-32C of attributes..end), attributes int16, last_offset_delta int32,
 *                      base_timestamp int64, max_timestamp int64, producer_id int64, producer_epoch
 *                      int16, base_sequence int32, count int32, records (zigzag varints:
 *                      length, attributes, timestamp_delta, offset_delta, key, value, headers)
 *
 * Delivery: acks=all by default. Idempotent by default (InitProducerId, a sequence number per
 * partition, the same batch bytes re-sent on retry), so a retry after a lost acknowledgement is
 * de-duplicated by the broker, like the kafkajs producer this replaces.
 *
 * Pipelining (max.in.flight.requests.per.connection=5 semantics of Kafka's idempotent producer):
 * `send` calls are queued in call order; each becomes steps (the k-th batch of each of its
 * partitions, one request per partition leader). Up to inFlightLimit (5) steps are written before
 * the first is answered. A batch's sequence number is reserved when it is encoded, in send order,
 * and BrokerConnection writes requests in call order, so the broker sees a partition's batches in
 * sequence (it remembers the last 5 per producer and partition, hence the bound). When a request
 * fails or a partition answers with an error, nothing more is written until every step in flight
 * is answered (the later batches of that partition come back OUT_OF_ORDER_SEQUENCE_NUMBER, an echo
 * of the first failure); then, after backoff and a metadata refresh, every undelivered batch is
 * written again in its original order with its bytes and sequence number, so those the broker had
 * stored are answered as duplicates. A new producer id (every sequence restarting at 0, all
 * undelivered batches re-encoded) is taken when the broker lost or rejects this producer's state
 * (UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH, an OUT_OF_ORDER that is not an echo) and when a
 * batch was refused for good (its gap would stall the partition). Retriable answers
 * (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, timeouts, ...) and lost
 * connections are retried like that a bounded number of rounds (attempts); then every pending
 * `send` rejects with a transient KafkaProduceError, and the caller (batcher.ts) waits and retries
 * with a fresh producer. Answers that retrying cannot cure (MESSAGE_TOO_LARGE, authorisation,
 * corrupt) reject that send at once, not transient; the sends behind it are delivered.
 * Without idempotence one step is in flight at a time (a retry could otherwise overtake).
 *
 * Batch size: a partition's records go into batches of at most maxBatchBytes (the broker's
 * message.max.bytes, 1 MiB default); a single record larger than that is sent alone and refused
 * by the broker (MESSAGE_TOO_LARGE) unless the topic allows it. Produce v3+ allows one batch per
 * partition per request, so several batches of one partition leave in successive requests.
 *
 * Not supported here: SASL (the adapter uses kafkajs when SASL is configured). TLS is.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { gzipSync } from 'node:zlib';
import { crc32c } from './crc32c.js';

/**
 * A record to produce: the shape of adapter.ts's OutRecord, declared here so that this module
 * does not import the adapter (which imports it: no import cycles, type-only ones included).
 */
export interface OutRecord {
  key?: Buffer | string | null;
  value: Buffer | string;
  headers?: Record<string, string | Buffer>;
  partition?: number;
  /** ms since the epoch (default: now). */
  timestamp?: number;
}

const API_PRODUCE = 0;
const API_METADATA = 3;
const API_INIT_PRODUCER_ID = 22;

/** Kafka error codes this producer acts on (the protocol guide's table). */
export const RETRIABLE = new Set([
  3, // UNKNOWN_TOPIC_OR_PARTITION
  5, // LEADER_NOT_AVAILABLE
  6, // NOT_LEADER_OR_FOLLOWER
  7, // REQUEST_TIMED_OUT
  13, // NETWORK_EXCEPTION
  14, // COORDINATOR_LOAD_IN_PROGRESS
  15, // COORDINATOR_NOT_AVAILABLE
  19, // NOT_ENOUGH_REPLICAS
  20, // NOT_ENOUGH_REPLICAS_AFTER_APPEND
  56, // KAFKA_STORAGE_ERROR
  74, // FENCED_LEADER_EPOCH
  75, // UNKNOWN_LEADER_EPOCH
]);
const DUPLICATE_SEQUENCE_NUMBER = 46;
/** The producer id/epoch/sequence state is gone or out of step: start over with a new id. */
const PRODUCER_STATE = new Set([45 /* OUT_OF_ORDER_SEQUENCE_NUMBER */, 47 /* INVALID_PRODUCER_EPOCH */, 59 /* UNKNOWN_PRODUCER_ID */]);
const ERROR_NAMES: Record<number, string> = {
  2: 'CORRUPT_MESSAGE', 3: 'UNKNOWN_TOPIC_OR_PARTITION', 5: 'LEADER_NOT_AVAILABLE', 6: 'NOT_LEADER_OR_FOLLOWER',
  7: 'REQUEST_TIMED_OUT', 10: 'MESSAGE_TOO_LARGE', 13: 'NETWORK_EXCEPTION', 18: 'RECORD_LIST_TOO_LARGE',
  19: 'NOT_ENOUGH_REPLICAS', 20: 'NOT_ENOUGH_REPLICAS_AFTER_APPEND', 29: 'TOPIC_AUTHORIZATION_FAILED',
  31: 'CLUSTER_AUTHORIZATION_FAILED', 45: 'OUT_OF_ORDER_SEQUENCE_NUMBER', 47: 'INVALID_PRODUCER_EPOCH',
  56: 'KAFKA_STORAGE_ERROR', 59: 'UNKNOWN_PRODUCER_ID', 74: 'FENCED_LEADER_EPOCH', 75: 'UNKNOWN_LEADER_EPOCH',
  87: 'INVALID_RECORD', 1: 'OFFSET_OUT_OF_RANGE', 9: 'REPLICA_NOT_AVAILABLE',
};

/** A failed produce. `transient`: waiting and retrying can cure it (outage, leader change). */
export class KafkaProduceError extends Error {
  constructor(message: string, readonly transient: boolean, readonly code?: number, override readonly cause?: unknown) {
    super(message);
    this.name = 'KafkaProduceError';
  }
}

export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `error ${code}`;
}

export interface NativeProducerOptions {
  brokers: string[];
  clientId: string;
  ssl?: boolean | ConnectionOptions;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  /** -1 (all in-sync replicas, default) or 1. */
  acks?: -1 | 1;
  /** How long the broker waits for the replicas' acknowledgement, ms. */
  ackTimeoutMs?: number;
  idempotent?: boolean;
  compression?: 'none' | 'gzip';
  /** Bytes of one RecordBatch at most (the broker's message.max.bytes). */
  maxBatchBytes?: number;
  /** Requests in flight per broker connection at most. */
  maxInFlight?: number;
  /** Attempts per send (metadata refresh + backoff between them) before a transient failure. */
  attempts?: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

/** Bytes of an unsigned varint (v a non-negative safe integer). */
function uvarintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeUvarint(b: Buffer, off: number, v: number): number {
  while (v >= 128) {
    b[off++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  b[off++] = v;
  return off;
}

function writeInt64(b: Buffer, off: number, v: number): number {
  const hi = Math.floor(v / 4294967296);
  b.writeInt32BE(hi, off);
  b.writeUInt32BE(v - hi * 4294967296, off + 4);
  return off + 8;
}

export function readInt64(b: Buffer, off: number): number {
  return b.readInt32BE(off) * 4294967296 + b.readUInt32BE(off + 4);
}

function toBuf(v: Buffer | string | null | undefined): Buffer | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? Buffer.from(v) : v;
}

/** Values at least this long are written by reference (writev), shorter ones copied inline. */
const INLINE_MAX = 4096;

/** One RecordBatch, encoded: segments to write in order (small parts inline, big values by reference). */
export interface EncodedBatch {
  segments: Buffer[];
  bytes: number;
  records: number;
}

interface PreparedRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: [Buffer, Buffer][];
  tsDelta: number;
  /** Bytes of the record body (after its length varint). */
  body: number;
}

/** Encodes records as one RecordBatch v2 (exported for tests). */
export function encodeRecordBatch(
  records: OutRecord[],
  o: { producerId?: number; producerEpoch?: number; baseSequence?: number; compression?: 'none' | 'gzip'; now?: number },
): EncodedBatch {
  const now = o.now ?? Date.now();
  let baseTs = Infinity;
  let maxTs = -Infinity;
  for (const r of records) {
    const ts = r.timestamp ?? now;
    if (ts < baseTs) baseTs = ts;
    if (ts > maxTs) maxTs = ts;
  }
  // sizes first, so the inline parts go into one exactly-sized buffer
  const prepared: PreparedRecord[] = [];
  let inlineBytes = 0;
  let recordsBytes = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const key = toBuf(r.key);
    const value = toBuf(r.value);
    const headers: [Buffer, Buffer][] = [];
    let hBytes = uvarintSize(zigzag(r.headers ? Object.keys(r.headers).length : 0));
    if (r.headers) {
      for (const [k, v] of Object.entries(r.headers)) {
        const kb = Buffer.from(k);
        const vb = toBuf(v) as Buffer;
        headers.push([kb, vb]);
        hBytes += uvarintSize(zigzag(kb.length)) + kb.length + uvarintSize(zigzag(vb.length)) + vb.length;
      }
    }
    const tsDelta = (r.timestamp ?? now) - baseTs;
    const body =
      1 + uvarintSize(zigzag(tsDelta)) + uvarintSize(zigzag(i)) +
      (key ? uvarintSize(zigzag(key.length)) + key.length : 1) +
      (value ? uvarintSize(zigzag(value.length)) + value.length : 1) +
      hBytes;
    prepared.push({ key, value, headers, tsDelta, body });
    const total = uvarintSize(zigzag(body)) + body;
    recordsBytes += total;
    inlineBytes += value && value.length >= INLINE_MAX ? total - value.length : total;
  }
  const HEADER = 61;
  const compress = o.compression === 'gzip';
  // records part: inline into `inl`, large values referenced
  const inl = Buffer.allocUnsafe(HEADER + (compress ? 0 : inlineBytes));
  const segments: Buffer[] = [];
  let recordsSegs: Buffer[];
  let recordsLen: number;
  {
    const out: Buffer[] = [];
    const buf = compress ? Buffer.allocUnsafe(recordsBytes) : inl;
    let off = compress ? 0 : HEADER;
    let segStart = off;
    for (let i = 0; i < prepared.length; i++) {
      const p = prepared[i];
      off = writeUvarint(buf, off, zigzag(p.body));
      buf[off++] = 0; // record attributes
      off = writeUvarint(buf, off, zigzag(p.tsDelta));
      off = writeUvarint(buf, off, zigzag(i));
      if (p.key) {
        off = writeUvarint(buf, off, zigzag(p.key.length));
        off += p.key.copy(buf, off);
      } else buf[off++] = 1; // zigzag(-1)
      if (p.value) {
        off = writeUvarint(buf, off, zigzag(p.value.length));
        if (!compress && p.value.length >= INLINE_MAX) {
          out.push(buf.subarray(segStart, off), p.value);
          segStart = off;
        } else off += p.value.copy(buf, off);
      } else buf[off++] = 1;
      off = writeUvarint(buf, off, zigzag(p.headers.length));
      for (const [k, v] of p.headers) {
        off = writeUvarint(buf, off, zigzag(k.length));
        off += k.copy(buf, off);
        off = writeUvarint(buf, off, zigzag(v.length));
        off += v.copy(buf, off);
      }
    }
    if (off > segStart) out.push(buf.subarray(segStart, off));
    if (compress) {
      const z = gzipSync(buf.subarray(0, off));
      recordsSegs = [z];
      recordsLen = z.length;
    } else {
      // the first inline segment starts right after the batch header in the same buffer
      recordsSegs = out;
      recordsLen = recordsBytes;
    }
  }
  // batch header
  const h = inl;
  writeInt64(h, 0, 0); // base offset (assigned by the broker)
  h.writeInt32BE(HEADER - 12 + recordsLen, 8); // batch length: from leader epoch to the end
  h.writeInt32BE(-1, 12); // partition leader epoch
  h[16] = 2; // magic
  // crc at 17..20, below
  h.writeInt16BE(compress ? 1 : 0, 21); // attributes: compression, CreateTime, not transactional
  h.writeInt32BE(records.length - 1, 23); // last offset delta
  writeInt64(h, 27, baseTs);
  writeInt64(h, 35, maxTs);
  writeInt64(h, 43, o.producerId ?? -1);
  h.writeInt16BE(o.producerEpoch ?? -1, 51);
  h.writeInt32BE(o.baseSequence ?? -1, 53);
  h.writeInt32BE(records.length, 57);
  if (!compress && recordsSegs.length && recordsSegs[0].buffer === h.buffer && recordsSegs[0].byteOffset === h.byteOffset + HEADER) {
    // merge the header with the first inline segment (same memory, contiguous)
    segments.push(h.subarray(0, HEADER + recordsSegs[0].length), ...recordsSegs.slice(1));
  } else {
    segments.push(h.subarray(0, HEADER), ...recordsSegs);
  }
  let crc = crc32c(segments[0], 0, 21);
  for (let i = 1; i < segments.length; i++) crc = crc32c(segments[i], crc);
  h.writeUInt32BE(crc, 17);
  return { segments, bytes: HEADER + recordsLen, records: records.length };
}

// ---------------------------------------------------------------------------------------------
// Response reading

export class Reader {
  off = 0;
  constructor(readonly b: Buffer) {}
  i8(): number {
    return this.b.readInt8(this.off++);
  }
  i16(): number {
    const v = this.b.readInt16BE(this.off);
    this.off += 2;
    return v;
  }
  i32(): number {
    const v = this.b.readInt32BE(this.off);
    this.off += 4;
    return v;
  }
  i64(): number {
    const v = readInt64(this.b, this.off);
    this.off += 8;
    return v;
  }
  str(): string | null {
    const n = this.i16();
    if (n < 0) return null;
    const s = this.b.toString('utf8', this.off, this.off + n);
    this.off += n;
    return s;
  }
  array<T>(f: () => T): T[] {
    const n = this.i32();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(f());
    return out;
  }
}

/** A request body under construction (header v1 is put in front by BrokerConnection). */
export class Writer {
  private b = Buffer.allocUnsafe(256);
  off = 0;
  private room(n: number): void {
    if (this.off + n <= this.b.length) return;
    const g = Buffer.allocUnsafe(Math.max(this.b.length * 2, this.off + n));
    this.b.copy(g, 0, 0, this.off);
    this.b = g;
  }
  i8(v: number): this {
    this.room(1);
    this.b.writeInt8(v, this.off++);
    return this;
  }
  i16(v: number): this {
    this.room(2);
    this.b.writeInt16BE(v, this.off);
    this.off += 2;
    return this;
  }
  i32(v: number): this {
    this.room(4);
    this.b.writeInt32BE(v, this.off);
    this.off += 4;
    return this;
  }
  i64(v: number): this {
    this.room(8);
    this.off = writeInt64(this.b, this.off, v);
    return this;
  }
  str(s: string | null): this {
    if (s === null) return this.i16(-1);
    const n = Buffer.byteLength(s);
    this.i16(n);
    this.room(n);
    this.off += this.b.write(s, this.off);
    return this;
  }
  done(): Buffer {
    return this.b.subarray(0, this.off);
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Answers at least this long are read into o.frameBuffer's memory (when given). */
const FRAME_INTO_MIN = 64 << 10;
/** Bytes of the reused read buffer of a connection with a frameBuffer (plaintext). */
const READ_BUFFER = 256 << 10;

/** The open connection to host:port in `conns`, or a new one with `opts` (one that broke is replaced). */
export function pooledConnection(conns: Map<string, BrokerConnection>, host: string, port: number, opts: ConstructorParameters<typeof BrokerConnection>[2]): BrokerConnection {
  const k = `${host}:${port}`;
  let c = conns.get(k);
  if (!c || c.broken) {
    c = new BrokerConnection(host, port, opts);
    conns.set(k, c);
  }
  return c;
}

/** One TCP (or TLS) connection to a broker: framed requests, answers matched by correlation id. */
export class BrokerConnection {
  private socket: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Requests waiting for a slot or for their turn; woken together (a handful at most), each re-checks. */
  private slotWaiters: (() => void)[] = [];
  /** Write order: the ticket the next request took, and how many tickets have been written. */
  private tickets = 0;
  private written = 0;
  private chunks: Buffer[] = [];
  private have = 0;
  /** The answer being read into a buffer of its own (o.frameBuffer), and how much of it is there. */
  private into: { buf: Buffer; filled: number } | undefined;
  private dead: Error | undefined;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly o: {
      clientId: string;
      ssl?: boolean | ConnectionOptions;
      connectionTimeoutMs: number;
      requestTimeoutMs: number;
      maxInFlight: number;
      /**
       * Memory for an answer of at least FRAME_INTO_MIN bytes (`size`: the answer after its length
       * field): the chunks read from the socket are copied into it as they come, instead of being
       * concatenated into a fresh buffer once the answer is complete (fetch.ts: reused buffers).
       */
      frameBuffer?: (size: number) => Buffer;
    },
  ) {}

  get broken(): boolean {
    return this.dead !== undefined;
  }

  private open(): Promise<Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const ssl = this.o.ssl;
      const readBuffer = Buffer.allocUnsafeSlow(this.o.frameBuffer && !ssl ? READ_BUFFER : 0);
      const s: Socket = ssl
        ? tlsConnect({ host: this.host, port: this.port, servername: this.host, ...(typeof ssl === 'object' ? ssl : {}) })
        : this.o.frameBuffer
          ? // reads land in one reused buffer (a fresh 64 KiB one per read was page faults in the
            // kernel's copy, bench/RESULTS.md round 9); onData copies what it keeps
            netConnect({ host: this.host, port: this.port, onread: { buffer: readBuffer, callback: (n) => (this.onData(readBuffer.subarray(0, n), true), true) } })
          : netConnect({ host: this.host, port: this.port });
      s.setNoDelay(true);
      const timer = setTimeout(() => s.destroy(new Error(`connection to ${this.host}:${this.port} timed out`)), this.o.connectionTimeoutMs);
      const onError = (e: Error): void => {
        clearTimeout(timer);
        this.connecting = undefined;
        this.fail(new KafkaProduceError(`cannot connect to ${this.host}:${this.port}: ${e.message}`, true, undefined, e));
        reject(this.dead);
      };
      s.once('error', onError);
      s.once(ssl ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.off('error', onError);
        s.on('error', (e) => this.fail(new KafkaProduceError(`connection to ${this.host}:${this.port} failed: ${e.message}`, true, undefined, e)));
        s.on('close', () => this.fail(new KafkaProduceError(`connection to ${this.host}:${this.port} closed`, true)));
        s.on('data', (d: Buffer) => this.onData(d));
        this.socket = s;
        this.connecting = undefined;
        resolve(s);
      });
    });
    return this.connecting;
  }

  /** Rejects everything in flight and makes the connection unusable (the owner opens a new one). */
  private fail(e: Error): void {
    if (!this.dead) this.dead = e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
    this.wakeSlots();
    this.socket?.destroy();
  }

  /** Closes the connection: what is in flight rejects with `e` (default: closed, not transient). */
  close(e: Error = new KafkaProduceError('producer closed', false)): void {
    this.fail(e);
  }

  private wakeSlots(): void {
    const w = this.slotWaiters;
    if (!w.length) return;
    this.slotWaiters = [];
    for (const f of w) f();
  }

  /** `reused`: `d` is the socket's reused read buffer (valid until this returns): what is kept is copied. */
  private onData(d: Buffer, reused = false): void {
    if (this.into) {
      // a large answer being read into its own buffer: copy what belongs to it, frame the rest
      const into = this.into;
      const n = Math.min(d.length, into.buf.length - into.filled);
      d.copy(into.buf, into.filled, 0, n);
      into.filled += n;
      if (into.filled < into.buf.length) return;
      this.into = undefined;
      this.answer(into.buf);
      d = d.subarray(n);
      if (!d.length) return;
    }
    if (reused) d = Buffer.from(d);
    this.chunks.push(d);
    this.have += d.length;
    while (this.have >= 4) {
      let head = this.chunks[0];
      if (head.length < 4) {
        head = Buffer.concat(this.chunks);
        this.chunks = [head];
      }
      const size = head.readInt32BE(0);
      if (this.have < 4 + size) {
        if (this.o.frameBuffer && size >= FRAME_INTO_MIN) {
          // copy what came of it so far (after the length field); the rest follows in onData
          const buf = this.o.frameBuffer(size).subarray(0, size);
          let filled = 0;
          for (let i = 0; i < this.chunks.length; i++) filled += this.chunks[i].copy(buf, filled, i === 0 ? 4 : 0);
          this.into = { buf, filled };
          this.chunks = [];
          this.have = 0;
        }
        return;
      }
      if (head.length < 4 + size) {
        head = Buffer.concat(this.chunks);
        this.chunks = [head];
      }
      const frame = head.subarray(4, 4 + size);
      const rest = head.subarray(4 + size);
      this.chunks[0] = rest;
      if (!rest.length) this.chunks.shift();
      this.have -= 4 + size;
      this.answer(frame);
    }
  }

  /** A complete answer (after its length field): resolves the request with its correlation id. */
  private answer(frame: Buffer): void {
    const id = frame.readInt32BE(0);
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(frame.subarray(4));
    this.wakeSlots();
  }

  /**
   * Sends one request (api key/version, body segments after the request header) and resolves
   * with the response body (after the correlation id).
   */
  async request(apiKey: number, apiVersion: number, body: Buffer[]): Promise<Buffer> {
    if (this.dead) throw this.dead;
    // requests go out in call order (the producer relies on it: pipelined batches of one
    // partition carry consecutive sequence numbers), so each takes a ticket before any await
    const ticket = this.tickets++;
    const s = await this.open();
    while ((this.pending.size >= this.o.maxInFlight || this.written !== ticket) && !this.dead) await new Promise<void>((r) => this.slotWaiters.push(r));
    if (this.dead) throw this.dead;
    this.written++;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0x7fffffff || 1;
    const cid = Buffer.byteLength(this.o.clientId);
    let bodyLen = 0;
    for (const b of body) bodyLen += b.length;
    const head = Buffer.allocUnsafe(4 + 10 + cid);
    head.writeInt32BE(10 + cid + bodyLen, 0);
    head.writeInt16BE(apiKey, 4);
    head.writeInt16BE(apiVersion, 6);
    head.writeInt32BE(id, 8);
    head.writeInt16BE(cid, 12);
    head.write(this.o.clientId, 14);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        // answers come in order: one that is late makes the connection unusable
        this.fail(new KafkaProduceError(`request to ${this.host}:${this.port} timed out after ${this.o.requestTimeoutMs} ms`, true));
      }, this.o.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      s.cork();
      s.write(head);
      for (const b of body) s.write(b);
      s.uncork();
      this.wakeSlots();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Producer

interface TopicMeta {
  /** Leader node id per partition (-1: none now). */
  leaders: number[];
}

/** Java-compatible murmur2 (kafkajs's and the Java client's default partitioner for keyed records). */
export function murmur2(data: Buffer): number {
  const length = data.length;
  const seed = 0x9747b28c;
  const m = 0x5bd1e995;
  const r = 24;
  let h = seed ^ length;
  const length4 = length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = (data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ((data[i4 + 2] & 0xff) << 16) + ((data[i4 + 3] & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const tail = length % 4;
  const t = length & ~3;
  if (tail === 3) h ^= (data[t + 2] & 0xff) << 16;
  if (tail >= 2) h ^= (data[t + 1] & 0xff) << 8;
  if (tail >= 1) {
    h ^= data[t] & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function parseBroker(s: string): { host: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(s) ?? /^(.+):(\d+)$/.exec(s);
  if (!m) return { host: s, port: 9092 };
  return { host: m[1], port: Number(m[2]) };
}

/** What a Metadata v4 answer says: the brokers, and per topic its error and each partition's leader (-1: none now). */
export interface ClusterMetadata {
  nodes: Map<number, { host: string; port: number }>;
  topics: { error: number; name: string; leaders: number[] }[];
}

/** Metadata v4 of `topics` (none: the brokers only), asked with `ask` (any reachable broker). */
export async function requestMetadata(ask: (apiKey: number, version: number, body: Buffer) => Promise<Buffer>, topics: string[]): Promise<ClusterMetadata> {
  const w = new Writer().i32(topics.length);
  for (const t of topics) w.str(t);
  w.i8(0); // allow_auto_topic_creation: no (topics are created by the admin client)
  const r = new Reader(await ask(API_METADATA, 4, w.done()));
  r.i32(); // throttle
  const brokers = r.array(() => {
    const id = r.i32();
    const host = r.str() ?? '';
    const port = r.i32();
    r.str(); // rack
    return { id, host, port };
  });
  const nodes = new Map<number, { host: string; port: number }>();
  for (const b of brokers) nodes.set(b.id, { host: b.host, port: b.port });
  r.str(); // cluster id
  r.i32(); // controller
  const ts = r.array(() => {
    const error = r.i16();
    const name = r.str() ?? '';
    r.i8(); // internal
    const leaders: number[] = [];
    r.array(() => {
      const perr = r.i16();
      const index = r.i32();
      const leader = r.i32();
      r.array(() => r.i32()); // replicas
      r.array(() => r.i32()); // isr
      leaders[index] = perr === 0 || leader >= 0 ? leader : -1;
    });
    return { error, name, leaders };
  });
  return { nodes, topics: ts };
}

/** One send() call: its records cut into units (one batch of one partition each). */
interface Job {
  topic: string;
  resolve: () => void;
  reject: (e: Error) => void;
  /** Units not delivered yet. */
  left: number;
  settled: boolean;
}

/** One RecordBatch of one partition: the unit that is encoded, sequenced, delivered and retried. */
interface Unit {
  job: Job;
  partition: number;
  records: OutRecord[];
  /** Encoded (kept for retries: the same bytes and sequence number, so the broker de-duplicates). */
  encoded?: EncodedBatch;
  /** The producer id generation the encoding belongs to. */
  generation: number;
  done: boolean;
}

/** The k-th batch of every partition of one send: written as one request per partition leader. */
interface Step {
  topic: string;
  units: Unit[];
  /** Requests of this step written and not answered yet (0: not in flight). */
  flying: number;
}

/** Implements adapter.ts's Producer (send, close). */
export class NativeProducer {
  private readonly conns = new Map<string, BrokerConnection>();
  private readonly nodes = new Map<number, { host: string; port: number }>();
  private readonly topics = new Map<string, TopicMeta>();
  private producerId = -1;
  private producerEpoch = -1;
  /** Bumped by every new producer id: encodings of an older one are re-encoded. */
  private generation = 0;
  /** The next sequence number to hand out per topic/partition (reserved at encoding, in send order). */
  private readonly sequences = new Map<string, number>();
  /** Sends being prepared (metadata, partitioning): one at a time, so steps are queued in call order. */
  private prep: Promise<unknown> = Promise.resolve();
  /** Steps not yet delivered, in send order. */
  private steps: Step[] = [];
  /** Steps written and not answered. */
  private flying = 0;
  /**
   * A step failed: nothing more is written until every step in flight is answered; then
   * recover() backs off, refreshes the metadata, gets a new producer id if needed and writes the
   * undelivered steps again in their order.
   */
  private recovering = false;
  /**
   * The sequence numbers may be out of step with the broker (a batch was refused for good, the
   * broker lost the producer's state, or a send gave up): the next write first gets a new
   * producer id, which starts every sequence afresh.
   */
  private needReset = false;
  /** Partitions with a failed unit in the current failure (a later OUT_OF_ORDER there is its echo). */
  private readonly failedParts = new Set<string>();
  /** Failed rounds since the last delivered step, and the latest transient error. */
  private failures = 0;
  private lastError: Error | undefined;
  private closed = false;
  private roundRobin = 0;
  private readonly acks: number;
  private readonly maxBatchBytes: number;
  private readonly attempts: number;
  /**
   * Sends the caller may keep in flight with their order kept (adapter.ts Producer.inFlightLimit):
   * steps written before the earlier ones are answered, up to the connection's in-flight bound
   * (Kafka's idempotent producer keeps at most 5 batches per partition in order by sequence
   * number). Without idempotence one step at a time: a retry could otherwise overtake.
   */
  readonly inFlightLimit: number;

  constructor(private readonly o: NativeProducerOptions) {
    this.acks = o.acks ?? -1;
    this.maxBatchBytes = o.maxBatchBytes ?? 1_000_000;
    this.attempts = o.attempts ?? 6;
    this.inFlightLimit = o.idempotent === false ? 1 : Math.max(1, Math.min(5, o.maxInFlight ?? 5));
  }

  /** Connects to a bootstrap broker and learns the cluster (and a producer id when idempotent). */
  async connect(): Promise<void> {
    await this.refreshMetadata([]);
    if (this.o.idempotent !== false) await this.initProducerId();
  }

  private conn(host: string, port: number): BrokerConnection {
    if (this.closed) throw new KafkaProduceError('producer closed', false);
    return pooledConnection(this.conns, host, port, {
      clientId: this.o.clientId,
      ssl: this.o.ssl,
      connectionTimeoutMs: this.o.connectionTimeoutMs,
      requestTimeoutMs: this.o.requestTimeoutMs,
      maxInFlight: this.o.maxInFlight ?? 5,
    });
  }

  /** A request to any reachable broker (known nodes first, then the bootstrap list). */
  private async anyBroker(apiKey: number, version: number, body: Buffer): Promise<Buffer> {
    const candidates = [...this.nodes.values(), ...this.o.brokers.map(parseBroker)];
    let last: unknown;
    for (const b of candidates) {
      try {
        return await this.conn(b.host, b.port).request(apiKey, version, [body]);
      } catch (e) {
        last = e;
      }
    }
    throw new KafkaProduceError(`cannot reach Kafka at ${this.o.brokers.join(',')}`, true, undefined, last);
  }

  private async refreshMetadata(topics: string[]): Promise<void> {
    const md = await requestMetadata((k, v, b) => this.anyBroker(k, v, b), topics);
    this.nodes.clear();
    for (const [id, b] of md.nodes) this.nodes.set(id, b);
    for (const t of md.topics) {
      if (t.error !== 0) {
        this.topics.delete(t.name);
        if (!RETRIABLE.has(t.error)) throw new KafkaProduceError(`metadata for topic ${t.name}: ${errorName(t.error)}`, false, t.error);
        continue;
      }
      this.topics.set(t.name, { leaders: t.leaders });
    }
  }

  private async initProducerId(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const body = new Writer().str(null).i32(60_000).done();
      const r = new Reader(await this.anyBroker(API_INIT_PRODUCER_ID, 1, body));
      r.i32(); // throttle
      const err = r.i16();
      const id = r.i64();
      const epoch = r.i16();
      if (err === 0) {
        this.producerId = id;
        this.producerEpoch = epoch;
        this.generation++;
        this.sequences.clear();
        return;
      }
      if (!RETRIABLE.has(err) || attempt >= this.attempts) throw new KafkaProduceError(`InitProducerId: ${errorName(err)}`, RETRIABLE.has(err), err);
      await sleep(100 * attempt);
    }
  }

  /**
   * Resolves when every record is acknowledged. Sends are delivered in call order per partition;
   * a send may be written before the earlier ones are answered (up to inFlightLimit steps).
   */
  send(topic: string, records: OutRecord[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const job: Job = { topic, resolve, reject, left: 0, settled: false };
      this.prep = this.prep.then(async () => {
        try {
          await this.prepare(job, records);
        } catch (e) {
          this.settle(job, e as Error);
        }
      });
    });
  }

  private async topicMeta(topic: string): Promise<TopicMeta> {
    let m = this.topics.get(topic);
    for (let attempt = 1; !m; attempt++) {
      await this.refreshMetadata([topic]);
      m = this.topics.get(topic);
      if (!m) {
        if (attempt >= this.attempts) throw new KafkaProduceError(`topic ${topic} has no metadata (UNKNOWN_TOPIC_OR_PARTITION)`, true, 3);
        await sleep(100 * 2 ** (attempt - 1));
      }
    }
    return m;
  }

  /** Partitions a send's records, cuts them into batches of maxBatchBytes and queues its steps. */
  private async prepare(job: Job, records: OutRecord[]): Promise<void> {
    if (this.closed) throw new KafkaProduceError('producer closed', false);
    if (!records.length) return this.settle(job);
    const topic = job.topic;
    const meta = await this.topicMeta(topic);
    if (this.closed) throw new KafkaProduceError('producer closed', false);
    const n = meta.leaders.length;
    const byPart = new Map<number, OutRecord[]>();
    for (const r of records) {
      let p = r.partition;
      if (p === undefined) {
        const key = toBuf(r.key);
        p = key ? (murmur2(key) & 0x7fffffff) % n : this.roundRobin++ % n;
      }
      if (p < 0 || p >= n) throw new KafkaProduceError(`partition ${p} of topic ${topic} does not exist (${n} partitions)`, false, 3);
      let l = byPart.get(p);
      if (!l) byPart.set(p, (l = []));
      l.push(r);
    }
    const steps: Step[] = [];
    for (const [partition, rs] of byPart) {
      let k = 0;
      let cur: OutRecord[] = [];
      let bytes = 61;
      const cut = (): void => {
        steps[k] ??= { topic, units: [], flying: 0 };
        steps[k++].units.push({ job, partition, records: cur, generation: -1, done: false });
        job.left++;
      };
      for (const r of rs) {
        const sz = 32 + (toBuf(r.value)?.length ?? 0) + (toBuf(r.key)?.length ?? 0) + (r.headers ? 64 * Object.keys(r.headers).length : 0);
        if (cur.length && bytes + sz > this.maxBatchBytes) {
          cut();
          cur = [];
          bytes = 61;
        }
        cur.push(r);
        bytes += sz;
      }
      cut();
    }
    this.steps.push(...steps);
    this.pump();
  }

  /** Resolves or rejects a send once (an error settles it at once; success when nothing is left). */
  private settle(job: Job, e?: Error): void {
    if (job.settled) return;
    if (e) {
      job.settled = true;
      job.reject(e);
    } else if (job.left <= 0) {
      job.settled = true;
      job.resolve();
    }
  }

  /** Writes queued steps in order while fewer than inFlightLimit are in flight. */
  private pump(): void {
    if (this.recovering) return;
    if (this.closed) return this.rejectAll(new KafkaProduceError('producer closed', false));
    if (this.needReset && this.producerId >= 0 && this.steps.some((s) => !s.flying)) {
      this.startRecovery();
      return;
    }
    for (const st of this.steps) {
      if (this.flying >= this.inFlightLimit || this.recovering) break;
      if (st.flying || st.units.every((u) => u.done)) continue;
      this.write(st);
    }
  }

  /** Encodes a step's undelivered units (sequence numbers reserved now, in order) and writes it. */
  private write(st: Step): void {
    const meta = this.topics.get(st.topic);
    const byLeader = new Map<number, Unit[]>();
    const idem = this.producerId >= 0;
    const noLeader: Unit[] = [];
    for (const u of st.units) {
      if (u.done) continue;
      const leader = meta?.leaders[u.partition] ?? -1;
      if (leader < 0 || !this.nodes.has(leader)) {
        noLeader.push(u);
        continue;
      }
      if (!u.encoded || u.generation !== this.generation) {
        const key = `${st.topic}/${u.partition}`;
        const seq = idem ? (this.sequences.get(key) ?? 0) : -1;
        if (idem) this.sequences.set(key, (seq + u.records.length) & 0x7fffffff);
        u.encoded = encodeRecordBatch(u.records, {
          producerId: this.producerId,
          producerEpoch: this.producerEpoch,
          baseSequence: seq,
          compression: this.o.compression,
        });
        u.generation = this.generation;
      }
      let l = byLeader.get(leader);
      if (!l) byLeader.set(leader, (l = []));
      l.push(u);
    }
    for (const u of noLeader) this.failed(u, new KafkaProduceError(`partition ${st.topic}/${u.partition} has no leader (LEADER_NOT_AVAILABLE)`, true, 5));
    if (!byLeader.size) {
      this.maybeRecover();
      return;
    }
    this.flying++;
    st.flying = byLeader.size;
    for (const [leader, us] of byLeader) {
      const node = this.nodes.get(leader)!;
      const body: Buffer[] = [];
      const w = new Writer().str(null).i16(this.acks).i32(this.o.ackTimeoutMs ?? 30_000).i32(1).str(st.topic).i32(us.length);
      body.push(w.done());
      for (const u of us) {
        const ph = Buffer.allocUnsafe(8);
        ph.writeInt32BE(u.partition, 0);
        ph.writeInt32BE(u.encoded!.bytes, 4);
        body.push(ph, ...u.encoded!.segments);
      }
      let req: Promise<Buffer>;
      try {
        req = this.conn(node.host, node.port).request(API_PRODUCE, 3, body);
      } catch (e) {
        req = Promise.reject(e);
      }
      req.then(
        (resp) => this.answered(st, us, resp),
        (e: Error) => {
          for (const u of us) this.failed(u, e);
          this.answered(st, us, undefined);
        },
      );
    }
  }

  /** One request of a step answered (resp undefined: the request failed, its units marked). */
  private answered(st: Step, us: Unit[], resp: Buffer | undefined): void {
    if (resp) {
      const r = new Reader(resp);
      r.array(() => {
        r.str();
        r.array(() => {
          const index = r.i32();
          const err = r.i16();
          r.i64(); // base offset
          r.i64(); // log append time
          const u = us.find((x) => x.partition === index);
          if (!u || u.done) return;
          if (err === 0 || err === DUPLICATE_SEQUENCE_NUMBER) this.delivered(u);
          else this.failed(u, new KafkaProduceError(`${st.topic}/${index}: ${errorName(err)}`, RETRIABLE.has(err) || PRODUCER_STATE.has(err), err));
        });
      });
    }
    if (--st.flying > 0) return;
    this.flying--;
    const at = this.steps.indexOf(st); // -1 once rejectAll forgot it
    if (at >= 0 && st.units.every((u) => u.done)) {
      this.steps.splice(at, 1);
      if (!this.recovering) this.failures = 0;
    }
    if (this.recovering) this.maybeRecover();
    else this.pump();
  }

  private delivered(u: Unit): void {
    u.done = true;
    u.job.left--;
    this.settle(u.job);
  }

  /**
   * A unit not delivered. Transient: written again by recovery (same bytes and sequence number
   * unless the producer id changes). Refused for good: its send rejects, the send's other units
   * are given up, and the next producer id closes the sequence gap this leaves.
   */
  private failed(u: Unit, e: Error): void {
    const key = `${u.job.topic}/${u.partition}`;
    const code = e instanceof KafkaProduceError ? e.code : undefined;
    if (this.closed || (e instanceof KafkaProduceError && !e.transient && code === undefined)) {
      // the producer is closing (its connections reject with a non-transient 'producer closed')
      this.giveUp(u.job, e);
    } else if (e instanceof KafkaProduceError && !e.transient) {
      this.giveUp(u.job, e);
      this.needReset = true;
    } else {
      // an OUT_OF_ORDER_SEQUENCE_NUMBER after an earlier failed batch of the partition is only
      // its echo (retrying both with their numbers cures it); first in line, the broker's state
      // for this producer is gone or out of step
      if (code !== undefined && PRODUCER_STATE.has(code) && !this.failedParts.has(key)) this.needReset = true;
      this.lastError = e;
    }
    this.failedParts.add(key);
    if (!this.recovering) {
      this.recovering = true;
      this.failures++;
    }
  }

  /** Rejects a send and drops its undelivered units (a refused send is not retried). */
  private giveUp(job: Job, e: Error): void {
    for (const st of this.steps) for (const u of st.units) if (u.job === job) u.done = true;
    this.settle(job, e);
  }

  private startRecovery(): void {
    this.recovering = true;
    this.maybeRecover();
  }

  /** Once nothing is in flight: back off, refresh, new producer id if needed, write again in order. */
  private maybeRecover(): void {
    if (!this.recovering || this.flying > 0) return;
    // steps whose units all failed for good or were delivered
    this.steps = this.steps.filter((s) => s.flying || !s.units.every((u) => u.done));
    void this.recover();
  }

  private recoveryRunning = false;

  private async recover(): Promise<void> {
    if (this.recoveryRunning) return;
    this.recoveryRunning = true;
    try {
      for (;;) {
        if (this.closed) break;
        if (this.failures >= this.attempts) {
          const e = this.lastError as KafkaProduceError | undefined;
          const topics = [...new Set(this.steps.map((s) => s.topic))].join(',');
          this.rejectAll(new KafkaProduceError(`produce to ${topics} failed after ${this.failures} attempts: ${e?.message ?? 'unknown error'}`, true, e?.code, e));
          this.failures = 0;
          // what was written may be stored under numbers this producer would hand out again
          if (this.producerId >= 0) this.needReset = true;
          break;
        }
        if (this.failures > 0) {
          await sleep(Math.min(2000, 100 * 2 ** (this.failures - 1)));
          if (this.closed) break;
          // a failed refresh (broker down) keeps the old leaders; the next round fails and counts
          const topics = [...new Set(this.steps.map((s) => s.topic))];
          if (topics.length) await this.refreshMetadata(topics).catch(() => {});
        }
        if (this.needReset && this.producerId >= 0 && this.steps.length) {
          try {
            await this.initProducerId();
            this.needReset = false;
          } catch (e) {
            this.lastError = e as Error;
            this.failures++;
            continue;
          }
        }
        break;
      }
    } finally {
      this.recoveryRunning = false;
      this.failedParts.clear();
      this.recovering = false;
    }
    this.pump();
  }

  /** Rejects every send not yet settled and forgets their steps. */
  private rejectAll(e: Error): void {
    const steps = this.steps;
    this.steps = [];
    for (const st of steps) for (const u of st.units) this.settle(u.job, e);
  }

  /** Stops: requests in flight fail (not transient), a send waiting to retry gives up. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.conns.values()) c.close();
    await this.prep.catch(() => {});
    this.rejectAll(new KafkaProduceError('producer closed', false));
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
