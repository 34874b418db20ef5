/**
 * QPACK field section decoding for HTTP/3 (RFC 9204): the static table (Appendix A), the dynamic
 * table fed by the peer's encoder stream (Section 4.3), and field sections (Section 4.5) that may
 * be blocked until the encoder stream has delivered the entries they reference (Section 2.1.2).
 * Prefix integers and the Huffman code are HPACK's (RFC 7541 Sections 5.1 and 5.2; src/analyzers/http/hpack.ts).
 *
 * One decoder per direction: the client's encoder stream feeds the table for request headers,
 * the server's for response headers. A passive observer cannot know which SETTINGS were honoured,
 * so the table capacity accepted is the decoder's advertised SETTINGS_QPACK_MAX_TABLE_CAPACITY
 * (else `maxCapacity`).
 */
import { readInt, type Cursor, type HeaderCallback } from './hpack.js';
import { huffmanDecode } from './huffman.js';

/** RFC 9204 Appendix A. */
export const QPACK_STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':path', '/'], ['age', '0'], ['content-disposition', ''], ['content-length', '0'],
  ['cookie', ''], ['date', ''], ['etag', ''], ['if-modified-since', ''], ['if-none-match', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['referer', ''], ['set-cookie', ''],
  [':method', 'CONNECT'], [':method', 'DELETE'], [':method', 'GET'], [':method', 'HEAD'], [':method', 'OPTIONS'],
  [':method', 'POST'], [':method', 'PUT'], [':scheme', 'http'], [':scheme', 'https'], [':status', '103'],
  [':status', '200'], [':status', '304'], [':status', '404'], [':status', '503'], ['accept', '*/*'],
  ['accept', 'application/dns-message'], ['accept-encoding', 'gzip, deflate, br'], ['accept-ranges', 'bytes'],
  ['access-control-allow-headers', 'cache-control'], ['access-control-allow-headers', 'content-type'],
  ['access-control-allow-origin', '*'], ['cache-control', 'max-age=0'], ['cache-control', 'max-age=2592000'],
  ['cache-control', 'max-age=604800'], ['cache-control', 'no-cache'], ['cache-control', 'no-store'],
  ['cache-control', 'public, max-age=31536000'], ['content-encoding', 'br'], ['content-encoding', 'gzip'],
  ['content-type', 'application/dns-message'], ['content-type', 'application/javascript'],
  ['content-type', 'application/json'], ['content-type', 'application/x-www-form-urlencoded'],
  ['content-type', 'image/gif'], ['content-type', 'image/jpeg'], ['content-type', 'image/png'],
  ['content-type', 'text/css'], ['content-type', 'text/html; charset=utf-8'], ['content-type', 'text/plain'],
  ['content-type', 'text/plain;charset=utf-8'], ['range', 'bytes=0-'], ['strict-transport-security', 'max-age=31536000'],
  ['strict-transport-security', 'max-age=31536000; includesubdomains'],
  ['strict-transport-security', 'max-age=31536000; includesubdomains; preload'], ['vary', 'accept-encoding'],
  ['vary', 'origin'], ['x-content-type-options', 'nosniff'], ['x-xss-protection', '1; mode=block'],
  [':status', '100'], [':status', '204'], [':status', '206'], [':status', '302'], [':status', '400'],
  [':status', '403'], [':status', '421'], [':status', '425'], [':status', '500'], ['accept-language', ''],
  ['access-control-allow-credentials', 'FALSE'], ['access-control-allow-credentials', 'TRUE'],
  ['access-control-allow-headers', '*'], ['access-control-allow-methods', 'get'],
  ['access-control-allow-methods', 'get, post, options'], ['access-control-allow-methods', 'options'],
  ['access-control-expose-headers', 'content-length'], ['access-control-request-headers', 'content-type'],
  ['access-control-request-method', 'get'], ['access-control-request-method', 'post'], ['alt-svc', 'clear'],
  ['authorization', ''], ['content-security-policy', "script-src 'none'; object-src 'none'; base-uri 'none'"],
  ['early-data', '1'], ['expect-ct', ''], ['forwarded', ''], ['if-range', ''], ['origin', ''],
  ['purpose', 'prefetch'], ['server', ''], ['timing-allow-origin', '*'], ['upgrade-insecure-requests', '1'],
  ['user-agent', ''], ['x-forwarded-for', ''], ['x-frame-options', 'deny'], ['x-frame-options', 'sameorigin'],
];

export type QpackError =
  | 'qpack_truncated'
  | 'qpack_bad_integer'
  | 'qpack_bad_index'
  | 'qpack_bad_huffman'
  | 'qpack_bad_insert_count'
  | 'qpack_capacity_exceeded'
  | 'qpack_encoder_stream_too_long';

