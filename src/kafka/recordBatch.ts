/**
 * Packets-topic records as one transferable buffer, for `run --workers N` (src/kafka/partitionShards.ts):
 * the main thread copies each consumed record (value, key, headers) once into a batch, with what the
 * worker's replay watermark needs (partition, offset, bytes of the partition read before it, the
 * end of a re-read region and the previous owner's open mid-connection flows), and transfers the
 * batch to the partition's worker. The main thread never frames a packet: the worker decodes the
 * records (RecordDecoder) itself. Secrets (key-log records broadcast to every worker) travel in the
 * same stream, so a worker sees records and secrets in the order the main thread got them.
 *
 * Entry layout (little-endian):
 *   u8 kind = 1 (record) | u8 flags (1 re-read, 2 key null, 4 value null) | u32 partition |
 *     f64 offset | f64 pos | f64 until | u16 headers | u32 key length | u32 value length |
 *     u32 mids length | key | value | mids (UTF-8, comma-separated) | headers: (u16 name length,
 *     name (latin1), u32 value length, value)*
 *   u8 kind = 2 (secrets) | u32 type | u32 length | data
 */
import type { CaptureReaderOptions } from '../capture/index.js';
import type { CaptureSink, RawPacket, Timestamp } from '../types.js';
import type { InRecord } from './adapter.js';
import { RecordDecoder } from './formats.js';
import type { ShardCore } from './shards.js';

const KIND_RECORD = 1;
const KIND_SECRETS = 2;
const F_REREAD = 1;
const F_KEY_NULL = 2;
const F_VALUE_NULL = 4;
const RECORD_HEAD = 1 + 1 + 4 + 8 + 8 + 8 + 2 + 4 + 4 + 4;

/** Where a record sits in its partition, for the worker's watermark (FlowWatermark.at). */
export interface RecordOrigin {
  offset: number;
  /** Bytes of the partition's records before this one. */
  pos: number;
  /** End of the partition's re-read region (0 when none). */
  until: number;
  /** The previous owner's open flows without a handshake (commit metadata), if any. */
  mids?: Set<string>;
  /** The record was fed before (its bad-record counts are not counted again). */
  reread: boolean;
}

/** Accumulates records and secrets into one buffer; take() hands it over (transfer its ArrayBuffer). */
export class RecordBatchBuilder {
  private buf: Buffer;
  private dv: DataView;
  private off = 0;
  /** Records (not secrets) in the batch. */
  records = 0;
  /** Entries of any kind in the batch. */
  count = 0;

  constructor(private readonly initial = 1 << 20) {
    this.buf = Buffer.allocUnsafeSlow(initial);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  get bytes(): number {
    return this.off;
  }

  private room(n: number): void {
    if (this.buf.length - this.off >= n) return;
    // allocUnsafeSlow: an ArrayBuffer of its own (never a slice of the shared pool), transferable
    const g = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(g, 0, 0, this.off);
    this.buf = g;
    this.dv = new DataView(g.buffer, g.byteOffset, g.length);
  }

  addRecord(r: InRecord, o: RecordOrigin): void {
    const key = r.key;
    const value = r.value;
    const names = Object.keys(r.headers);
    const mids = o.mids?.size ? [...o.mids].join(',') : '';
    const midsLen = mids ? Buffer.byteLength(mids) : 0;
    let need = RECORD_HEAD + (key?.length ?? 0) + (value?.length ?? 0) + midsLen;
    for (const n of names) need += 2 + n.length + 4 + r.headers[n].length;
    this.room(need);
    const dv = this.dv;
    let p = this.off;
    dv.setUint8(p, KIND_RECORD);
    dv.setUint8(p + 1, (o.reread ? F_REREAD : 0) | (key ? 0 : F_KEY_NULL) | (value ? 0 : F_VALUE_NULL));
    dv.setUint32(p + 2, r.partition, true);
    dv.setFloat64(p + 6, o.offset, true);
    dv.setFloat64(p + 14, o.pos, true);
    dv.setFloat64(p + 22, o.until, true);
    dv.setUint16(p + 30, names.length, true);
    dv.setUint32(p + 32, key?.length ?? 0, true);
    dv.setUint32(p + 36, value?.length ?? 0, true);
    dv.setUint32(p + 40, midsLen, true);
    p += RECORD_HEAD;
    if (key) p += key.copy(this.buf, p);
    if (value) p += value.copy(this.buf, p);
    if (midsLen) p += this.buf.write(mids, p, 'utf8');
    for (const n of names) {
      const v = r.headers[n];
      dv.setUint16(p, n.length, true);
      p += 2 + this.buf.write(n, p + 2, 'latin1');
      dv.setUint32(p, v.length, true);
      p += 4 + v.copy(this.buf, p + 4);
    }
    this.off = p;
    this.records++;
    this.count++;
  }

  addSecrets(type: number, data: Buffer): void {
    this.room(9 + data.length);
    this.dv.setUint8(this.off, KIND_SECRETS);
    this.dv.setUint32(this.off + 1, type >>> 0, true);
    this.dv.setUint32(this.off + 5, data.length, true);
    this.off += 9 + data.copy(this.buf, this.off + 9);
    this.count++;
  }

  /**
   * Hands out the batch without copying it: a view of the builder's own ArrayBuffer (transfer
   * `view.buffer`); the builder starts over in a new buffer.
   */
  take(): Uint8Array {
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.off);
    this.buf = Buffer.allocUnsafeSlow(this.initial);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.off = 0;
    this.records = 0;
    this.count = 0;
    return view;
  }

