/**
 * HPACK header block decoder (RFC 7541). One decoder per direction of an HTTP/2 connection: the
 * dynamic table of the client->server direction is driven by the client's encoder, and so on.
 *
 * The decoder never throws: a malformed block returns an error code and the caller poisons the
 * context (RFC 9113 Section 4.3: a decoding error is a connection error of type COMPRESSION_ERROR,
 * after which the dynamic table can no longer be trusted).
 */
import { huffmanDecode } from './huffman.js';

/** RFC 7541 Appendix A: the static table, index 1..61. */
export const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

/** RFC 7541 Section 4.1: each entry costs its name and value octets plus 32. */
const ENTRY_OVERHEAD = 32;

/** Callback for each decoded header field, in order. */
export type HeaderCallback = (name: string, value: string) => void;

export type HpackError =
  | 'hpack_bad_integer'
  | 'hpack_bad_index'
  | 'hpack_bad_huffman'
  | 'hpack_truncated'
  | 'hpack_bad_table_size_update';

/** Pure read position for integer decoding; reused, never allocated per call. */
export interface Cursor { pos: number; }

/**
 * Decodes an N-bit prefix integer (RFC 7541 Section 5.1). Returns -1 on truncation or on values
 * beyond 2^31 (no legitimate header needs more; guards against overlong encodings).
 */
export function readInt(buf: Buffer, end: number, cur: Cursor, prefixBits: number): number {
  if (cur.pos >= end) return -1;
  const max = (1 << prefixBits) - 1;
  let v = buf[cur.pos++] & max;
  if (v < max) return v;
  let m = 0;
  for (;;) {
    if (cur.pos >= end) return -1;
    const b = buf[cur.pos++];
    v += (b & 0x7f) * 2 ** m;
    if (v > 0x7fffffff) return -1;
    if ((b & 0x80) === 0) return v;
    m += 7;
  }
}

export class HpackDecoder {
  /** Dynamic table as a ring buffer, newest entry at `head` (RFC 7541 Section 2.3.2). */
  private names: string[] = [];
  private values: string[] = [];
  private sizes: number[] = [];
  private head = 0; // index of the newest entry
  private count = 0;
  private size = 0;
  /** Current maximum size set by the encoder (Section 6.3). */
  private maxSize: number;
  /**
   * Upper bound for table size updates: the largest SETTINGS_HEADER_TABLE_SIZE the peer advertised
   * (a passive observer cannot know which SETTINGS the encoder already acknowledged, so it accepts
   * anything up to the largest advertised value).
   */
  private limit: number;
  private readonly cur: Cursor = { pos: 0 };

  constructor(initialTableSize = 4096) {
    this.maxSize = initialTableSize;
    this.limit = initialTableSize;
  }

  /** The peer decoding this direction advertised SETTINGS_HEADER_TABLE_SIZE (RFC 9113 6.5.2). */
  setSettingsTableSize(n: number): void {
    if (n > this.limit) this.limit = n;
  }

  get dynamicTableSize(): number {
    return this.size;
  }

  get dynamicTableLength(): number {
    return this.count;
  }

  /** Entry i of the dynamic table (0 = newest), for tests and diagnostics. */
  dynamicEntry(i: number): [string, string] | undefined {
    if (i < 0 || i >= this.count) return undefined;
    const idx = this.slot(i);
    return [this.names[idx], this.values[idx]];
  }

  private slot(i: number): number {
    const cap = this.names.length;
    return (this.head - i + cap * 2) % cap;
  }

  /** Section 4.4: evict oldest entries until the table fits `target`. */
  private evictTo(target: number): void {
    while (this.size > target && this.count > 0) {
      const idx = this.slot(this.count - 1);
      this.size -= this.sizes[idx];
      this.names[idx] = '';
      this.values[idx] = '';
      this.count--;
    }
  }

