/**
 * TLS record deframing for one direction of a connection (RFC 5246 §6.2.1, RFC 8446 §5.1).
 *
 * Input is the reassembled TCP byte stream in arbitrary chunks; output is one callback per
 * complete record with a 5-byte header view and a fragment view. A record that lies entirely
 * within one chunk is handed on as views into that chunk (no copy); only a record split across
 * chunks is copied into a reused per-direction buffer. Views handed to the sink are valid only
 * during the callback.
 *
 * After a gap in the stream the record boundary is usually lost: the deframer then scans forward
 * for a plausible header, confirmed by a second plausible header right after that record (the
 * cheap probe Wireshark and Suricata use), and counts `tls_resync`.
 */
import type { AnomalySink } from '../types.js';

/** TLS ContentType values (RFC 8446 §5.1; heartbeat RFC 6520). */
export const ContentType = {
  ChangeCipherSpec: 20,
  Alert: 21,
  Handshake: 22,
  ApplicationData: 23,
  Heartbeat: 24,
} as const;

export const RECORD_HEADER_LEN = 5;
const EMPTY = Buffer.alloc(0);
/** RFC 5246 §6.2.3: TLSCiphertext.length MUST NOT exceed 2^14 + 2048. */
export const MAX_CIPHERTEXT_LENGTH = 16384 + 2048;

export interface DeframerOptions {
  /**
   * Largest record length accepted in sync. The RFC limit is 2^14+2048, but some stacks send
   * larger records and peers accept them, so by default anything the 16-bit length can express
   * is accepted (records above the RFC limit are counted as `tls_record_oversize`).
   */
  maxRecordLength: number;
  /** Largest record length a resync candidate header may have (stricter: guards false positives). */
  resyncMaxRecordLength: number;
  /** Bytes held while searching for a record boundary after a gap; older bytes are dropped. */
  maxResyncBufferBytes: number;
}

export const DEFAULT_DEFRAMER_OPTIONS: DeframerOptions = {
  maxRecordLength: 0xffff,
  resyncMaxRecordLength: MAX_CIPHERTEXT_LENGTH,
  maxResyncBufferBytes: 2 * (RECORD_HEADER_LEN + MAX_CIPHERTEXT_LENGTH) + RECORD_HEADER_LEN,
};

export interface RecordSink {
  /** One complete record. `header` and `fragment` are views valid only during the call. */
  record(type: number, version: number, header: Buffer, fragment: Buffer): void;
  /**
   * Ciphertext bytes that will never be delivered as records (gap, garbage skipped by resync).
   * `records` is the exact number of records lost when known (a gap that fell inside one record),
   * or -1 when unknown (records may have been lost entirely inside the gap).
   */
  lost(bytes: number, records: number): void;
}

/** Header check used in sync: any TLS-looking content type and a 3.x version. */
function validHeader(b: Buffer, i: number, maxLen: number): boolean {
  const t = b[i];
  return t >= 20 && t <= 24 && b[i + 1] === 3 && b[i + 2] <= 4 && ((b[i + 3] << 8) | b[i + 4]) <= maxLen;
}

/**
 * Header check used while resynchronising: versions 0x0300 (SSLv3 hello) to 0x0304, a non-empty
 * fragment within the RFC limit.
 */
export function plausibleHeader(b: Buffer, i: number, maxLen: number = MAX_CIPHERTEXT_LENGTH): boolean {
  const t = b[i];
  if (t < 20 || t > 24 || b[i + 1] !== 3 || b[i + 2] > 4) return false;
  const len = (b[i + 3] << 8) | b[i + 4];
  return len >= 1 && len <= maxLen;
}

/**
 * Record buffers sessions keep past the record callback (RecordDeframer.takeRecord), counted for
 * every deframer of this thread together: at most MAX_KEPT_BUFFERS are kept at a time, and as many
 * handed back are cached for reuse, so what they hold stays bounded (~8 MiB).
 */