  /** Drops what was added (a worker that failed: its records are re-read from the commit). */
  clear(): void {
    this.off = 0;
    this.records = 0;
    this.count = 0;
  }
}

export interface RecordBatchSink {
  /** A record (its key, value and header values are views of the batch: no copy). */
  record(r: InRecord, o: RecordOrigin): void;
  secrets(type: number, data: Buffer): void;
}

/** Reads a batch made by RecordBatchBuilder, in order. */
export function readRecordBatch(data: ArrayBuffer | Uint8Array, sink: RecordBatchSink): void {
  const b = data instanceof Uint8Array ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  while (p < b.length) {
    const kind = dv.getUint8(p);
    if (kind === KIND_SECRETS) {
      const type = dv.getUint32(p + 1, true);
      const len = dv.getUint32(p + 5, true);
      sink.secrets(type, b.subarray(p + 9, p + 9 + len));
      p += 9 + len;
      continue;
    }
    if (kind !== KIND_RECORD) throw new Error(`record batch: bad entry kind ${kind} at ${p}`);
    const flags = dv.getUint8(p + 1);
    const partition = dv.getUint32(p + 2, true);
    const offset = dv.getFloat64(p + 6, true);
    const pos = dv.getFloat64(p + 14, true);
    const until = dv.getFloat64(p + 22, true);
    const nh = dv.getUint16(p + 30, true);
    const kl = dv.getUint32(p + 32, true);
    const vl = dv.getUint32(p + 36, true);
    const ml = dv.getUint32(p + 40, true);
    p += RECORD_HEAD;
    const key = flags & F_KEY_NULL ? null : b.subarray(p, p + kl);
    p += kl;
    const value = flags & F_VALUE_NULL ? null : b.subarray(p, p + vl);
    p += vl;
    const mids = ml ? new Set(b.toString('utf8', p, p + ml).split(',')) : undefined;
    p += ml;
    const headers: Record<string, Buffer> = {};
    for (let i = 0; i < nh; i++) {
      const nl = dv.getUint16(p, true);
      const name = b.toString('latin1', p + 2, p + 2 + nl);
      p += 2 + nl;
      const hl = dv.getUint32(p, true);
      headers[name] = b.subarray(p + 4, p + 4 + hl);
      p += 4 + hl;
    }
    sink.record({ topic: '', partition, offset: String(offset), key, value, headers, timestamp: 0 }, { offset, pos, until, mids, reread: (flags & F_REREAD) !== 0 });
  }
}

/**
 * The worker side: decodes a batch's records into one shard (its own RecordDecoders, the record's
 * origin set on the shard's watermark first, as `run` does on the main thread with one engine),
 * keeps the capture clock of what it decoded (newest capture time, overall and per partition), and
 * counts records and packets.
 */
export class RecordFeeder implements RecordBatchSink {
  private readonly decoder: RecordDecoder;
  /** Records read again (a partition re-read from its commit): their bad records were counted the first time. */
  private readonly rereadDecoder: RecordDecoder;
  /** Newest capture time decoded. */
  clock: Timestamp = { sec: 0, nsec: 0 };
  /** Newest capture time decoded per partition (revoked ones forgotten). */
  readonly clocks = new Map<number, Timestamp>();
  /** Partition of the record being decoded. */
  private partition = -1;
  records = 0;

  constructor(
    private readonly core: ShardCore,
    opts: { captureLimits?: CaptureReaderOptions; maxRecordBytes?: number } = {},
    private failAfterRecords = 0,
    private readonly failHow: 'throw' | 'exit' = 'throw',
  ) {
    const clocked: CaptureSink = {
      packet: (p: RawPacket) => {
        const t = p.ts;
        if (later(t, this.clock)) this.clock = { sec: t.sec, nsec: t.nsec };
        const pc = this.clocks.get(this.partition);
        if (pc === undefined || later(t, pc)) this.clocks.set(this.partition, { sec: t.sec, nsec: t.nsec });
        core.packet(p);
      },
      secrets: (type, data) => core.secrets(type, data),
      anomaly: (code) => core.anomaly(code),
    };
    this.decoder = new RecordDecoder(clocked, opts.captureLimits, opts.maxRecordBytes);
    this.rereadDecoder = new RecordDecoder({ packet: clocked.packet, secrets: clocked.secrets, anomaly: () => {} }, opts.captureLimits, opts.maxRecordBytes);
  }

  record(r: InRecord, o: RecordOrigin): void {
    this.records++;
    if (this.failAfterRecords > 0 && this.records >= this.failAfterRecords) {
      this.failAfterRecords = 0;
      if (this.failHow === 'exit') process.exit(70); // in a worker thread: the thread ends
      throw new Error('injected worker failure (TLSDECRYPT_TEST_WORKER_FAIL)');
    }
    this.core.watermark.at(r.partition, o.offset, o.pos, o.until, o.mids);
    this.partition = r.partition;
    (o.reread ? this.rereadDecoder : this.decoder).decode(r);
  }

  secrets(type: number, data: Buffer): void {
    this.core.secrets(type, data);
  }

  /** Partitions moved away: a partition that comes back is re-read, its clock starts again. */
  revoke(partitions: number[]): void {
    for (const p of partitions) this.clocks.delete(p);
  }

  /** Packets decoded (re-read ones included) and bad records counted so far. */
  get packets(): number {
    return this.decoder.counters.packets + this.rereadDecoder.counters.packets;
  }

  get badRecords(): Record<string, number> {
    return this.decoder.counters.badRecords;
  }
}

function later(a: Timestamp, b: Timestamp): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec);
}
