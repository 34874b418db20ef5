import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { CaptureSink } from '../types.js';
import { CaptureFileError, CaptureFormatError } from './errors.js';
import { DEFAULT_CAPTURE_LIMITS, type CaptureLimits, type RecordFramer } from './framer.js';
import { isPcapMagic, PcapFramer } from './pcap.js';
import { PCAPNG_SHB, PcapngFramer } from './pcapng.js';

export type CaptureFormat = 'pcap' | 'pcapng';

export type CaptureReaderOptions = Partial<CaptureLimits>;

/** Fixed buffer for a split record header; every format's header is at most this long. */
const HEADER_BUFFER_BYTES = 32;

/**
 * Incremental, push-based capture reader: auto-detects classic pcap (micro/nanosecond, either byte
 * order) or pcapng from the first four bytes and hands packets, secrets and anomalies to a sink.
 *
 * Chunks may be split anywhere. Complete records are handed on as views into the pushed chunk (no
 * copy); only a record split across chunks is copied, into a buffer of exactly its size (allocated
 * fresh, so the packet views stay valid after the call). Records above the size limit are skipped
 * by their length without being buffered.
 *
 * The only exception thrown is CaptureFormatError from push() when the stream does not start with
 * a known magic number; everything malformed later is counted through sink.anomaly().
 */
export class CaptureReader {
  private framer: RecordFramer | undefined;
  private fmt: CaptureFormat | undefined;
  private readonly limits: CaptureLimits;
  /** Start of a record whose header is incomplete. */
  private readonly hdr = Buffer.alloc(HEADER_BUFFER_BYTES);
  private hdrLen = 0;
  /** A record whose length is known but whose bytes are incomplete. */
  private rec: Buffer | undefined;
  private recFill = 0;
  /** Bytes still to discard of an oversized record. */
  private skip = 0;
  /** The stream cannot be followed any further (reported). */
  private stopped = false;

  constructor(
    private readonly sink: CaptureSink,
    opts: CaptureReaderOptions = {},
  ) {
    this.limits = { ...DEFAULT_CAPTURE_LIMITS, ...opts };
  }

  /** The detected format, once the first four bytes have been seen. */
  get format(): CaptureFormat | undefined {
    return this.fmt;
  }

  /** Packets handed to the sink so far. */
  get packets(): number {
    return this.framer?.packets ?? 0;
  }

  /** Bytes pushed so far (progress display). */
  bytes = 0;

