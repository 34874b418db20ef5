/**
 * A byte cursor over a Buffer for the TLS presentation language (RFC 8446 §3): fixed-width
 * big-endian integers and vectors with 1-, 2- or 3-byte length prefixes.
 *
 * Why a sticky failure flag instead of exceptions: parsers read hostile bytes, and a short read
 * is an expected outcome, not a programming error. A read past the end returns 0 / an empty view,
 * sets `ok = false` and moves the cursor to the end, so every loop `while (r.remaining > 0)`
 * terminates and the parser checks `ok` once at the end (rustls' `Reader` does the same with
 * Option). All returned Buffers are views (subarray) into the input: no copying.
 */
export class Reader {
  pos: number;
  ok = true;
  private readonly end: number;
  private static readonly EMPTY = Buffer.alloc(0);

  constructor(
    readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private fail(): void {
    this.ok = false;
    this.pos = this.end;
  }

  u8(): number {
    if (this.remaining < 1) {
      this.fail();
      return 0;
    }
    return this.buf[this.pos++];
  }

  u16(): number {
    if (this.remaining < 2) {
      this.fail();
      return 0;
    }
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }

  u24(): number {
    if (this.remaining < 3) {
      this.fail();
      return 0;
    }
    const v = (this.buf[this.pos] << 16) | (this.buf[this.pos + 1] << 8) | this.buf[this.pos + 2];
    this.pos += 3;
    return v;
  }

  u32(): number {
    if (this.remaining < 4) {
      this.fail();
      return 0;
    }
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** `n` bytes as a view. */
  bytes(n: number): Buffer {
    if (n < 0 || this.remaining < n) {
      this.fail();
      return Reader.EMPTY;
    }
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** The rest of the input as a view. */
  rest(): Buffer {
    return this.bytes(this.remaining);
  }

  /** opaque x<0..2^8-1> */
  vec8(): Buffer {
    return this.bytes(this.u8());
  }

  /** opaque x<0..2^16-1> */
  vec16(): Buffer {
    const n = this.u16();
    return this.ok ? this.bytes(n) : Reader.EMPTY;
  }

  /** opaque x<0..2^24-1> */
  vec24(): Buffer {
    const n = this.u24();
    return this.ok ? this.bytes(n) : Reader.EMPTY;
  }

  /** A sub-reader over a 2-byte-length-prefixed vector; the parent skips past it. */
  sub16(): Reader {
    const v = this.vec16();
    const r = new Reader(v);
    if (!this.ok) r.ok = false;
    return r;
  }

  sub8(): Reader {
    const v = this.vec8();
    const r = new Reader(v);
    if (!this.ok) r.ok = false;
    return r;
  }

  sub24(): Reader {
    const v = this.vec24();
    const r = new Reader(v);
    if (!this.ok) r.ok = false;
    return r;
  }

  /**
   * Skips what u16List16 reads, with its checks (framing; an odd length clears `ok`), without
   * building the list.
   */
  skipU16List16(): void {
    const n = this.u16();
    if (!this.ok) return;
    if (this.remaining < n) {
      this.fail();
      return;
    }
    if (n % 2 !== 0) this.ok = false;
    this.pos += n;
  }

  /** A list of u16 values in a 2-byte-length-prefixed vector (cipher suites, groups, ...). */
  u16List16(): number[] {
    const r = this.sub16();
    const out: number[] = [];
    if (r.remaining % 2 !== 0) this.ok = false;
    while (r.remaining >= 2) out.push(r.u16());
    return out;
  }

  /** A list of u16 values in a 1-byte-length-prefixed vector (supported_versions in ClientHello). */
  u16List8(): number[] {
    const r = this.sub8();
    const out: number[] = [];
    if (r.remaining % 2 !== 0) this.ok = false;
    while (r.remaining >= 2) out.push(r.u16());
    return out;
  }

  /** A list of u8 values in a 1-byte-length-prefixed vector. */
  u8List8(): number[] {
    const v = this.vec8();
    return Array.from(v);
  }
}
