import { createWriteStream, statSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { EcsEvent } from '../events/builder.js';

/** Capacity of one batch buffer (a batch is flushed from 64 KiB; lines up to ~64 Ki characters fit). */
const BATCH_BYTES = 1 << 18;
/** Encoded-batch buffers kept for reuse (back-pressure keeps one or two writes in flight). */
const SPARE_MAX = 4;

/**
 * The first of `inputs` that is the same file as `out` (same device and inode: another name, a
 * hard link or a symbolic link of it), else undefined. Opening `--out` truncates it, so an output
 * path that names the capture, a key file or the limits file would destroy that input before it
 * is read (`replay x.pcap --out x.pcap` left an empty x.pcap).
 */
export function outputIsInput(out: string, inputs: (string | undefined)[]): string | undefined {
  let o;
  try {
    o = statSync(out);
  } catch {
    return undefined; // a new file: no input
  }
  for (const path of inputs) {
    if (path === undefined || path === '-') continue;
    try {
      const st = statSync(path);
      if (st.dev === o.dev && st.ino === o.ino && st.isFile()) return path;
    } catch {
      /* unreadable inputs are reported where they are read */
    }
  }
  return undefined;
}

/**
 * The events' destination failed (disk full, a closed pipe, an I/O error): one line naming it, for
 * the CLI's exit 2 (`code` is the system error's, so EPIPE, the reader going away, stays quiet).
 */
export class OutputError extends Error {
  readonly code: string | undefined;
  constructor(where: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException)?.code;
    super(`cannot write events to ${where}: ${code ?? (cause as Error)?.message ?? String(cause)}`);
    this.code = code;
  }
}

/**
 * Newline-delimited JSON event writer with back-pressure: events are encoded into one byte
 * buffer per flush (~64 KiB) and the producer awaits `drained()` between input chunks, so a slow consumer of
 * stdout slows the replay instead of growing memory.
 */
export class NdjsonWriter {
  /**
   * The batch being filled: events are encoded into it as UTF-8 as they come, and it goes to the
   * stream at 64 KiB. Handing the stream one joined string per batch made it allocate a fresh
   * ~64 KB buffer each time (plus a UTF-8 length scan and the first touch of new memory), besides
   * the join's copy and a '\n'-appended string per event: ~4 % of a sessions-16k replay's CPU.
   */
  private batch: Buffer | undefined;
  private batchLen = 0;
  /** Batch buffers back from the stream once written, for reuse. */
  private spare: Buffer[] = [];
  private blocked = false;
  private failed: Error | undefined;
  count = 0;

  private constructor(
    private readonly stream: Writable,
    private readonly ownsStream: boolean,
    /** For the error line: 'stdout' or the file's path. */
    private readonly where: string,
  ) {
    stream.on('error', (e: Error) => this.fail(e));
  }

  static toStdout(): NdjsonWriter {
    return new NdjsonWriter(process.stdout, false, 'stdout');
  }

  /** Opens FILE for writing; resolves once it is open (rejects with the fs error otherwise). */
  static async toFile(path: string): Promise<NdjsonWriter> {
    const ws: WriteStream = createWriteStream(path);
    await Promise.race([once(ws, 'open'), once(ws, 'error').then(([e]) => Promise.reject(e))]);
    return new NdjsonWriter(ws, true, path);
  }

  /**
   * Remembers the first failure of the destination; `drained()` and `close()` throw it. A write
   * never throws: stdout to a file fails inside write() (a synchronous stream), and with
   * `--workers N` writes happen in an engine thread's message handler, where a throw would be an
   * uncaught exception with its stack.
   */
  private fail(e: unknown): void {
    this.failed ??= new OutputError(this.where, e);
  }

  private put(data: string | Buffer, done?: () => void): void {
    if (this.failed) return;
    try {
      // the callback sees a file's write error (ENOSPC, EIO) before the stream's end does
      const ok = this.stream.write(data, (e) => {
        if (e) this.fail(e);
        else done?.();
      });
      if (!ok) this.blocked = true;
    } catch (e) {
      this.fail(e);
    }
  }

  write(ev: EcsEvent): void {
    const json = JSON.stringify(ev);
    this.count++;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: a line that surely fits goes straight
    // into the batch's bytes (no '\n'-appended copy, no join); a huge one goes as a string.
    const most = json.length * 3 + 1;
    if (most > BATCH_BYTES - this.batchLen) {
      this.flush();
      if (most > BATCH_BYTES) {
        this.put(json + '\n');
        return;
      }
    }
    const b = (this.batch ??= this.spare.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES));
    const end = this.batchLen + b.write(json, this.batchLen);
    b[end] = 0x0a;
    this.batchLen = end + 1;
    if (this.batchLen >= 1 << 16) this.flush();
  }

  /** Pre-serialised NDJSON text (from a worker thread) holding `events` lines. */
  writeRaw(text: string, events: number): void {
    this.flush();
    this.count += events;
    this.put(text);
  }

  flush(): void {
    const b = this.batch;
    if (b === undefined || this.batchLen === 0) return;
    this.put(b.subarray(0, this.batchLen), () => {
      if (this.spare.length < SPARE_MAX) this.spare.push(b);
    });
    this.batch = undefined;
    this.batchLen = 0;
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
    // 'error' ends the wait too: a destination that fails while full never drains
    if (this.stream.writableNeedDrain) await Promise.race([once(this.stream, 'drain'), once(this.stream, 'error')]).catch(() => undefined);
    this.blocked = false;
    if (this.failed) throw this.failed;
  }

  async close(): Promise<void> {
    this.flush();
    if (this.failed) throw this.failed;
    if (this.ownsStream) {
      await new Promise<void>((resolve) => {
        try {
          this.stream.end((e?: Error | null) => {
            if (e) this.fail(e);
            resolve();
          });
        } catch (e) {
          this.fail(e);
          resolve();
        }
      });
    } else if (this.blocked) {
      await this.drain();
    }
    if (this.failed) throw this.failed;
  }
}
