/**
 * HTTP analyzers over decrypted TLS application data: picks HTTP/2 or HTTP/1 from ALPN
 * (RFC 7301; "h2" per RFC 9113 Section 3.2, "http/1.1"/"http/1.0") or, without ALPN, from the
 * first client bytes (the HTTP/2 connection preface decides h2, RFC 9113 Section 3.4).
 */
import type { AnomalySink, EndReason, EventSink, StreamSink, Timestamp } from '../../types.js';
import { Dir } from '../../types.js';
import { Http1Analyzer, KNOWN_METHODS } from './http1.js';
import { H2_PREFACE, Http2Analyzer } from './http2.js';
import { resolveHttpOptions, type HttpOptions } from './options.js';

export type { HttpOptions } from './options.js';
export { DEFAULT_HTTP_OPTIONS } from './options.js';

export interface HttpAnalyzer extends StreamSink {
  onClose(ts: Timestamp): void;
}

/** Longest method in KNOWN_METHODS plus the space. */
const MAX_METHOD_PREFIX = 12;

/**
 * Content sniffing for when ALPN is absent: 'h2' for the connection preface, 'http1' for an
 * HTTP/1.x request line (known method + space), undefined if unsure or not HTTP.
 */
export function detectHttp(firstClientBytes: Buffer): 'h2' | 'http1' | undefined {
  const b = firstClientBytes;
  if (b.length >= H2_PREFACE.length && b.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) return 'h2';
  const n = Math.min(b.length, MAX_METHOD_PREFIX);
  for (let i = 1; i < n; i++) {
    const c = b[i];
    if (c === 0x20) return KNOWN_METHODS.has(b.toString('latin1', 0, i)) ? 'http1' : undefined;
    if (c < 0x41 || c > 0x5a) return undefined;
  }
  return undefined;
}

type Kind = 'h1' | 'h2';

/** Without ALPN: client bytes kept until the kind is known (at most the preface length). */
const SNIFF_BYTES = H2_PREFACE.length;

class Dispatcher implements HttpAnalyzer {
  private impl: Http1Analyzer | Http2Analyzer | undefined;
  private undecided = true;
  private sniff: Buffer | undefined;
  private heldServerBytes = 0;
  private readonly held: { dir: Dir; data: Buffer; ts: Timestamp }[] = [];

  constructor(
    kind: Kind | undefined,
    private readonly events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: HttpOptions,
  ) {
    if (kind) this.start(kind);
  }

  private start(kind: Kind): void {
    this.undecided = false;
    this.impl = kind === 'h2'
      ? new Http2Analyzer(this.events, this.anomalies, this.opts)
      : new Http1Analyzer(this.events, this.anomalies, this.opts);
  }

  /** Decides from the client bytes seen so far; returns false while more bytes are needed. */
  private decide(final: boolean): boolean {
    const b = this.sniff ?? Buffer.alloc(0);
    const isPrefacePrefix = H2_PREFACE.subarray(0, Math.min(b.length, H2_PREFACE.length)).equals(b.subarray(0, H2_PREFACE.length));
    if (isPrefacePrefix && b.length < H2_PREFACE.length && !final) return false;
    const d = detectHttp(b);
    if (d === 'h2') this.start('h2');
    else if (d === 'http1') this.start('h1');
    else if (!final && b.length < MAX_METHOD_PREFIX && /^[A-Z]*$/.test(b.toString('latin1'))) return false;
    else {
      this.undecided = false;
      this.anomalies.anomaly('http_not_detected');
    }
    return true;
  }

  private replay(): void {
    const impl = this.impl;
    const held = this.held.splice(0);
    this.sniff = undefined;
    if (!impl) return;
    for (const h of held) impl.onData(h.dir, h.data, h.ts);
  }

  /**
   * Last line of defence: input never makes the analyzer throw (fuzzed), but should a bug do so,
   * the connection's analysis stops and the failure is counted instead of taking the flow (and
   * the engine) down. The error text is not passed on: it could quote payload bytes.
   */
  private failed(): void {
    this.impl = undefined;
    this.undecided = false;
    this.held.length = 0;
    this.anomalies.anomaly('http_internal_error');
  }

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    try {
      this.data(dir, data, ts);
    } catch {
      this.failed();
    }
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    try {
      this.gap(dir, length, ts);
    } catch {
      this.failed();
    }
  }

  /** AppStream.skippable: the HTTP/1 parser's count-only bytes; none while the kind is undecided. */
  skippable(dir: Dir): number {
    return !this.undecided && this.impl instanceof Http1Analyzer ? this.impl.skippable(dir) : 0;
  }

  onSkipped(dir: Dir, length: number, ts: Timestamp): void {
    try {
      if (this.impl instanceof Http1Analyzer) this.impl.onSkipped(dir, length, ts);
    } catch {
      this.failed();
    }
  }

  onEnd(dir: Dir, reason: EndReason, ts: Timestamp): void {
    try {
      this.end(dir, reason, ts);
    } catch {
      this.failed();
    }
  }

  onClose(ts: Timestamp): void {
    try {
      this.close(ts);
    } catch {
      this.failed();
    }
  }

  private data(dir: Dir, data: Buffer, ts: Timestamp): void {
    if (!this.undecided) {
      this.impl?.onData(dir, data, ts);
      return;
    }
    // Hold copies until the first client bytes decide (at most SNIFF_BYTES of client data).
    this.held.push({ dir, data: Buffer.from(data), ts });
    if (dir === Dir.ToServer) {
      const prev = this.sniff ?? Buffer.alloc(0);
      this.sniff = Buffer.concat([prev, data.subarray(0, Math.max(0, SNIFF_BYTES - prev.length))]);
      if (this.decide(false)) this.replay();
    } else {
      // Server bytes before any client byte: not HTTP; held only up to the header cap.
      this.heldServerBytes += data.length;
      if (this.heldServerBytes > this.opts.maxHeaderBytes) {
        this.undecided = false;
        this.held.length = 0;
        this.anomalies.anomaly('http_not_detected');
      }
    }
  }

  private gap(dir: Dir, length: number, ts: Timestamp): void {
    if (this.undecided) {
      // Cannot sniff across a hole at the start: give up on this connection.
      this.undecided = false;
      this.held.length = 0;
      this.anomalies.anomaly('http_not_detected');
      return;
    }
    this.impl?.onGap(dir, length, ts);
  }

  private end(dir: Dir, reason: EndReason, ts: Timestamp): void {
    if (this.undecided && this.sniff) {
      this.decide(true);
      this.replay();
    }
    this.impl?.onEnd(dir, reason, ts);
  }

  private close(ts: Timestamp): void {
    if (this.undecided && this.sniff) {
      this.decide(true);
      this.replay();
    }
    this.undecided = false;
    this.impl?.onClose(ts);
  }
}

/**
 * Creates the HTTP analyzer for one decrypted connection. Never throws on input: malformed data is
 * counted through `anomalies`.
 */
export function createHttpAnalyzer(
  alpn: string | undefined,
  events: EventSink,
  anomalies: AnomalySink,
  opts?: Partial<HttpOptions>,
): HttpAnalyzer {
  const o = resolveHttpOptions(opts);
  const a = alpn?.toLowerCase();
  const kind: Kind | undefined = a === 'h2' ? 'h2' : a === 'http/1.1' || a === 'http/1.0' || a === 'http/0.9' ? 'h1' : undefined;
  return new Dispatcher(kind, events, anomalies, o);
}
