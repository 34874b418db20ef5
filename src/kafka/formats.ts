/**
 * Packet-topic record formats (CONTRACT.md, "Kafka topics"):
 *
 *  - content-type `application/vnd.tcpdump.pcap`: the value is a classic pcap stream (24-byte global
 *    header + records). We write the nanosecond magic 0xa1b23c4d little-endian, snaplen 262144 and
 *    the capture's link type; one stream holds packets of one link type only.
 *  - no content-type or `application/octet-stream`: one link-layer frame (Apache Metron): key = the
 *    capture time in microseconds as an 8-byte big-endian integer; optional headers `linktype`
 *    (default 1), `ts-ns` (capture time in nanoseconds since the epoch, more precise than the key),
 *    `origlen`. Numeric header values are decimal ASCII (what we write); an 8-byte (ts-ns) or
 *    2/4-byte (linktype, origlen) big-endian binary value is accepted too.
 *  - optional header `sensor` on either form names the mirror source.
 */
import { CaptureReader, type CaptureReaderOptions } from '../capture/index.js';
import type { CaptureSink, RawPacket, Timestamp } from '../types.js';
import type { Headers, InRecord, OutRecord } from './adapter.js';
import { BufferPool } from './bufferPool.js';

export const PCAP_CONTENT_TYPE = 'application/vnd.tcpdump.pcap';
export const FRAME_CONTENT_TYPE = 'application/octet-stream';
const PCAP_NS_MAGIC = 0xa1b23c4d;
const SNAPLEN = 262144;

/**
 * Accumulates packets into one classic pcap stream (nanosecond resolution, little-endian). The
 * stream is written straight into one buffer (grown by doubling, then kept at the size the last
 * stream needed), so a packet costs one copy and no allocation; take() hands that buffer over.
 * With a BufferPool the buffers come from there (see BufferPool for why).
 */
export class PcapStreamBuilder {
  constructor(private readonly pool?: BufferPool) {}
  private buf: Buffer | undefined;
  private size = 0;
  /** Capacity the next stream starts with (what the previous one grew to). */
  private nextCap = 64 * 1024;
  count = 0;
  linktype = -1;

  get bytes(): number {
    return this.size;
  }

  /** Bytes allocated now (what the stream holds in memory, its unused tail included). */
  get capacity(): number {
    return this.buf?.length ?? 0;
  }

  /** Bytes add(p) would allocate (0 when the packet fits what is there). */
  growthFor(p: RawPacket): number {
    const n = (this.count === 0 ? 24 : 0) + 16 + p.data.length;
    const b = this.buf;
    if (b === undefined) return Math.max(this.nextCap, n);
    return b.length - this.size < n ? Math.max(b.length * 2, this.size + n) - b.length : 0;
  }

  private room(n: number): Buffer {
    let b = this.buf;
    if (b === undefined) {
      const want = Math.max(this.nextCap, n);
      b = this.buf = this.pool?.get(want) ?? Buffer.allocUnsafe(want);
    } else if (b.length - this.size < n) {
      const want = Math.max(b.length * 2, this.size + n);
      const g = this.pool?.get(want) ?? Buffer.allocUnsafe(want);
      b.copy(g, 0, 0, this.size);
      this.pool?.put(b);
      b = this.buf = g;
    }
    return b;
  }

  add(p: RawPacket): void {
    const n = p.data.length;
    const b = this.room((this.count === 0 ? 24 : 0) + 16 + n);
    let o = this.size;
    if (this.count === 0) {
      this.linktype = p.linktype;
      b.writeUInt32LE(PCAP_NS_MAGIC, 0);
      b.writeUInt16LE(2, 4);
      b.writeUInt16LE(4, 6);
      b.writeUInt32LE(0, 8);
      b.writeUInt32LE(0, 12);
      b.writeUInt32LE(SNAPLEN, 16);
      b.writeUInt32LE(p.linktype >>> 0, 20);
      o = 24;
    }
    b.writeUInt32LE(p.ts.sec >>> 0, o);
    b.writeUInt32LE(p.ts.nsec >>> 0, o + 4);
    b.writeUInt32LE(n, o + 8);
    b.writeUInt32LE(p.origLen >>> 0, o + 12);
    p.data.copy(b, o + 16); // a copy: the source view may be reused
    this.size = o + 16 + n;
    this.count++;
  }

  /** The whole buffer the stream is written into (what take() returns a view of). */
  get buffer(): Buffer | undefined {
    return this.buf;
  }

  take(): Buffer {
    const b = this.buf === undefined ? Buffer.alloc(0) : this.buf.subarray(0, this.size);
    if (this.buf !== undefined) this.nextCap = this.buf.length;
    this.buf = undefined;
    this.size = 0;
    this.count = 0;
    this.linktype = -1;
    return b;
  }
}

/** Moved to bufferPool.ts (fetch.ts uses it); still exported here for its importers. */
export { BufferPool };

