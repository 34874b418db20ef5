/**
 * Chooses the application analyzer for a decrypted stream: ALPN first, then the content of the
 * first client bytes (as Zeek's dynamic protocol detection does), else an opaque stream that
 * only counts bytes.
 */
import type { AnomalySink, AppStream, Dir, EndReason, EventSink, Timestamp } from '../types.js';
import { createHttpAnalyzer, detectHttp, type HttpOptions } from './http/index.js';
import { detectLineProtocolClient } from './smtp/detect.js';
import { SmtpSession } from './smtp/session.js';
import { FtpSession } from './ftp/session.js';

export type { AppStream } from '../types.js';

export interface AnalyzerOptions {
  http: Partial<HttpOptions>;
  /** How many client bytes to look at before deciding the stream is not a known protocol. */
  sniffBytes: number;
}

export const DEFAULT_SNIFF_BYTES = 64;

const HTTP1_ALPN = new Set(['http/1.1', 'http/1.0', 'http/0.9']);

/** What the analyzer layer reports about streams it could not attribute. */
export interface AppCounters {
  opaqueStreams: number;
}

export function createAppAnalyzer(
  alpn: string | undefined,
  events: EventSink,
  anomalies: AnomalySink,
  opts: Partial<AnalyzerOptions> = {},
): AppStream {
  if (alpn === 'h2' || (alpn !== undefined && HTTP1_ALPN.has(alpn))) {
    return createHttpAnalyzer(alpn, events, anomalies, opts.http);
  }
  return new SniffingStream(events, anomalies, opts);
}

/**
 * Buffers the first client bytes (a copy of at most `sniffBytes`), picks an analyzer by
 * content, then replays what it held. Server bytes that come first are held too.
 */
class SniffingStream implements AppStream {
  private held: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];
  private heldClient = 0;
  private target: AppStream | undefined;
  private opaque = false;
  private readonly limit: number;

  constructor(
    private readonly events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: Partial<AnalyzerOptions>,
  ) {
    this.limit = opts.sniffBytes ?? DEFAULT_SNIFF_BYTES;
  }

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (this.target) return this.target.onData(dir, data, ts);
    if (this.opaque) return;
    this.held.push({ dir, data: Buffer.from(data), ts });
    if (dir === 0) this.heldClient += data.length;
    this.decide(false);
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    if (!this.target && !this.opaque) this.decide(true);
    this.target?.onGap(dir, length, ts);
  }

  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (!this.target && !this.opaque) this.decide(true);
    this.target?.onEnd(dir, reason, ts);
  }

  onClose(ts: Timestamp): void {
    if (!this.target && !this.opaque) this.decide(true);
    this.target?.onClose(ts);
  }

  private decide(force: boolean): void {
    const client = this.held.filter((h) => h.dir === 0).map((h) => h.data);
    const first = client.length ? Buffer.concat(client).subarray(0, this.limit) : Buffer.alloc(0);
    const kind = first.length ? detectHttp(first) : undefined;
    const line = kind || !first.length ? undefined : detectLineProtocolClient(first);
    if (kind) {
      this.target = createHttpAnalyzer(kind === 'h2' ? 'h2' : 'http/1.1', this.events, this.anomalies, this.opts.http);
    } else if (line === 'smtp') {
      // SMTP/FTP over implicit TLS on a port the flow dispatcher does not know (465/990 are
      // routed there directly, with FTP data-channel tracking)
      this.target = new SmtpSession(this.events, this.anomalies, undefined, undefined, true);
    } else if (line === 'ftp') {
      this.target = new FtpSession(undefined, this.events, this.anomalies, undefined, undefined, undefined, true);
    } else if (force || this.heldClient >= this.limit) {
      this.opaque = true;
      this.anomalies.anomaly('app_protocol_unknown');
    } else {
      return;
    }
    const held = this.held;
    this.held = [];
    if (this.target) for (const h of held) this.target.onData(h.dir, h.data, h.ts);
  }
}