  /**
   * Undefined while the input is usable so far or the format is unknown yet; after end(), a
   * one-line reason when the input stopped inside its format's file header: such a file is no
   * capture (exit 2), unlike one whose last packet record is cut short (`capture_truncated`).
   */
  get headerShortfall(): string | undefined {
    const f = this.framer;
    if (f === undefined || f.headerDone || !this.stopped) return undefined;
    return `${this.bytes} bytes, shorter than a ${this.fmt} file header (${f.minHeaderBytes} bytes)`;
  }

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.stopped || chunk.length === 0) return;
    const n = chunk.length;
    let off = 0;
    if (this.framer === undefined) {
      const take = Math.min(4 - this.hdrLen, n);
      chunk.copy(this.hdr, this.hdrLen, 0, take);
      this.hdrLen += take;
      off = take;
      if (this.hdrLen < 4) return;
      this.detect(this.hdr.readUInt32BE(0));
    }
    const framer = this.framer!;
    off = this.completePending(chunk, off);
    const run = framer.run;
    while (off < n && !this.stopped) {
      if (this.skip > 0) {
        const s = Math.min(this.skip, n - off);
        this.skip -= s;
        off += s;
        continue;
      }
      if (run !== undefined && (off = run(chunk, off, n)) === n) break;
      const avail = n - off;
      if (avail < framer.headerSize()) {
        chunk.copy(this.hdr, 0, off, n);
        this.hdrLen = avail;
        return;
      }
      const len = framer.recordLength(chunk, off);
      if (len < 0) {
        this.stop();
        return;
      }
      if (len > framer.maxRecordBytes) {
        this.skip = len;
        continue;
      }
      if (avail < len) {
        this.rec = Buffer.allocUnsafe(len);
        chunk.copy(this.rec, 0, off, n);
        this.recFill = avail;
        return;
      }
      framer.record(chunk, off, len);
      off += len;
    }
  }

  /**
   * Signals the end of the stream. Anything still buffered is an incomplete record: counted as
   * 'capture_truncated' (a capture cut short, e.g. by a killed tcpdump).
   */
  end(): void {
    if (!this.stopped && (this.hdrLen > 0 || this.rec !== undefined || this.skip > 0)) {
      this.sink.anomaly('capture_truncated', this.framer === undefined ? 'shorter than a magic number' : 'last record incomplete');
    }
    this.hdrLen = 0;
    this.rec = undefined;
    this.skip = 0;
    this.stopped = true;
  }

  private detect(magic: number): void {
    if (isPcapMagic(magic)) {
      this.fmt = 'pcap';
      this.framer = new PcapFramer(magic, this.sink, this.limits);
    } else if (magic === PCAPNG_SHB) {
      this.fmt = 'pcapng';
      this.framer = new PcapngFramer(this.sink, this.limits);
    } else {
      this.stopped = true;
      throw new CaptureFormatError(`magic 0x${magic.toString(16).padStart(8, '0')}`);
    }
  }

  /** Feeds the start of `chunk` into a record split across chunks; returns the offset after it. */
  private completePending(chunk: Buffer, off: number): number {
    const framer = this.framer!;
    const n = chunk.length;
    for (;;) {
      if (this.skip > 0 || this.stopped) return off;
      const rec = this.rec;
      if (rec !== undefined) {
        const take = Math.min(rec.length - this.recFill, n - off);
        chunk.copy(rec, this.recFill, off, off + take);
        this.recFill += take;
        off += take;
        if (this.recFill < rec.length) return off;
        this.rec = undefined;
        framer.record(rec, 0, rec.length);
        return off;
      }
      if (this.hdrLen === 0) return off;
      const h = framer.headerSize();
      const take = Math.min(h - this.hdrLen, n - off);
      if (take > 0) {
        chunk.copy(this.hdr, this.hdrLen, off, off + take);
        this.hdrLen += take;
        off += take;
      }
      if (this.hdrLen < h) return off;
      const len = framer.recordLength(this.hdr, 0);
      if (len < 0) {
        this.stop();
        return n;
      }
      if (len > framer.maxRecordBytes) {
        this.skip = len - this.hdrLen;
        this.hdrLen = 0;
        return off;
      }
      const full = Buffer.allocUnsafe(len);
      this.hdr.copy(full, 0, 0, this.hdrLen);
      this.recFill = this.hdrLen;
      this.hdrLen = 0;
      this.rec = full;
    }
  }

  private stop(): void {
    this.stopped = true;
    this.hdrLen = 0;
    this.rec = undefined;
    this.skip = 0;
  }
}

/** Read size for capture files: large reads keep the per-chunk overhead negligible. */
export const CAPTURE_READ_CHUNK_BYTES = 1 << 20;

/**
 * Reads a whole capture file (or stdin for '-') into a sink.
 * @throws CaptureFileError when the file cannot be read, CaptureFormatError when it is no capture
 *   (both with one-line messages naming the path). Errors thrown by the sink pass through unchanged.
 */
export async function readCaptureFile(
  path: string,
  sink: CaptureSink,
  opts?: CaptureReaderOptions,
): Promise<{ format: CaptureFormat; packets: number }> {
  const reader = new CaptureReader(sink, opts);
  const stream: Readable =
    path === '-' ? process.stdin : createReadStream(path, { highWaterMark: CAPTURE_READ_CHUNK_BYTES });
  const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    for (;;) {
      let r: IteratorResult<Buffer>;
      try {
        r = await it.next();
      } catch (e) {
        throw new CaptureFileError(path, e);
      }
      if (r.done) break;
      try {
        reader.push(r.value);
      } catch (e) {
        if (e instanceof CaptureFormatError) throw new CaptureFormatError(e.detail, path);
        throw e;
      }
    }
  } finally {
    if (path !== '-') stream.destroy();
  }
  const format = reader.format;
  reader.end();
  if (format === undefined) throw new CaptureFormatError('too short for a magic number', path);
  const short = reader.headerShortfall;
  if (short !== undefined) throw new CaptureFormatError(short, path);
  return { format, packets: reader.packets };
}