  /** Section 4.4: adding an entry larger than the table empties the table and adds nothing. */
  private add(name: string, value: string): void {
    const esize = Buffer.byteLength(name) + Buffer.byteLength(value) + ENTRY_OVERHEAD;
    if (esize > this.maxSize) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.maxSize - esize);
    if (this.count === this.names.length) {
      // Grow the ring, keeping order: re-lay entries oldest..newest at 0..count-1.
      const cap = Math.max(16, this.names.length * 2);
      const n: string[] = new Array(cap);
      const v: string[] = new Array(cap);
      const s: number[] = new Array(cap);
      for (let i = 0; i < this.count; i++) {
        const from = this.slot(this.count - 1 - i);
        n[i] = this.names[from];
        v[i] = this.values[from];
        s[i] = this.sizes[from];
      }
      this.names = n;
      this.values = v;
      this.sizes = s;
      this.head = this.count - 1;
    }
    this.head = (this.head + 1) % this.names.length;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.sizes[this.head] = esize;
    this.count++;
    this.size += esize;
  }

  /** Section 2.3.3: index space is static table 1..61 then dynamic table 62.. (newest first). */
  private lookup(index: number): number {
    if (index <= 0) return -1;
    if (index <= STATIC_TABLE.length) return 0;
    const d = index - STATIC_TABLE.length - 1;
    return d < this.count ? 1 : -1;
  }

  private nameAt(index: number): string {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1][0];
    return this.names[this.slot(index - STATIC_TABLE.length - 1)];
  }

  private valueAt(index: number): string {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1][1];
    return this.values[this.slot(index - STATIC_TABLE.length - 1)];
  }

  /** Section 5.2: string literal, optionally Huffman coded. Returns undefined on error. */
  private readString(buf: Buffer, end: number): string | undefined | null {
    const cur = this.cur;
    if (cur.pos >= end) return null;
    const huff = (buf[cur.pos] & 0x80) !== 0;
    const len = readInt(buf, end, cur, 7);
    if (len < 0) return null;
    if (cur.pos + len > end) return null;
    const s0 = cur.pos;
    cur.pos += len;
    if (huff) return huffmanDecode(buf, s0, s0 + len);
    return buf.toString('utf8', s0, s0 + len);
  }

  /**
   * Decodes one complete header block (after CONTINUATION reassembly), calling `onHeader` for each
   * field. Returns undefined on success or the error code; on error the table state is undefined
   * and the caller must stop using this decoder.
   */
  decode(block: Buffer, onHeader: HeaderCallback, start = 0, end = block.length): HpackError | undefined {
    const cur = this.cur;
    cur.pos = start;
    let fieldSeen = false;
    while (cur.pos < end) {
      const b = block[cur.pos];
      if (b & 0x80) {
        // 6.1 Indexed Header Field.
        const idx = readInt(block, end, cur, 7);
        if (idx < 0) return 'hpack_bad_integer';
        if (this.lookup(idx) < 0) return 'hpack_bad_index';
        onHeader(this.nameAt(idx), this.valueAt(idx));
        fieldSeen = true;
      } else if ((b & 0xe0) === 0x20) {
        // 6.3 Dynamic Table Size Update: only at the start of a block (Section 4.2).
        if (fieldSeen) return 'hpack_bad_table_size_update';
        const n = readInt(block, end, cur, 5);
        if (n < 0) return 'hpack_bad_integer';
        if (n > this.limit) return 'hpack_bad_table_size_update';
        this.maxSize = n;
        this.evictTo(n);
      } else {
        // 6.2.1 with incremental indexing (01xxxxxx, 6-bit index), 6.2.2 without indexing
        // (0000xxxx) and 6.2.3 never indexed (0001xxxx), both 4-bit index.
        const incremental = (b & 0xc0) === 0x40;
        const idx = readInt(block, end, cur, incremental ? 6 : 4);
        if (idx < 0) return 'hpack_bad_integer';
        let name: string | undefined | null;
        if (idx === 0) {
          name = this.readString(block, end);
          if (name === null) return 'hpack_truncated';
          if (name === undefined) return 'hpack_bad_huffman';
        } else {
          if (this.lookup(idx) < 0) return 'hpack_bad_index';
          name = this.nameAt(idx);
        }
        const value = this.readString(block, end);
        if (value === null) return 'hpack_truncated';
        if (value === undefined) return 'hpack_bad_huffman';
        if (incremental) this.add(name, value);
        onHeader(name, value);
        fieldSeen = true;
      }
    }
    return undefined;
  }
}