/** Section 3.2.1: an entry's size is name + value + 32 octets. */
const ENTRY_OVERHEAD = 32;

export class QpackDecoder {
  /** Dynamic table entries by absolute index - dropped (oldest first). */
  private names: string[] = [];
  private values: string[] = [];
  private sizes: number[] = [];
  private dropped = 0;
  private size = 0;
  private capacity = 0;
  /** SETTINGS_QPACK_MAX_TABLE_CAPACITY of this direction's decoder (undefined: not seen). */
  private maxTableCapacity: number | undefined;
  private pending: Buffer = Buffer.alloc(0);
  private readonly cur: Cursor = { pos: 0 };
  /** Set after an error: the table can no longer be trusted. */
  broken: QpackError | undefined;

  constructor(
    private readonly maxCapacity = 1 << 16,
    private readonly maxEncoderBuffer = 64 * 1024,
  ) {}

  /** Section 3.2.3 / RFC 9114 7.2.4.1: the decoder side's advertised maximum table capacity. */
  setMaxTableCapacity(n: number): void {
    this.maxTableCapacity = Math.min(n, this.maxCapacity);
  }

  /** Total inserts so far (Section 3.2.4 Insert Count). */
  get insertCount(): number {
    return this.dropped + this.names.length;
  }

  /** For tests and diagnostics: the entry with absolute index `abs`. */
  entry(abs: number): [string, string] | undefined {
    const i = abs - this.dropped;
    return i >= 0 && i < this.names.length ? [this.names[i], this.values[i]] : undefined;
  }

  /** Why the last readString returned undefined. */
  private strError: QpackError = 'qpack_truncated';

  /** Section 4.1.2: a string literal with an H bit above a `prefixBits` length; undefined on error (see strError). */
  private readString(buf: Buffer, end: number, prefixBits: number): string | undefined {
    const cur = this.cur;
    this.strError = 'qpack_truncated';
    if (cur.pos >= end) return undefined;
    const huff = (buf[cur.pos] & (1 << prefixBits)) !== 0;
    const len = readInt(buf, end, cur, prefixBits);
    if (len < 0 || cur.pos + len > end) return undefined;
    const s0 = cur.pos;
    cur.pos += len;
    if (!huff) return buf.toString('utf8', s0, s0 + len);
    const v = huffmanDecode(buf, s0, s0 + len);
    if (v === undefined) this.strError = 'qpack_bad_huffman';
    return v;
  }

  private insert(name: string, value: string): QpackError | undefined {
    const esize = Buffer.byteLength(name) + Buffer.byteLength(value) + ENTRY_OVERHEAD;
    if (esize > this.capacity) return 'qpack_capacity_exceeded';
    this.evictTo(this.capacity - esize);
    this.names.push(name);
    this.values.push(value);
    this.sizes.push(esize);
    this.size += esize;
    return undefined;
  }

  /**
   * Encoder stream bytes (Section 4.3), in order. Partial instructions are kept for the next call.
   * Returns the number of entries inserted, or an error (the decoder is then broken).
   */
  encoderStream(data: Buffer): number | QpackError {
    if (this.broken) return this.broken;
    let buf = data;
    if (this.pending.length > 0) buf = Buffer.concat([this.pending, data]);
    const end = buf.length;
    const cur = this.cur;
    let pos = 0;
    let inserted = 0;
    while (pos < end) {
      cur.pos = pos;
      const b = buf[pos];
      let err: QpackError | undefined;
      if (b & 0xc0) {
        let name: string | undefined;
        if (b & 0x80) {
          // Insert with Name Reference: 1 T index(6), value
          const isStatic = (b & 0x40) !== 0;
          const idx = readInt(buf, end, cur, 6);
          if (idx < 0) break;
          name = isStatic ? QPACK_STATIC_TABLE[idx]?.[0] : this.entry(this.insertCount - 1 - idx)?.[0];
          if (name === undefined) err = 'qpack_bad_index';
        } else {
          // Insert with Literal Name: 01 H len(5) name, value
          name = this.readString(buf, end, 5);
          if (name === undefined && this.strError === 'qpack_truncated') break;
          if (name === undefined) err = this.strError;
        }
        if (err === undefined) {
          const value = this.readString(buf, end, 7);
          if (value === undefined && this.strError === 'qpack_truncated') break;
          if (value === undefined) err = this.strError;
          else {
            err = this.insert(name as string, value);
            inserted++;
          }
        }
      } else if (b & 0x20) {
        // Set Dynamic Table Capacity: 001 capacity(5)
        const cap = readInt(buf, end, cur, 5);
        if (cap < 0) break;
        if (cap > (this.maxTableCapacity ?? this.maxCapacity)) err = 'qpack_capacity_exceeded';
        else {
          this.capacity = cap;
          this.evictTo(cap);
        }
      } else {
        // Duplicate: 000 index(5)
        const idx = readInt(buf, end, cur, 5);
        if (idx < 0) break;
        const e = this.entry(this.insertCount - 1 - idx);
        err = e ? this.insert(e[0], e[1]) : 'qpack_bad_index';
        inserted++;
      }
      if (err) {
        this.broken = err;
        return err;
      }
      pos = cur.pos;
    }
    if (end - pos > this.maxEncoderBuffer) {
      this.broken = 'qpack_encoder_stream_too_long';
      return this.broken;
    }
    this.pending = pos < end ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
    return inserted;
  }

