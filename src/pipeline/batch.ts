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
/** Words before the entries of a shared index slot (PacketIndexBuilder.copyToSlot, readSlot). */
export const SLOT_HEADER_WORDS = 2;
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

  /**
   * Copies the index so far into a shared slot (`words`: a count word, an inline-length word, then
   * room for `(words.length - 2) / INDEX_WORDS` entries; `inlineRoom`: room for the inline bytes)
   * and starts over, keeping this builder's buffers: nothing is allocated or transferred. Returns
   * false, changing nothing, when the index does not fit there (use take()).
   */
  copyToSlot(words: Uint32Array, inlineRoom: Uint8Array): boolean {
    const n = this.count * INDEX_WORDS;
    if (n + SLOT_HEADER_WORDS > words.length || this.inlineLen > inlineRoom.length) return false;
    words[0] = this.count;
    words[1] = this.inlineLen;
    words.set(this.u32.subarray(0, n), SLOT_HEADER_WORDS);
    if (this.inline && this.inlineLen > 0) inlineRoom.set(this.inline.subarray(0, this.inlineLen));
    this.inlineLen = 0;
    this.count = 0;
    this.refs = 0;
    return true;
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
 * One engine's index slots (`replay --workers N`, src/pipeline/fanout.ts): for each shared chunk, room for that engine's index into it (a count
 * word, an inline-length word, the entries: PacketIndexBuilder.copyToSlot) and for its inline
 * bytes, in one SharedArrayBuffer the thread got once. The dispatcher copies each index there
 * and sends the chunk's number: no buffer is made, transferred or freed per message (transferring
 * an index cost V8 a fresh serializer zone per message, page faults on both threads, and frees of
 * one thread's allocations by another, bench/RESULTS.md round 7). A slot is written again only when
 * its chunk is, after every engine has answered. An index that does not fit goes the old way.
 */
export class IndexSlots {
  readonly sab: SharedArrayBuffer;
  /** Per chunk: the slot's words, and the room for its inline bytes. */
  readonly words: number;
  readonly inline: number;
  readonly slotWords: Uint32Array[];
  readonly slotInline: Uint8Array[];

  constructor(chunks: number, words: number, inline: number, sab?: SharedArrayBuffer) {
    this.words = words;
    this.inline = inline;
    const slotBytes = words * 4 + inline;
    this.sab = sab ?? new SharedArrayBuffer(chunks * slotBytes);
    this.slotWords = Array.from({ length: chunks }, (_, c) => new Uint32Array(this.sab, c * slotBytes, words));
    this.slotInline = Array.from({ length: chunks }, (_, c) => new Uint8Array(this.sab, c * slotBytes + words * 4, inline));
  }

  /**
   * Slot geometry for chunks of `chunkBytes` split over `engines`: room for the entries of records
   * averaging 64 bytes, all of one engine's share (at least 1,024, at most 16,384 entries), and
   * 16 KiB of inline bytes (a record that straddles two reads; a larger one, or a secrets block,
   * goes the old way); tests ask for fewer `entries` (and 16 inline bytes per entry).
   */
  static geometry(chunkBytes: number, engines: number, entries = Math.min(16384, Math.max(1024, Math.ceil(chunkBytes / 64 / engines)))): { words: number; inline: number } {
    return { words: SLOT_HEADER_WORDS + entries * INDEX_WORDS, inline: Math.min(16384, entries * 16) };
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

/**
 * Replays the index in a shared slot (PacketIndexBuilder.copyToSlot) into a capture sink, as
 * readIndex does; an index longer than its slot is reported as 'batch_truncated'.
 */
export function readSlot(words: Uint32Array, inlineRoom: Buffer, chunk: Buffer | undefined, sink: CaptureSink): void {
  const n = words[0] * INDEX_WORDS;
  const inlineLen = words[1];
  if (n + SLOT_HEADER_WORDS > words.length || inlineLen > inlineRoom.length) {
    sink.anomaly('batch_truncated');
    return;
  }
  readIndex(words.subarray(SLOT_HEADER_WORDS, SLOT_HEADER_WORDS + n), chunk, inlineRoom.subarray(0, inlineLen), sink);
}
