/**
 * The progress line of a long replay: bytes read (and percent of the file), packets/s, Gbps,
 * sessions decrypted and the time left, redrawn in place on stderr. Only for a terminal: the CLI
 * creates one when stderr is a TTY and --quiet is not given, so CI logs and redirected stderr
 * stay clean (the one-line summary at the end is all they get). Rates are averages since the
 * start, which is what an ETA needs; stdin has no size, so it shows no percent or ETA.
 */
import type { CaptureReader } from '../capture/index.js';

export interface ProgressSample {
  /** Capture bytes read so far. */
  bytes: number;
  packets: number;
  /** Sessions decrypted so far; undefined when not known (shards in other processes). */
  decrypted: number | undefined;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

export function formatBytes(n: number): string {
  let u = 0;
  let v = n;
  while (v >= 1000 && u < UNITS.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

function formatDuration(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * One progress line from a sample, `elapsedSec` after the start, for an input of `total` bytes
 * (undefined: stdin or a pipe).
 */
export function progressLine(s: ProgressSample, elapsedSec: number, total: number | undefined): string {
  const parts: string[] = [];
  if (total !== undefined && total > 0) {
    const pct = Math.min(100, (s.bytes / total) * 100);
    parts.push(`${formatBytes(s.bytes)} of ${formatBytes(total)} (${pct.toFixed(1)} %)`);
  } else {
    parts.push(`${formatBytes(s.bytes)} read`);
  }
  const t = elapsedSec > 0 ? elapsedSec : 0;
  const pps = t > 0 ? Math.round(s.packets / t) : 0;
  const gbps = t > 0 ? (s.bytes * 8) / t / 1e9 : 0;
  parts.push(`${pps.toLocaleString('en-US')} packets/s`, `${gbps.toFixed(2)} Gbps`);
  if (s.decrypted !== undefined) parts.push(`${s.decrypted.toLocaleString('en-US')} sessions decrypted`);
  if (total !== undefined && total > 0 && s.bytes > 0 && t > 0) {
    parts.push(`ETA ${formatDuration(((total - Math.min(total, s.bytes)) * t) / s.bytes)}`);
  }
  return `tlsdecrypt: ${parts.join(', ')}`;
}

/** Redraws the progress line every `intervalMs` until stopped; `stop()` erases it. */
export class ProgressDisplay {
  private timer: NodeJS.Timeout | undefined;
  private sample: (() => ProgressSample) | undefined;
  private readonly started = Date.now();
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    /** File size, or undefined for stdin / pipes. */
    private readonly total: number | undefined,
    private readonly intervalMs = 500,
  ) {}

  /**
   * Follows the reader of the input (its bytes and packets) and the sessions decrypted (when this
   * process knows them). Called by replay once it has built its reader.
   */
  watch(reader: CaptureReader, decrypted?: () => number): void {
    this.sample = () => ({ bytes: reader.bytes, packets: reader.packets, decrypted: decrypted?.() });
    this.draw();
    this.timer ??= setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  private draw(): void {
    if (!this.sample) return;
    const line = progressLine(this.sample(), (Date.now() - this.started) / 1000, this.total);
    const cols = this.out.columns;
    // Never wider than the terminal: a wrapped line could not be redrawn in place.
    const fitted = cols && line.length >= cols ? line.slice(0, cols - 1) : line;
    this.out.write(`\r${fitted}\x1b[K`);
    this.drawn = true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
