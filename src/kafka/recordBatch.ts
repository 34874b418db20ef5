/**
 * Packets-topic records as one transferable buffer, for `run --workers N` (src/kafka/partitionShards.ts):
 * the main thread copies each consumed record (value, key, headers) once into a batch, with what the
 * worker's replay watermark needs (partition, offset, bytes of the partition read before it, the
 * end of a re-read region and the previous owner's open mid-connection flows), and transfers the
 * batch to the partition's worker. The main thread never frames a packet: the worker decodes the
 * records (RecordDecoder) itself. Secrets (key-log records broadcast to every worker) travel in the
 * same stream, so a worker sees records and secrets in the order the main thread got them.
 *
 * Batch memory (BatchSlots): a worker's batches are written into shared buffers that are reused once
 * the worker has read them (it names them in its results), so the main thread's one copy per
 * record lands in memory already mapped and warm. A fresh, transferred buffer per batch cost
 * ~5x the copy itself in page faults (1 MiB = 256 freshly mapped pages per batch, freed by another
 * thread); it remains the fallback when every slot is busy or a record is larger than a slot.
 *
 * Entry layout (little-endian):
 *   u8 kind = 1 (record) | u8 flags (1 re-read, 2 key null, 4 value null) | u32 partition |
 *     f64 offset | f64 pos | f64 until | u16 headers | u32 key length | u32 value length |
 *     u32 mids length | u8 pad | key | pad bytes | value | mids (UTF-8, comma-separated) | headers: (u16 name length,
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
const RECORD_HEAD = 1 + 1 + 4 + 8 + 8 + 8 + 2 + 4 + 4 + 4 + 1;

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

/**
 * Shared buffers of `bytes` each (at most `count`, made when first needed) that one worker's
 * batches are written into. acquire() gives the most recently released one (still in the cache,
 * its pages mapped), or -1 when all are in use; release() once the worker has read the batch.
 */
export class BatchSlots {
  readonly bufs: Buffer[] = [];
  private readonly free: number[] = [];
  /** Tests: fill a released slot with 0xee, so a batch read after its release shows. */
  poison = false;
  /** Batches that found every slot in use (a buffer of their own instead). */
  misses = 0;

  constructor(
    readonly count: number,
    readonly bytes: number,
  ) {}

  acquire(): number {
    const id = this.free.pop();
    if (id !== undefined) return id;
    if (this.bufs.length >= this.count) {
      this.misses++;
      return -1;
    }
    this.bufs.push(Buffer.from(new SharedArrayBuffer(this.bytes)));
    return this.bufs.length - 1;
  }

  release(id: number): void {
    if (this.poison) this.bufs[id].fill(0xee);
    this.free.push(id);
  }

  /** Slots not in use (made ones that are free, plus ones not made yet). */
  get available(): number {
    return this.free.length + this.count - this.bufs.length;
  }
}

/** A batch taken from a builder: `slot` >= 0 when `data` is a view of that shared slot (not to be transferred). */
export interface TakenBatch {
  data: Uint8Array;
  slot: number;
}

/**
 * Accumulates records and secrets into one buffer; take() hands it over: a view of a shared slot
 * (BatchSlots), or a buffer of its own (transfer its ArrayBuffer).
 */
export class RecordBatchBuilder {
  private buf!: Buffer;
  private dv!: DataView;
  /** The BatchSlots slot `buf` is, or -1 (a buffer of its own). */
  private slot = -1;
  private off = 0;
  /** Records (not secrets) in the batch. */
  records = 0;
  /** Entries of any kind in the batch. */
  count = 0;

  constructor(
    private readonly initial = 1 << 20,
    private readonly slots?: BatchSlots,
  ) {
    this.fresh();
  }

  get bytes(): number {
    return this.off;
  }

  /** A new buffer for the next batch: a free slot, else one of its own. */
  private fresh(): void {
    this.slot = this.slots ? this.slots.acquire() : -1;
    // allocUnsafeSlow: an ArrayBuffer of its own (never a slice of the shared pool), transferable
    this.buf = this.slot >= 0 ? this.slots!.bufs[this.slot] : Buffer.allocUnsafeSlow(this.initial);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  private room(n: number): void {
    if (this.buf.length - this.off >= n) return;
    const g = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(g, 0, 0, this.off);
    if (this.slot >= 0) this.slots!.release(this.slot);
    this.slot = -1;
    this.buf = g;
    this.dv = new DataView(g.buffer, g.byteOffset, g.length);
  }

  /**
   * Adds a record. With `grow` false, a record that does not fit in what is left of the buffer is
   * not added to a batch that has entries (returns false: hand the batch on first), so a batch is
   * never copied into a larger buffer; a record larger than the whole buffer still is.
   */
  addRecord(r: InRecord, o: RecordOrigin, grow = true): boolean {
    const key = r.key;
    const value = r.value;
    const names = Object.keys(r.headers);
    const mids = o.mids?.size ? [...o.mids].join(',') : '';
    const midsLen = mids ? Buffer.byteLength(mids) : 0;
    let need = RECORD_HEAD + 7 + (key?.length ?? 0) + (value?.length ?? 0) + midsLen;
    for (const n of names) need += 2 + n.length + 4 + r.headers[n].length;
    if (!grow && this.count && this.buf.length - this.off < need) return false;
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
    const head = p;
    p += RECORD_HEAD;
    if (key) p += key.copy(this.buf, p);
    if (value) {
      // The value lands at the same offset modulo 8 as its source: a copy into shared memory
      // (a BatchSlots slot) is V8's relaxed, word-wise memcpy only then, byte by byte otherwise
      // (4x the CPU, measured: bench/RESULTS.md round 8).
      const pad = (value.byteOffset - (this.buf.byteOffset + p)) & 7;
      dv.setUint8(head + 44, pad);
      p += pad;
      p += value.copy(this.buf, p);
    } else {
      dv.setUint8(head + 44, 0);
    }
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
    return true;
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
   * Hands out the batch without copying it: a view of a shared slot (`slot` >= 0: release it once
   * the worker has read it) or of the builder's own ArrayBuffer (transfer `data.buffer`); the
   * builder starts over in a new buffer.
   */
  take(): TakenBatch {
    const taken = { data: new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.off), slot: this.slot };
    this.fresh();
    this.off = 0;
    this.records = 0;
    this.count = 0;
    return taken;
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
    const pad = dv.getUint8(p + 44);
    p += RECORD_HEAD;
    const key = flags & F_KEY_NULL ? null : b.subarray(p, p + kl);
    p += kl + pad;
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