export function tsToNs(ts: Timestamp): bigint {
  return BigInt(ts.sec) * 1_000_000_000n + BigInt(ts.nsec);
}

/** One frame as a Metron-format record. */
export function frameRecord(p: RawPacket, sensor?: string): OutRecord {
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(p.ts.sec) * 1_000_000n + BigInt(Math.floor(p.ts.nsec / 1000)));
  const headers: Headers = {
    'content-type': FRAME_CONTENT_TYPE,
    linktype: String(p.linktype),
    'ts-ns': tsToNs(p.ts).toString(),
    origlen: String(p.origLen),
  };
  if (sensor) headers.sensor = sensor;
  return { key, value: Buffer.from(p.data), headers };
}

function headerNumber(v: Buffer | undefined, binaryLens: number[]): bigint | undefined | 'bad' {
  if (!v || v.length === 0) return undefined;
  let digits = v.length <= 20;
  for (let i = 0; i < v.length && digits; i++) digits = v[i] >= 0x30 && v[i] <= 0x39;
  if (digits) return BigInt(v.toString('latin1'));
  if (binaryLens.includes(v.length)) {
    let n = 0n;
    for (const b of v) n = (n << 8n) | BigInt(b);
    return n;
  }
  return 'bad';
}

export interface DecodeCounters {
  records: number;
  badRecords: Record<string, number>;
  packets: number;
}

/**
 * Turns packet-topic records into capture-sink calls. Bad records are counted by reason
 * (`kafka_record_*`) and skipped; nothing throws.
 */
export class RecordDecoder {
  readonly counters: DecodeCounters = { records: 0, badRecords: {}, packets: 0 };
  private sensor: string | undefined;
  private readonly sensorSink: CaptureSink;

  constructor(
    private readonly sink: CaptureSink,
    private readonly readerOpts: CaptureReaderOptions = {},
    private readonly maxRecordBytes = 64 << 20,
  ) {
    const self = this;
    this.sensorSink = {
      packet(p: RawPacket) {
        self.counters.packets++;
        if (self.sensor !== undefined) p.sensor = self.sensor;
        sink.packet(p);
      },
      secrets: (t, d) => sink.secrets(t, d),
      anomaly: (c, d) => sink.anomaly(c, d),
    };
  }

  private bad(reason: string): false {
    const k = `kafka_record_${reason}`;
    this.counters.badRecords[k] = (this.counters.badRecords[k] ?? 0) + 1;
    this.sink.anomaly(k);
    return false;
  }

  /** Returns false when the record was unusable (counted). */
  decode(r: InRecord): boolean {
    this.counters.records++;
    const value = r.value;
    if (!value || value.length === 0) return this.bad('empty');
    if (value.length > this.maxRecordBytes) return this.bad('oversized');
    const sensorH = r.headers.sensor;
    this.sensor = sensorH && sensorH.length ? sensorH.toString('utf8').slice(0, 256) : undefined;
    const ct = r.headers['content-type']?.toString('latin1').trim().toLowerCase();
    if (ct === PCAP_CONTENT_TYPE) return this.decodeStream(value);
    if (ct === undefined || ct === '' || ct === FRAME_CONTENT_TYPE) return this.decodeFrame(r, value);
    return this.bad('unknown_content_type');
  }

  private decodeStream(value: Buffer): boolean {
    const reader = new CaptureReader(this.sensorSink, this.readerOpts);
    try {
      reader.push(value);
      reader.end();
    } catch {
      return this.bad('not_pcap');
    }
    return true;
  }

  private decodeFrame(r: InRecord, value: Buffer): boolean {
    const lt = headerNumber(r.headers.linktype, [2, 4]);
    const tsNs = headerNumber(r.headers['ts-ns'], [8]);
    const ol = headerNumber(r.headers.origlen, [4]);
    if (lt === 'bad' || tsNs === 'bad' || ol === 'bad') return this.bad('bad_header');
    const linktype = lt === undefined ? 1 : Number(lt);
    if (linktype < 0 || linktype > 0xffff) return this.bad('bad_header');
    let ts: Timestamp;
    if (tsNs !== undefined) {
      ts = { sec: Number(tsNs / 1_000_000_000n), nsec: Number(tsNs % 1_000_000_000n) };
    } else if (r.key && r.key.length === 8) {
      const us = r.key.readBigUInt64BE(0);
      ts = { sec: Number(us / 1_000_000n), nsec: Number(us % 1_000_000n) * 1000 };
    } else {
      return this.bad('no_timestamp');
    }
    if (ts.sec > 0xffffffff) return this.bad('bad_timestamp');
    const origLen = ol === undefined ? value.length : Number(ol);
    if (origLen < value.length || origLen > 0xffffffff) return this.bad('bad_header');
    this.sensorSink.packet({ linktype, ts, data: value, origLen, ifIndex: 0 });
    return true;
  }
}