  private evictTo(target: number): void {
    let n = 0;
    while (this.size > target && n < this.names.length) {
      this.size -= this.sizes[n];
      n++;
    }
    if (n > 0) {
      this.names.splice(0, n);
      this.values.splice(0, n);
      this.sizes.splice(0, n);
      this.dropped += n;
    }
  }

  /** Section 4.5.1.1: the Required Insert Count from its encoding; -1 on error. */
  private requiredInsertCount(enc: number): number {
    if (enc === 0) return 0;
    const maxEntries = Math.floor((this.maxTableCapacity ?? this.maxCapacity) / 32);
    const fullRange = 2 * maxEntries;
    if (enc > fullRange) return -1;
    const maxValue = this.insertCount + maxEntries;
    const maxWrapped = Math.floor(maxValue / fullRange) * fullRange;
    let ric = maxWrapped + enc - 1;
    if (ric > maxValue) {
      if (ric <= fullRange) return -1;
      ric -= fullRange;
    }
    return ric === 0 ? -1 : ric;
  }

  /**
   * Decodes one field section (the payload of a HEADERS frame). 'blocked' when it needs entries
   * the encoder stream has not delivered yet (call again after encoderStream); else undefined on
   * success or the error.
   */
  decode(block: Buffer, onHeader: HeaderCallback): QpackError | 'blocked' | undefined {
    if (this.broken) return this.broken;
    const cur = this.cur;
    const end = block.length;
    cur.pos = 0;
    const enc = readInt(block, end, cur, 8);
    if (enc < 0) return 'qpack_truncated';
    const ric = this.requiredInsertCount(enc);
    if (ric < 0) return 'qpack_bad_insert_count';
    if (cur.pos >= end) return 'qpack_truncated';
    const sign = (block[cur.pos] & 0x80) !== 0;
    const delta = readInt(block, end, cur, 7);
    if (delta < 0) return 'qpack_bad_integer';
    if (ric > this.insertCount) return 'blocked';
    const base = sign ? ric - delta - 1 : ric + delta;
    while (cur.pos < end) {
      const b = block[cur.pos];
      let name: string | undefined;
      if (b & 0x80) {
        // Indexed Field Line: 1 T index(6)
        const isStatic = (b & 0x40) !== 0;
        const idx = readInt(block, end, cur, 6);
        if (idx < 0) return 'qpack_bad_integer';
        const e = isStatic ? QPACK_STATIC_TABLE[idx] : this.entry(base - 1 - idx);
        if (!e) return 'qpack_bad_index';
        onHeader(e[0], e[1]);
        continue;
      }
      if ((b & 0xf0) === 0x10) {
        // Indexed Field Line with Post-Base Index: 0001 index(4)
        const idx = readInt(block, end, cur, 4);
        if (idx < 0) return 'qpack_bad_integer';
        const e = this.entry(base + idx);
        if (!e) return 'qpack_bad_index';
        onHeader(e[0], e[1]);
        continue;
      }
      if (b & 0x40) {
        // Literal Field Line with Name Reference: 01 N T index(4), value (H + 7)
        const isStatic = (b & 0x10) !== 0;
        const idx = readInt(block, end, cur, 4);
        if (idx < 0) return 'qpack_bad_integer';
        name = (isStatic ? QPACK_STATIC_TABLE[idx] : this.entry(base - 1 - idx))?.[0];
        if (name === undefined) return 'qpack_bad_index';
      } else if (b & 0x20) {
        // Literal Field Line with Literal Name: 001 N H len(3) name, value (H + 7)
        name = this.readString(block, end, 3);
        if (name === undefined) return this.strError;
      } else {
        // Literal Field Line with Post-Base Name Reference: 0000 N index(3), value (H + 7)
        const idx = readInt(block, end, cur, 3);
        if (idx < 0) return 'qpack_bad_integer';
        name = this.entry(base + idx)?.[0];
        if (name === undefined) return 'qpack_bad_index';
      }
      const value = this.readString(block, end, 7);
      if (value === undefined) return this.strError;
      onHeader(name, value);
    }
    return undefined;
  }
}

