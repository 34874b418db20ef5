import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { EcsEvent } from '../events/builder.js';

/** A batch is written once it holds this many bytes; a chunk has room for one more large line. */
const FLUSH_BYTES = 1 << 16;
const CHUNK_BYTES = 1 << 17;

/**
 * Newline-delimited JSON event writer with back-pressure: events are batched into one string
 * per flush and the producer awaits `drained()` between input chunks, so a slow consumer of
 * stdout slows the replay instead of growing memory.
 */
export class NdjsonWriter {
  /** Lines are encoded straight into this chunk (UTF-8, '\n' after each); `pos` bytes used. */
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private pos = 0;
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
    // Encoded into the chunk at once: no "+ '\n'" string, no join of a batch of lines, and the
    // stream gets bytes instead of a string it would encode again (the same bytes as before).
    const line = JSON.stringify(ev);
    this.count++;
    const most = line.length * 3 + 1; // UTF-8 bytes of a UTF-16 unit: at most 3
    if (this.pos + most > this.chunk.length) {
      this.flush();
      if (most > this.chunk.length) {
        this.send(Buffer.from(line + '\n', 'utf8'));
        return;
      }
    }
    this.pos += this.chunk.write(line, this.pos, 'utf8');
    this.chunk[this.pos++] = 0x0a;
    if (this.pos >= FLUSH_BYTES) this.flush();
  }

  /** Pre-serialised NDJSON text (from a worker thread) holding `events` lines. */
  writeRaw(text: string, events: number): void {
    this.flush();
    this.count += events;
    if (!this.stream.write(text)) this.blocked = true;
  }

  flush(): void {
    if (this.pos === 0) return;
    const bytes = this.chunk.subarray(0, this.pos);
    // the stream keeps the bytes until written: a fresh chunk for what follows
    this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    this.pos = 0;
    this.send(bytes);
  }

  private send(bytes: Buffer): void {
    if (!this.stream.write(bytes)) this.blocked = true;
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
