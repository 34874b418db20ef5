/**
 * The one line reader of the line-oriented protocols (SMTP RFC 5321 Section 2.3.8, FTP RFC 959
 * Section 4.2): an incremental CRLF/LF splitter that both sessions use. Bounded: a line longer than `maxLine` is delivered truncated to
 * `maxLine` bytes with `truncated = true` and its full length, and nothing beyond `maxLine` is
 * ever buffered. A bare LF also ends a line (as most servers accept it); the CR is stripped.
 * The line handed to the callback is a view into the reader's buffer, valid only during the call.
 */
export type LineCallback = (line: Buffer, fullLength: number, truncated: boolean) => void;

export class LineReader {
  private buf: Buffer;
  private len = 0;
  /** Bytes of the current line beyond what is buffered (line longer than maxLine). */
  private overflow = 0;

  constructor(readonly maxLine: number) {
    this.buf = Buffer.allocUnsafe(Math.min(256, maxLine + 1));
  }

  /** True when a partial line is buffered (no LF seen yet). */
  get partial(): boolean {
    return this.len > 0 || this.overflow > 0;
  }

  /** Forget the partial line (after a gap). */
  reset(): void {
    this.len = 0;
    this.overflow = 0;
  }

  /**
   * Splits `data` into lines; `onLine` may return `false` to stop: push then returns the offset
   * in `data` just after the line that stopped it (the rest is the caller's), else data.length.
   */
  push(data: Buffer, onLine: (line: Buffer, fullLength: number, truncated: boolean) => boolean | void): number {
    let pos = 0;
    while (pos < data.length) {
      const lf = data.indexOf(0x0a, pos);
      const end = lf < 0 ? data.length : lf;
      this.append(data, pos, end);
      if (lf < 0) return data.length;
      pos = lf + 1;
      let n = this.len;
      let full = this.len + this.overflow;
      // strip the CR of CRLF (it may be the last buffered byte or lost in the overflow)
      if (this.overflow === 0 && n > 0 && this.buf[n - 1] === 0x0d) {
        n--;
        full--;
      } else if (this.overflow > 0) {
        full--; // counted CR in the overflow part (approximation: lengths are informative)
      }
      const truncated = this.overflow > 0 || n > this.maxLine;
      // a view into the reader's buffer: valid only during the callback (no per-line copy)
      const line = this.buf.subarray(0, Math.min(n, this.maxLine));
      this.len = 0;
      this.overflow = 0;
      if (onLine(line, full, truncated) === false) return pos;
    }
    return pos;
  }

  private append(src: Buffer, from: number, to: number): void {
    const want = to - from;
    if (want <= 0) return;
    const room = this.maxLine + 1 - this.len; // keep one extra byte to see a trailing CR
    const take = Math.min(room, want);
    if (take > 0) {
      if (this.len + take > this.buf.length) {
        const nb = Buffer.allocUnsafe(Math.min(this.maxLine + 1, Math.max(this.buf.length * 2, this.len + take)));
        this.buf.copy(nb, 0, 0, this.len);
        this.buf = nb;
      }
      src.copy(this.buf, this.len, from, from + take);
      this.len += take;
    }
    this.overflow += want - take;
  }
}

/**
 * A protocol line as Latin-1 text (one character per byte, so it can be parsed and turned back
 * into the same bytes). Control characters are left in: the event builder replaces them by the
 * one rule of events/text.ts, after the text has been decoded (UTF-8 or Latin-1, see textOf).
 */
export function lineText(line: Buffer): string {
  return line.toString('latin1');
}

/** UTF-8 if valid, else Latin-1 (servers send either in replies and file names). */
export function textOf(b: Buffer): string {
  const s = b.toString('utf8');
  if (!s.includes('\uFFFD')) return s;
  return b.toString('latin1');
}