const SPARES: Buffer[] = [];
let keptBuffers = 0;
const MAX_KEPT_BUFFERS = 256;
/** A whole record of the largest ciphertext TLS allows (RFC 8446 §5.2: 2^14 + 256). */
const SPARE_BYTES = RECORD_HEADER_LEN + 16384 + 256;

export class RecordDeframer {
  private readonly opts: DeframerOptions;
  /** Partial record (header and/or fragment) carried between chunks; reused. */
  private part: Buffer = EMPTY;
  private partLen = 0;
  /** Total length (header + fragment) of the partial record once its header is known, else 0. */
  private partTotal = 0;
  /** Bytes still to skip after a gap that fell inside a record of known length. */
  private skip = 0;
  private resyncing = false;
  private rs: Buffer = EMPTY;
  private rsLen = 0;
  /** Bytes lost since the last delivered record, reported when the stream is back in sync. */
  private lostPending = 0;
  /** Number of records delivered (diagnostics and tests). */
  records = 0;

  constructor(
    private readonly sink: RecordSink,
    private readonly anomalies: AnomalySink,
    opts?: Partial<DeframerOptions>,
  ) {
    this.opts = opts ? { ...DEFAULT_DEFRAMER_OPTIONS, ...opts } : DEFAULT_DEFRAMER_OPTIONS;
  }

  /** True while searching for a record boundary after a gap or garbage. */
  get inResync(): boolean {
    return this.resyncing;
  }

  /** Bytes held back (partial record or resync window). */
  get buffered(): number {
    return this.resyncing ? this.rsLen : this.partLen;
  }

  /**
   * Feed stream bytes. The chunk is not retained after the call. Switching between sync and
   * resync happens through a small work list rather than recursion, so hostile input that
   * alternates garbage and records cannot grow the stack.
   */
  push(chunk: Buffer): void {
    const work = this.work;
    if (work.length !== 0) work.length = 0; // (a runtime call even when already empty)
    work.push(chunk);
    while (work.length > 0) {
      const next = work.shift() as Buffer;
      if (next.length === 0) continue;
      if (this.resyncing) this.feedResync(next, work);
      else this.feedSync(next, work);
    }
  }

  private readonly work: Buffer[] = [];

  /** Sync path; on a malformed header switches to resync and queues the unconsumed bytes. */
  private feedSync(chunk: Buffer, work: Buffer[]): void {
    let off = 0;
    const n = chunk.length;
    if (this.skip > 0) {
      const s = Math.min(this.skip, n);
      this.skip -= s;
      off = s;
    }
    while (off < n) {
      if (this.partLen > 0) {
        if (this.partTotal === 0) {
          // Complete the header first.
          const take = Math.min(RECORD_HEADER_LEN - this.partLen, n - off);
          this.ensurePart(RECORD_HEADER_LEN);
          chunk.copy(this.part, this.partLen, off, off + take);
          this.partLen += take;
          off += take;
          if (this.partLen < RECORD_HEADER_LEN) return;
          if (!validHeader(this.part, 0, this.opts.maxRecordLength)) {
            this.malformed(this.part.subarray(0, RECORD_HEADER_LEN));
            const held = Buffer.from(this.part.subarray(1, RECORD_HEADER_LEN));
            this.partLen = 0;
            this.partTotal = 0;
            this.lostPending += 1;
            this.enterResync();
            work.unshift(held, chunk.subarray(off));
            return;
          }
          this.partTotal = RECORD_HEADER_LEN + this.part.readUInt16BE(3);
          this.ensurePart(this.partTotal);
        }
        const take = Math.min(this.partTotal - this.partLen, n - off);
        // A whole chunk (a middle TCP segment of a record) is copied without a view of it
        // (Buffer#copy makes one whenever it copies less than the whole source).
        this.part.set(take === n ? chunk : chunk.subarray(off, off + take), this.partLen);
        this.partLen += take;
        off += take;
        if (this.partLen === this.partTotal) {
          const total = this.partTotal;
          this.partLen = 0;
          this.partTotal = 0;
          this.emit(this.part, 0, total);
        }
        continue;
      }
      const rem = n - off;
      if (rem < RECORD_HEADER_LEN) {
        this.ensurePart(RECORD_HEADER_LEN);
        chunk.copy(this.part, 0, off, n);
        this.partLen = rem;
        return;
      }
      if (!validHeader(chunk, off, this.opts.maxRecordLength)) {
        this.malformed(chunk.subarray(off, off + RECORD_HEADER_LEN));
        this.lostPending += 1;
        this.enterResync();
        work.unshift(chunk.subarray(off + 1));
        return;
      }
      const total = RECORD_HEADER_LEN + chunk.readUInt16BE(off + 3);
      if (rem >= total) {
        this.emit(chunk, off, total);
        off += total;
      } else {
        this.ensurePart(total);
        chunk.copy(this.part, 0, off, n);
        this.partLen = rem;
        this.partTotal = total;
        return;
      }
    }
  }

