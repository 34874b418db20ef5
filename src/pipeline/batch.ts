import type { CaptureSink, RawPacket } from '../types.js';

/**
 * A compact binary batch of captured packets, used to hand packets to worker threads as one
 * transferred ArrayBuffer (no per-packet structured clone). Layout per entry, little-endian:
 *   u32 caplen | u32 origLen | u32 sec | u32 nsec | u16 linktype | u16 ifIndex | caplen bytes
 * A linktype of 0xffff marks a pcapng Decryption Secrets Block; origLen then holds its type.
 */
const HDR = 20;
const SECRETS = 0xffff;

/** What to put in a task's transfer list for a batch from take() or takeView(). */
export function batchTransfer(data: ArrayBuffer | Uint8Array): ArrayBuffer {
  return (data instanceof Uint8Array ? data.buffer : data) as ArrayBuffer;
}

export class BatchBuilder {
  private buf: Buffer;
  private off = 0;
  count = 0;

  constructor(
    private readonly initial = 1 << 20,
    /** Where takeView() gets the next buffer (`initial` bytes, an ArrayBuffer of its own): a pool of returned batches. */
    private readonly nextBuffer: () => Buffer = () => Buffer.allocUnsafeSlow(initial),
  ) {
    // allocUnsafeSlow: an ArrayBuffer of its own (never a slice of the shared pool), so that
    // takeView() can transfer it
    this.buf = nextBuffer();
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  /** The headers are written through a DataView: Buffer.writeUInt32LE checks every argument. */
  private dv: DataView;

  get bytes(): number {
    return this.off;
  }

  addPacket(p: RawPacket): void {
    this.put(p.data, p.origLen, p.ts.sec, p.ts.nsec, p.linktype, p.ifIndex);
  }

  addSecrets(secretsType: number, data: Buffer): void {
    this.put(data, secretsType, 0, 0, SECRETS, 0);
  }

  /**
   * Hands out the batch without copying it: a view of the builder's own ArrayBuffer (transfer
   * `view.buffer`), and the builder starts over in a new, uninitialised buffer.
   */
  takeView(): Uint8Array {
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.off);
    this.buf = this.nextBuffer();
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.off = 0;
    this.count = 0;
    return view;
  }

  /** Hands out the batch (a fresh ArrayBuffer of exactly its size) and starts a new one. */
  take(): ArrayBuffer {
    const ab = new ArrayBuffer(this.off);
    new Uint8Array(ab).set(this.buf.subarray(0, this.off));
    this.off = 0;
    this.count = 0;
    return ab;
  }

  private put(data: Buffer, origLen: number, sec: number, nsec: number, linktype: number, ifIndex: number): void {
    const need = this.off + HDR + data.length;
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(need, this.buf.length * 2));
      this.buf.copy(next, 0, 0, this.off);
      this.buf = next;
      this.dv = new DataView(next.buffer, next.byteOffset, next.length);
    }
    const dv = this.dv;
    let o = this.off;
    dv.setUint32(o, data.length, true);
    dv.setUint32(o + 4, origLen >>> 0, true);
    dv.setUint32(o + 8, sec >>> 0, true);
    dv.setUint32(o + 12, nsec >>> 0, true);
    dv.setUint16(o + 16, linktype & 0xffff, true);
    dv.setUint16(o + 18, ifIndex & 0xffff, true);
    o += HDR;
    // TypedArray.set: one memcpy (Buffer.copy goes through argument checks and a new view per call)
    this.buf.set(data, o);
    this.off = o + data.length;
    this.count++;
  }
}

/** Replays a batch into a capture sink; a malformed batch is reported, never thrown. */
export function readBatch(ab: ArrayBuffer | Uint8Array, sink: CaptureSink): void {
  const b = ab instanceof Uint8Array ? Buffer.from(ab.buffer, ab.byteOffset, ab.byteLength) : Buffer.from(ab);
  let o = 0;
  while (o + HDR <= b.length) {
    const caplen = b.readUInt32LE(o);
    const origLen = b.readUInt32LE(o + 4);
    const sec = b.readUInt32LE(o + 8);
    const nsec = b.readUInt32LE(o + 12);
    const linktype = b.readUInt16LE(o + 16);
    const ifIndex = b.readUInt16LE(o + 18);
    o += HDR;
    if (o + caplen > b.length) {
      sink.anomaly('batch_truncated');
      return;
    }
    const data = b.subarray(o, o + caplen);
    o += caplen;
    if (linktype === SECRETS) sink.secrets(origLen, data);
    else sink.packet({ linktype, ts: { sec, nsec }, data, origLen, ifIndex });
  }
  if (o !== b.length) sink.anomaly('batch_truncated');
}
