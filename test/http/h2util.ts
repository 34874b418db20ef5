import { huffmanEncode } from '../../src/analyzers/http/huffman.js';
import { STATIC_TABLE } from '../../src/analyzers/http/hpack.js';

/** A small HPACK encoder for tests (RFC 7541): indexed fields when the pair is known, else literal with incremental indexing. */
export class TestHpackEncoder {
  private table: [string, string][] = [];
  private size = 0;
  constructor(private max = 4096, private huffman = true) {}

  private int(out: number[], v: number, prefix: number, first: number): void {
    const max = (1 << prefix) - 1;
    if (v < max) {
      out.push(first | v);
      return;
    }
    out.push(first | max);
    v -= max;
    while (v >= 128) {
      out.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(v);
  }

  private str(out: number[], s: string): void {
    const raw = Buffer.from(s, 'utf8');
    const h = huffmanEncode(raw);
    if (this.huffman && h.length < raw.length) {
      this.int(out, h.length, 7, 0x80);
      out.push(...h);
    } else {
      this.int(out, raw.length, 7, 0);
      out.push(...raw);
    }
  }

  private evict(): void {
    while (this.size > this.max && this.table.length) {
      const [n, v] = this.table.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }

  sizeUpdate(out: number[], n: number): void {
    this.max = n;
    this.evict();
    this.int(out, n, 5, 0x20);
  }

  encode(headers: [string, string][], opts: { sizeUpdate?: number; neverIndex?: string[] } = {}): Buffer {
    const out: number[] = [];
    if (opts.sizeUpdate !== undefined) this.sizeUpdate(out, opts.sizeUpdate);
    for (const [n, v] of headers) {
      let idx = STATIC_TABLE.findIndex(([a, b]) => a === n && b === v);
      if (idx >= 0) {
        this.int(out, idx + 1, 7, 0x80);
        continue;
      }
      idx = this.table.findIndex(([a, b]) => a === n && b === v);
      if (idx >= 0) {
        this.int(out, STATIC_TABLE.length + idx + 1, 7, 0x80);
        continue;
      }
      const nameIdx = STATIC_TABLE.findIndex(([a]) => a === n);
      if (opts.neverIndex?.includes(n)) {
        this.int(out, nameIdx + 1, 4, 0x10);
        if (nameIdx < 0) this.str(out, n);
        this.str(out, v);
        continue;
      }
      this.int(out, nameIdx + 1, 6, 0x40);
      if (nameIdx < 0) this.str(out, n);
      this.str(out, v);
      const sz = n.length + v.length + 32;
      if (sz > this.max) {
        this.table = [];
        this.size = 0;
      } else {
        this.table.unshift([n, v]);
        this.size += sz;
        this.evict();
      }
    }
    return Buffer.from(out);
  }
}

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, sid: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const h = Buffer.alloc(9);
  h.writeUIntBE(p.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, p]);
}

export const settings = (pairs: [number, number][] = []): Buffer => {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(4, 0, 0, p);
};

/** DATA with optional padding (RFC 9113 Section 6.1). */
export function data(sid: number, body: Buffer | string, end: boolean, pad = -1): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  if (pad < 0) return frame(0, end ? 1 : 0, sid, b);
  return frame(0, (end ? 1 : 0) | 0x8, sid, Buffer.concat([Buffer.from([pad]), b, Buffer.alloc(pad)]));
}

/** HEADERS (optionally padded / with priority / split into CONTINUATION frames of `split` bytes). */
export function headers(sid: number, block: Buffer, opts: { end?: boolean; pad?: number; priority?: boolean; split?: number } = {}): Buffer {
  const frag = opts.split ? block.subarray(0, opts.split) : block;
  let flags = opts.end ? 1 : 0;
  const parts: Buffer[] = [];
  if (opts.pad !== undefined) {
    flags |= 0x8;
    parts.push(Buffer.from([opts.pad]));
  }
  if (opts.priority) {
    flags |= 0x20;
    parts.push(Buffer.from([0, 0, 0, 0, 15]));
  }
  parts.push(frag);
  if (opts.pad !== undefined) parts.push(Buffer.alloc(opts.pad));
  const out: Buffer[] = [];
  const rest = opts.split ? block.subarray(opts.split) : Buffer.alloc(0);
  if (rest.length === 0) flags |= 0x4;
  out.push(frame(1, flags, sid, Buffer.concat(parts)));
  for (let i = 0; i < rest.length; i += opts.split!) {
    const last = i + opts.split! >= rest.length;
    out.push(frame(9, last ? 0x4 : 0, sid, rest.subarray(i, i + opts.split!)));
  }
  return Buffer.concat(out);
}