  /**
   * `length` bytes of the stream were never seen. When the gap falls inside the record being
   * assembled (its length is known), the next boundary is known exactly and one record is lost;
   * otherwise the deframer resynchronises by scanning.
   */
  gap(length: number): void {
    if (!(length > 0)) return;
    if (this.resyncing) {
      this.lostPending += length;
      return;
    }
    if (this.skip > 0) {
      // Still inside a record already reported lost: the gap either ends within it or not.
      if (length <= this.skip) {
        this.skip -= length;
        return;
      }
      this.lostPending += length - this.skip;
      this.skip = 0;
      this.enterResync();
      return;
    }
    if (this.partTotal > 0) {
      const remaining = this.partTotal - this.partLen;
      if (length <= remaining) {
        this.skip = remaining - length;
        const lostBytes = this.partTotal;
        this.partLen = 0;
        this.partTotal = 0;
        this.sink.lost(lostBytes + this.lostPending, 1);
        this.lostPending = 0;
        return;
      }
    }
    this.lostPending += this.partLen + length;
    this.partLen = 0;
    this.partTotal = 0;
    this.enterResync();
  }

  /** End of this direction: a partial record left over is counted. */
  end(): void {
    if (this.partLen > 0 || (this.resyncing && this.rsLen > 0)) {
      this.anomalies.anomaly('tls_record_truncated');
    }
    this.partLen = 0;
    this.partTotal = 0;
    this.rsLen = 0;
  }

  private emit(buf: Buffer, off: number, total: number): void {
    const len = total - RECORD_HEADER_LEN;
    if (len > MAX_CIPHERTEXT_LENGTH) this.anomalies.anomaly('tls_record_oversize', String(len));
    if (this.lostPending > 0) {
      const lost = this.lostPending;
      this.lostPending = 0;
      this.sink.lost(lost, -1);
    }
    this.records++;
    this.sink.record(
      buf[off],
      (buf[off + 1] << 8) | buf[off + 2],
      buf.subarray(off, off + RECORD_HEADER_LEN),
      buf.subarray(off + RECORD_HEADER_LEN, off + total),
    );
  }

  /**
   * During the sink's record callback: a buffer of the caller's own holding the record (header at
   * 0, fragment at RECORD_HEADER_LEN), to keep until it hands it back with releaseRecord; undefined
   * when none is free (keep nothing then). A record assembled across chunks is handed over as it
   * stands (the deframer goes on in a spare buffer), one inside the chunk is copied.
   */
  takeRecord(header: Buffer, fragment: Buffer): Buffer | undefined {
    const p = this.part;
    const own = fragment.buffer === p.buffer && fragment.byteOffset === p.byteOffset + RECORD_HEADER_LEN && fragment.length <= p.length - RECORD_HEADER_LEN;
    if (keptBuffers >= MAX_KEPT_BUFFERS || (!own && fragment.length > SPARE_BYTES - RECORD_HEADER_LEN)) return undefined;
    keptBuffers++;
    let spare = SPARES.pop() ?? Buffer.allocUnsafeSlow(SPARE_BYTES);
    if (own && this.partLen === 0) {
      this.part = spare;
      return p;
    }
    if (spare.length < RECORD_HEADER_LEN + fragment.length) spare = Buffer.allocUnsafeSlow(SPARE_BYTES);
    spare.set(header.subarray(0, RECORD_HEADER_LEN), 0);
    spare.set(fragment, RECORD_HEADER_LEN);
    return spare;
  }

