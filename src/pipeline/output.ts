import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { EcsEvent } from '../events/builder.js';

/** Capacity of one encoded batch (a batch is flushed at 64 Ki characters, plus its last line). */
const BATCH_BYTES = 1 << 18;
/** Encoded-batch buffers kept for reuse (back-pressure keeps one or two writes in flight). */
const SPARE_MAX = 4;

/**
 * Newline-delimited JSON event writer with back-pressure: events are batched into one string
 * per flush and the producer awaits `drained()` between input chunks, so a slow consumer of
 * stdout slows the replay instead of growing memory.
 */
export class NdjsonWriter {
  private buf: string[] = [];
  private bufChars = 0;
  /**
   * Byte buffers for encoded batches, back here once the stream has written them. Handing the
   * stream the batch string made it allocate a fresh ~64 KB buffer per batch (plus a UTF-8 length
   * scan, and the first touch of new memory each time): 4 % of a sessions-16k replay's CPU.
   */
  private spare: Buffer[] = [];
  private blocked = false;
  private failed: Error | undefined;
  count = 0;

  private constructor(
    private readonly stream: Writable,
    private readonly ownsStream: boolean,
  ) {
    stream.on('error', (e: Error) => {
      this.failed = e;
    });
  }

  static toStdout(): NdjsonWriter {
    return new NdjsonWriter(process.stdout, false);
  }

  /** Opens FILE for writing; resolves once it is open (rejects with the fs error otherwise). */
  static async toFile(path: string): Promise<NdjsonWriter> {
    const ws: WriteStream = createWriteStream(path);
    await Promise.race([once(ws, 'open'), once(ws, 'error').then(([e]) => Promise.reject(e))]);
    return new NdjsonWriter(ws, true);
  }

  write(ev: EcsEvent): void {
    const line = JSON.stringify(ev) + '\n';
    this.buf.push(line);
    this.bufChars += line.length;
    this.count++;
    if (this.bufChars >= 1 << 16) this.flush();
  }

  /** Pre-serialised NDJSON text (from a worker thread) holding `events` lines. */
  writeRaw(text: string, events: number): void {
    this.flush();
    this.count += events;
    if (!this.stream.write(text)) this.blocked = true;
  }

  flush(): void {
    if (!this.buf.length) return;
    const s = this.buf.join('');
    this.buf = [];
    this.bufChars = 0;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: a batch that surely fits is encoded into
    // a reused buffer; a larger one (a huge event) goes as a string.
    if (s.length * 3 > BATCH_BYTES) {
      if (!this.stream.write(s)) this.blocked = true;
      return;
    }
    const b = this.spare.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES);
    const n = b.write(s, 0);
    const ok = this.stream.write(b.subarray(0, n), () => {
      if (this.spare.length < SPARE_MAX) this.spare.push(b);
    });
    if (!ok) this.blocked = true;
  }

  /** The destination has asked to wait (call `drained()` before writing much more). */
  get full(): boolean {
    return this.blocked;
  }

  /** Resolves when the destination has room again. */
  async drained(): Promise<void> {
    if (this.failed) throw this.failed;
    if (!this.blocked) return;
    await this.drain();
  }

  /**
   * Waits for 'drain' only while the stream still needs one: writes from worker threads' answers
   * (writeRaw) come between the producer's awaits, and a 'drain' emitted while nobody listened
   * is not emitted again (replay --workers hung on a capture with large events).
   */
  private async drain(): Promise<void> {
    if (this.stream.writableNeedDrain) await once(this.stream, 'drain');
    this.blocked = false;
  }

  async close(): Promise<void> {
    this.flush();
    if (this.failed) throw this.failed;
    if (this.ownsStream) {
      await new Promise<void>((resolve, reject) => this.stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    } else if (this.blocked) {
      await this.drain();
    }
  }
}
