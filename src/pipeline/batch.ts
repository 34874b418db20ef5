import type { CaptureSink, RawPacket } from '../types.js';

/**
 * A packet index: the packets of one shard in one shared capture chunk, as references instead of
 * copies (`replay --workers N`, src/pipeline/fanout.ts). Entries of INDEX_WORDS little-endian u32:
 *   flags | offset | caplen | origLen | sec | nsec | linktype + (ifIndex << 16)
 * An entry refers to its bytes in the chunk (a SharedArrayBuffer every engine thread holds), or,
 * with INLINE, to bytes copied into the index's own inline buffer: a record that straddled two
 * reads (the capture reader joined it in a buffer of its own) and pcapng secrets blocks (SECRETS;
 * origLen holds their type). Nothing is copied per packet otherwise.
 */
export const INDEX_WORDS = 7;
const INLINE = 1;
const INDEX_SECRETS = 2;

export class PacketIndexBuilder {
  private u32: Uint32Array;
  private inline: Buffer | undefined;
  private inlineLen = 0;
  /** Entries so far. */
  count = 0;
  /** Entries that refer to the chunk (not inline). */
  refs = 0;

  constructor(
    /** Where the next index buffer comes from (a returned one, or a new one): at least 1 entry. */
    private readonly nextBuffer: () => ArrayBuffer = () => new ArrayBuffer(4096 * INDEX_WORDS * 4),
  ) {
    this.u32 = new Uint32Array(nextBuffer());
  }

  /** A packet whose bytes lie in the chunk at `offset`. */
  addRef(p: RawPacket, offset: number): void {
    this.refs++;
    this.entry(0, offset, p.data.length, p.origLen, p.ts.sec, p.ts.nsec, p.linktype, p.ifIndex);
  }

  /** The same from a packet's fields (CaptureSink.packetAt: no RawPacket made). */
  addRefAt(offset: number, caplen: number, origLen: number, sec: number, nsec: number, linktype: number): void {
    this.refs++;
    this.entry(0, offset, caplen, origLen, sec, nsec, linktype, 0);
  }

  /** A packet whose bytes are not in the chunk: copied into the inline buffer. */
  addInline(p: RawPacket): void {
    this.entry(INLINE, this.copyIn(p.data), p.data.length, p.origLen, p.ts.sec, p.ts.nsec, p.linktype, p.ifIndex);
  }

  addSecrets(secretsType: number, data: Buffer): void {
    this.entry(INLINE | INDEX_SECRETS, this.copyIn(data), data.length, secretsType, 0, 0, 0, 0);
  }

  /**
   * The index so far (a view of its own ArrayBuffer: transfer `index.buffer`) and the inline bytes
   * (an ArrayBuffer of their own, or undefined); the builder starts over.
   */
  take(): { index: Uint32Array; inline: Uint8Array | undefined } {
    const index = this.u32.subarray(0, this.count * INDEX_WORDS);
    const inline = this.inline?.subarray(0, this.inlineLen);
    this.u32 = new Uint32Array(this.nextBuffer());
    this.inline = undefined;
    this.inlineLen = 0;
    this.count = 0;
    this.refs = 0;
    return { index, inline };
  }

  private copyIn(data: Buffer): number {
    const at = this.inlineLen;
    const need = at + data.length;
    if (!this.inline || need > this.inline.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(need, 2 * (this.inline?.length ?? 0), 4096));
      if (this.inline) next.set(this.inline.subarray(0, at));
      this.inline = next;
    }
    this.inline.set(data, at);
    this.inlineLen = need;
    return at;
  }

  private entry(flags: number, off: number, len: number, origLen: number, sec: number, nsec: number, linktype: number, ifIndex: number): void {
    let o = this.count * INDEX_WORDS;
    if (o + INDEX_WORDS > this.u32.length) {
      const next = new Uint32Array(Math.max(this.u32.length * 2, INDEX_WORDS * 64));
      next.set(this.u32.subarray(0, o));
      this.u32 = next;
    }
    const u = this.u32;
    u[o++] = flags;
    u[o++] = off;
    u[o++] = len;
    u[o++] = origLen >>> 0;
    u[o++] = sec >>> 0;
    u[o++] = nsec >>> 0;
    u[o] = (linktype & 0xffff) | ((ifIndex & 0xffff) << 16);
    this.count++;
  }
}

/**
 * Replays a packet index into a capture sink, in its order: references into `chunk` (undefined
 * when the index has none) and inline entries from `inline`. An entry outside its buffer is
 * reported as 'batch_truncated', never thrown.
 */
export function readIndex(index: Uint32Array, chunk: Buffer | undefined, inline: Buffer | undefined, sink: CaptureSink): void {
  for (let o = 0; o + INDEX_WORDS <= index.length; o += INDEX_WORDS) {
    const flags = index[o];
    const off = index[o + 1];
    const len = index[o + 2];
    const src = flags & INLINE ? inline : chunk;
    if (!src || off + len > src.length) {
      sink.anomaly('batch_truncated');
      continue;
    }
    const data = src.subarray(off, off + len);
    if (flags & INDEX_SECRETS) {
      sink.secrets(index[o + 3], data);
      continue;
    }
    const lt = index[o + 6];
    sink.packet({ linktype: lt & 0xffff, ts: { sec: index[o + 4], nsec: index[o + 5] }, data, origLen: index[o + 3], ifIndex: lt >>> 16 });
  }
}