  /** A buffer from takeRecord, no longer used. */
  static releaseRecord(b: Buffer): void {
    keptBuffers--;
    if (SPARES.length < MAX_KEPT_BUFFERS) SPARES.push(b);
  }

  private malformed(header: Buffer): void {
    this.anomalies.anomaly('tls_record_malformed', header.toString('hex'));
  }

  private ensurePart(size: number): void {
    if (this.part.length < size) {
      const next = Buffer.allocUnsafe(Math.max(size, Math.min(2 * this.part.length, RECORD_HEADER_LEN + 0xffff)));
      this.part.copy(next, 0, 0, this.partLen);
      this.part = next;
    }
  }

  private enterResync(): void {
    this.resyncing = true;
    this.rsLen = 0;
    this.skip = 0;
  }

  /**
   * Append to the resync window and look for a confirmed record boundary. Once found, the
   * window from the boundary and the rest of the chunk go back to the work list for the sync path.
   */
  private feedResync(chunk: Buffer, work: Buffer[]): void {
    let off = 0;
    while (off < chunk.length) {
      const cap = this.opts.maxResyncBufferBytes;
      if (this.rs.length < cap) {
        const next = Buffer.allocUnsafe(cap);
        this.rs.copy(next, 0, 0, this.rsLen);
        this.rs = next;
      }
      if (this.rsLen === cap) {
        // Window full without a confirmed boundary: drop the older half.
        const drop = cap >> 1;
        this.rs.copy(this.rs, 0, drop, this.rsLen);
        this.rsLen -= drop;
        this.lostPending += drop;
      }
      const take = Math.min(cap - this.rsLen, chunk.length - off);
      chunk.copy(this.rs, this.rsLen, off, off + take);
      this.rsLen += take;
      off += take;
      const found = this.scan();
      if (found >= 0) {
        this.anomalies.anomaly('tls_resync');
        this.lostPending += found;
        this.resyncing = false;
        // The window is handed on as a view; a later resync allocates a fresh one so the view
        // stays intact while it is processed.
        const window = this.rs.subarray(found, this.rsLen);
        this.rs = EMPTY;
        this.rsLen = 0;
        work.unshift(window, chunk.subarray(off));
        return;
      }
    }
  }

  /**
   * Index of the first plausible header confirmed by a plausible header right after its record,
   * or -1. Unconfirmable candidates (the next header is not buffered yet) stop the scan; bytes
   * before them are dropped as lost.
   */
  private scan(): number {
    const b = this.rs;
    const n = this.rsLen;
    const maxLen = this.opts.resyncMaxRecordLength;
    for (let i = 0; i + RECORD_HEADER_LEN <= n; i++) {
      if (!plausibleHeader(b, i, maxLen)) continue;
      const next = i + RECORD_HEADER_LEN + b.readUInt16BE(i + 3);
      if (next + RECORD_HEADER_LEN <= n) {
        if (plausibleHeader(b, next, maxLen)) return i;
        continue;
      }
      // Wait for more bytes to confirm this candidate; drop what lies before it.
      if (i > 0) {
        b.copy(b, 0, i, n);
        this.rsLen = n - i;
        this.lostPending += i;
      }
      return -1;
    }
    // No candidate: keep the last 4 bytes (a header may straddle chunks).
    const keep = Math.min(n, RECORD_HEADER_LEN - 1);
    if (n > keep) {
      b.copy(b, 0, n - keep, n);
      this.lostPending += n - keep;
      this.rsLen = keep;
    }
    return -1;
  }
}
