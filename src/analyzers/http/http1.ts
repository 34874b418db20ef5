/**
 * HTTP/1.x analyzer over one decrypted connection (RFC 9112): request and response parsers, one per
 * direction, paired FIFO (pipelining, RFC 9112 Section 9.3.2). Bodies are counted and a bounded
 * prefix captured; nothing but partial lines is ever buffered.
 */
import type { AnomalySink, EventSink, Timestamp } from '../../types.js';
import { Dir } from '../../types.js';
import type { EndReason } from '../../types.js';
import { BodyCollector, mimeOf } from './body.js';
import { exchangeFields, HeaderMap, type Exchange } from './exchange.js';
import type { HttpOptions } from './options.js';

/** Methods recognised when sniffing or resynchronising (RFC 9110 Section 9, WebDAV RFC 4918). */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH',
  'MKCALENDAR', 'ACL', 'BIND', 'UNBIND', 'REBIND', 'MERGE', 'CHECKOUT', 'LINK', 'UNLINK',
]);

/** A line buffer larger than this is released after the message that needed it. */
const LINE_BUFFER_KEEP = 8192;

/** Bytes looked at from a line start to decide whether a message may start there. */
const SCAN_BYTES = 12;

const enum S {
  Start,
  Headers,
  BodyLen,
  ChunkSize,
  ChunkData,
  ChunkCrlf,
  Trailers,
  BodyEof,
  Opaque,
  /** Request side after CONNECT: hold until the response says whether a tunnel follows. */
  Hold,
  ResyncScan,
  ResyncSkip,
}

const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) +(\S+) +HTTP\/(\d)\.(\d)$/;
const STATUS_LINE = /^HTTP\/(\d)\.(\d) +(\d{3})(?:[ \t].*)?$/;

/** Content-Length per RFC 9112 Section 6.3 item 5: identical values in a list are tolerated. */
function parseContentLength(v: string): number {
  let n = -1;
  for (const part of v.split(',')) {
    const t = part.trim();
    if (!/^\d{1,15}$/.test(t)) return -1;
    const x = Number(t);
    if (n >= 0 && x !== n) return -1;
    n = x;
  }
  return n;
}

/** True when the final transfer coding is chunked (RFC 9112 Section 6.1). */
function isChunked(te: string): boolean {
  const parts = te.split(',');
  return parts[parts.length - 1].trim().toLowerCase() === 'chunked';
}

class Side {
  state: S = S.Start;
  line: Buffer;
  lineLen = 0;
  /** Header block octets so far (start line included), against maxHeaderBytes. */
  headerBytes = 0;
  remaining = 0;
  headers: HeaderMap | undefined;
  /** Trailer fields of the chunked message being parsed. */
  trailers: HeaderMap | undefined;
  pendName: string | undefined;
  pendValue = '';
  body: BodyCollector | undefined;
  ex: Exchange | undefined;
  /** Response side: status and version of the message being parsed. */
  status = 0;
  version: '1.0' | '1.1' = '1.1';
  ended = false;
  /**
   * A gap fell inside this message's body. Gap lengths from the TLS layer count lost ciphertext
   * (record headers and tags included), so where the body ends is only estimated: after it the
   * parser looks for a message start (resync) instead of taking the next bytes as one.
   */
  bodyGap = false;
  msgTs: Timestamp = { sec: 0, nsec: 0 };
  constructor(readonly isRequest: boolean) {
    this.line = Buffer.allocUnsafe(256);
  }
}

export class Http1Analyzer {
  private readonly req = new Side(true);
  private readonly resp = new Side(false);
  /** Requests seen and not yet answered by a final response, oldest first. */
  private readonly queue: Exchange[] = [];

  constructor(
    private readonly events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: HttpOptions,
  ) {}

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    const side = dir === Dir.ToServer ? this.req : this.resp;
    if (side.ended) return;
    this.parse(side, data, ts);
  }

  /**
   * AppStream.skippable: the next bytes of `dir` that parse() would only count: the rest of a
   * body (Content-Length) or chunk whose collector keeps nothing more, a body to the end of the
   * connection likewise, and everything on a side that ignores its bytes.
   */
  skippable(dir: Dir): number {
    const side = dir === Dir.ToServer ? this.req : this.resp;
    if (side.ended) return Infinity;
    switch (side.state) {
      case S.Opaque:
      case S.Hold:
        return Infinity;
      case S.BodyEof:
        return side.body === undefined || side.body.countsOnly ? Infinity : 0;
      case S.BodyLen:
      case S.ChunkData:
        return side.body === undefined || side.body.countsOnly ? side.remaining : 0;
      default:
        return 0;
    }
  }

  /** AppStream.onSkipped: `length` bytes (at most skippable(dir)) as parse() would take them, unread. */
  onSkipped(dir: Dir, length: number, _ts: Timestamp): void {
    const side = dir === Dir.ToServer ? this.req : this.resp;
    if (side.ended || length <= 0) return;
    switch (side.state) {
      case S.BodyEof:
        side.body?.count(length);
        return;
      case S.BodyLen:
      case S.ChunkData: {
        const take = Math.min(side.remaining, length);
        side.body?.count(take);
        side.remaining -= take;
        if (side.remaining === 0) {
          if (side.state === S.BodyLen) this.messageDone(side);
          else side.state = S.ChunkCrlf;
        }
        return;
      }
      default:
        return; // Opaque / Hold: ignored as parse() ignores them
    }
  }

  onGap(dir: Dir, length: number, ts: Timestamp): void {
    const side = dir === Dir.ToServer ? this.req : this.resp;
    if (side.ended || length <= 0) return;
    switch (side.state) {
      case S.Opaque:
      case S.Hold:
        return;
      case S.BodyEof:
        side.body?.gap(length);
        return;
      case S.BodyLen:
      case S.ChunkData:
        if (length <= side.remaining) {
          side.body?.gap(length);
          side.remaining -= length;
          side.bodyGap = true;
          if (side.remaining === 0) {
            if (side.state === S.BodyLen) this.messageDone(side);
            else side.state = S.ChunkCrlf;
          }
          return;
        }
        side.body?.gap(side.remaining);
        break;
      default:
        break;
    }
    // The gap swallowed framing: the message is incomplete and parsing resumes at a plausible start.
    this.anomalies.anomaly('http_gap_resync');
    if (side.body) side.body.incomplete = true;
    this.abortMessage(side, ts);
    side.state = S.ResyncScan;
    side.lineLen = 0;
  }

  onEnd(dir: Dir, _reason: EndReason, ts: Timestamp): void {
    const side = dir === Dir.ToServer ? this.req : this.resp;
    if (side.ended) return;
    this.finishSide(side, ts);
    side.ended = true;
    if (!side.isRequest) {
      // The server is done: nothing will answer the requests still queued.
      while (this.queue.length > 0) this.emit(this.queue.shift()!);
    }
  }

  onClose(ts: Timestamp): void {
    if (!this.req.ended) this.onEnd(Dir.ToServer, 'eof', ts);
    if (!this.resp.ended) this.onEnd(Dir.ToClient, 'eof', ts);
    while (this.queue.length > 0) this.emit(this.queue.shift()!);
  }

  /** Stream ended in this direction: a read-until-close body is complete, anything else is cut. */
  private finishSide(side: Side, ts: Timestamp): void {
    if (side.state === S.BodyEof) {
      this.messageDone(side);
      return;
    }
    if (side.state === S.Start && side.lineLen > 0) {
      this.anomalies.anomaly('http_truncated_message'); // a start line that never ended
      side.lineLen = 0;
      return;
    }
    if (side.ex && (side.state === S.Headers || side.state === S.BodyLen || side.state === S.ChunkSize ||
      side.state === S.ChunkData || side.state === S.ChunkCrlf || side.state === S.Trailers)) {
      this.anomalies.anomaly('http_truncated_message');
      if (side.body) side.body.incomplete = true;
      this.abortMessage(side, ts);
    }
  }

  private emit(ex: Exchange): void {
    if (ex.emitted) return;
    ex.emitted = true;
    this.events.emit('http', exchangeFields(ex, this.opts), ex.ts, true);
  }

  /** Drops the message being parsed; a response's exchange is emitted with what is known. */
  private abortMessage(side: Side, _ts: Timestamp): void {
    if (!side.isRequest && side.ex) {
      const i = this.queue.indexOf(side.ex);
      if (i >= 0) this.queue.splice(i, 1);
      this.emit(side.ex);
    }
    side.ex = undefined;
    side.body = undefined;
    side.headers = undefined;
    side.pendName = undefined;
    side.headerBytes = 0;
    side.bodyGap = false;
  }

  private malformed(side: Side, ts: Timestamp, detail: string): void {
    this.anomalies.anomaly('http_malformed', detail);
    this.abortMessage(side, ts);
    side.state = S.ResyncScan;
    side.lineLen = 0;
  }

  private appendLine(side: Side, data: Buffer, start: number, end: number): boolean {
    const n = end - start;
    const need = side.lineLen + n;
    if (need + side.headerBytes > this.opts.maxHeaderBytes) return false;
    if (need > side.line.length) {
      const nb = Buffer.allocUnsafe(Math.min(Math.max(need, side.line.length * 2), this.opts.maxHeaderBytes + 1));
      side.line.copy(nb, 0, 0, side.lineLen);
      side.line = nb;
    }
    data.copy(side.line, side.lineLen, start, end);
    side.lineLen = need;
    return true;
  }

  private parse(side: Side, data: Buffer, ts: Timestamp): void {
    let i = 0;
    const end = data.length;
    while (i < end && !side.ended) {
      switch (side.state) {
        case S.Start:
        case S.Headers:
        case S.ChunkSize:
        case S.ChunkCrlf:
        case S.Trailers: {
          if (side.state === S.Start && side.lineLen === 0) side.msgTs = ts;
          const nl = data.indexOf(0x0a, i);
          if (nl >= 0 && side.lineLen === 0 && nl - i + side.headerBytes <= this.opts.maxHeaderBytes) {
            // Common case: the whole line is in this chunk; decode it in place, no copy.
            let len = nl - i;
            if (len > 0 && data[nl - 1] === 0x0d) len--;
            const line = data.toString('utf8', i, i + len);
            i = nl + 1;
            this.onLine(side, line, len, ts);
            break;
          }
          const stop = nl < 0 ? end : nl;
          if (!this.appendLine(side, data, i, stop)) {
            this.anomalies.anomaly('http_header_too_large');
            this.abortMessage(side, ts);
            side.lineLen = 0;
            side.state = S.ResyncSkip;
            continue; // re-scan from i, skipping to the next line
          }
          if (nl < 0) {
            i = end;
            break;
          }
          i = nl + 1;
          let len = side.lineLen;
          if (len > 0 && side.line[len - 1] === 0x0d) len--;
          side.lineLen = 0;
          this.onLine(side, side.line.toString('utf8', 0, len), len, ts);
          break;
        }
        case S.BodyLen:
        case S.ChunkData: {
          const take = Math.min(side.remaining, end - i);
          side.body?.write(data, i, i + take);
          side.remaining -= take;
          i += take;
          if (side.remaining === 0) {
            if (side.state === S.BodyLen) this.messageDone(side);
            else side.state = S.ChunkCrlf;
          }
          break;
        }
        case S.BodyEof:
          side.body?.write(data, i, end);
          i = end;
          break;
        case S.Opaque:
        case S.Hold:
          i = end;
          break;
        case S.ResyncSkip: {
          const nl = data.indexOf(0x0a, i);
          if (nl < 0) {
            i = end;
          } else {
            i = nl + 1;
            side.state = S.ResyncScan;
            side.lineLen = 0;
          }
          break;
        }
        case S.ResyncScan: {
          if (side.lineLen === 0) side.msgTs = ts;
          // Collect up to SCAN_BYTES of the line start, then decide.
          while (i < end && side.lineLen < SCAN_BYTES && data[i] !== 0x0a) side.line[side.lineLen++] = data[i++];
          if (i >= end) break;
          const complete = data[i] === 0x0a;
          const head = side.line.toString('latin1', 0, side.lineLen);
          if (this.plausible(side, head)) {
            side.state = S.Start; // the buffered bytes stay in the line buffer
          } else if (complete) {
            i++;
            side.lineLen = 0;
          } else {
            side.lineLen = 0;
            side.state = S.ResyncSkip;
          }
          break;
        }
      }
    }
  }

  private plausible(side: Side, head: string): boolean {
    // After a gap a response may start only if a request waits for one: a status line found in
    // body bytes (a downloaded transcript, a log) must not become an exchange of its own. When the
    // request was lost too, the response is lost with it (the gap is what gets reported).
    if (!side.isRequest) return head.startsWith('HTTP/1.') && this.queue.length > 0;
    const sp = head.indexOf(' ');
    return sp > 0 && KNOWN_METHODS.has(head.slice(0, sp));
  }

  private onLine(side: Side, line: string, rawLen: number, ts: Timestamp): void {
    switch (side.state) {
      case S.Start:
        if (line.length === 0) return; // RFC 9112 Section 2.2: ignore empty lines before a start line
        this.startLine(side, line, rawLen, ts);
        return;
      case S.Headers:
        side.headerBytes += rawLen + 2;
        if (line.length === 0) {
          this.flushHeader(side);
          this.headersDone(side, ts);
          return;
        }
        this.headerLine(side, line, ts);
        return;
      case S.ChunkSize: {
        // RFC 9112 Section 7.1: chunk-size [ chunk-ext ] CRLF
        const semi = line.indexOf(';');
        const hex = (semi >= 0 ? line.slice(0, semi) : line).trim();
        if (!/^[0-9a-fA-F]{1,13}$/.test(hex)) {
          this.malformed(side, ts, 'chunk_size');
          return;
        }
        const n = parseInt(hex, 16);
        if (n === 0) {
          side.state = S.Trailers;
          side.headerBytes = 0;
        } else {
          side.remaining = n;
          side.state = S.ChunkData;
        }
        return;
      }
      case S.ChunkCrlf:
        if (line.length !== 0) {
          this.malformed(side, ts, 'chunk_data_end');
          return;
        }
        side.state = S.ChunkSize;
        return;
      case S.Trailers:
        // RFC 9112 Section 7.1.2: trailer fields, then an empty line. Kept like header fields
        // (a line without a colon is counted and skipped; obs-fold is not continued here).
        side.headerBytes += rawLen + 2;
        if (line.length === 0) {
          if (side.trailers && side.ex) {
            if (side.isRequest) side.ex.reqTrailers = side.trailers;
            else side.ex.respTrailers = side.trailers;
          }
          this.messageDone(side);
          return;
        }
        {
          const colon = line.indexOf(':');
          if (colon <= 0) this.anomalies.anomaly('http_malformed', 'trailer_line');
          else (side.trailers ??= new HeaderMap()).add(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
        }
        return;
      default:
        return;
    }
  }

  private startLine(side: Side, line: string, rawLen: number, ts: Timestamp): void {
    side.headerBytes = rawLen + 2;
    side.headers = new HeaderMap();
    side.pendName = undefined;
    if (side.isRequest) {
      const m = REQUEST_LINE.exec(line);
      if (!m || m[3] !== '1') {
        this.malformed(side, ts, 'request_line');
        return;
      }
      if (this.queue.length >= this.opts.maxPendingExchanges) {
        this.anomalies.anomaly('http_too_many_pending');
        this.emit(this.queue.shift()!);
      }
      const ex: Exchange = {
        ts: side.msgTs,
        version: m[4] === '0' ? '1.0' : '1.1',
        method: m[1],
        target: m[2],
        reqHeaders: side.headers,
      };
      side.ex = ex;
      this.queue.push(ex);
    } else {
      const m = STATUS_LINE.exec(line);
      if (!m || m[1] !== '1') {
        this.malformed(side, ts, 'status_line');
        return;
      }
      side.status = Number(m[3]);
      side.version = m[2] === '0' ? '1.0' : '1.1';
      let ex = this.queue[0];
      if (ex === undefined) {
        this.anomalies.anomaly('http_response_without_request');
        ex = { ts: side.msgTs, version: side.version };
        this.queue.push(ex);
      }
      side.ex = ex;
    }
    side.state = S.Headers;
  }

  private flushHeader(side: Side): void {
    if (side.pendName !== undefined) {
      side.headers!.add(side.pendName, side.pendValue.trim());
      side.pendName = undefined;
    }
  }

  private headerLine(side: Side, line: string, ts: Timestamp): void {
    const c0 = line.charCodeAt(0);
    if (c0 === 0x20 || c0 === 0x09) {
      // RFC 9112 Section 5.2: obsolete line folding; replace with a space.
      if (side.pendName === undefined) {
        this.malformed(side, ts, 'header_fold');
        return;
      }
      side.pendValue += ' ' + line.trim();
      return;
    }
    this.flushHeader(side);
    const colon = line.indexOf(':');
    if (colon <= 0) {
      // Not a field line: counted and skipped, the rest of the header section is still usable.
      this.anomalies.anomaly('http_malformed', 'header_line');
      return;
    }
    side.pendName = line.slice(0, colon).trim();
    side.pendValue = line.slice(colon + 1);
  }

  private headersDone(side: Side, ts: Timestamp): void {
    const h = side.headers!;
    const ex = side.ex!;
    const te = h.get('transfer-encoding');
    const cl = h.get('content-length');
    if (te !== undefined && cl !== undefined) {
      // RFC 9112 Section 6.3 item 3: Transfer-Encoding wins, but the pair is a request smuggling
      // indicator worth counting.
      this.anomalies.anomaly('http_te_and_content_length');
    }
    const newBody = (): BodyCollector =>
      new BodyCollector(mimeOf(h.get('content-type')), h.get('content-encoding'), this.opts, this.anomalies);
    if (side.isRequest) {
      ex.reqBody = newBody();
      side.body = ex.reqBody;
      if (te !== undefined) {
        if (!isChunked(te)) {
          this.malformed(side, ts, 'request_transfer_encoding');
          return;
        }
        side.state = S.ChunkSize;
      } else if (cl !== undefined) {
        const n = parseContentLength(cl);
        if (n < 0) {
          this.malformed(side, ts, 'content_length');
          return;
        }
        side.remaining = n;
        if (n === 0) this.messageDone(side);
        else side.state = S.BodyLen;
      } else {
        this.messageDone(side);
      }
      if (ex.method === 'CONNECT' && side.state === S.Start) side.state = S.Hold;
      return;
    }
    // Response (RFC 9112 Section 6.3).
    const status = side.status;
    if (status >= 100 && status < 200 && status !== 101) {
      // Interim response (e.g. 100 Continue): not the final answer; the exchange stays open.
      side.ex = undefined;
      side.headers = undefined;
      side.state = S.Start;
      return;
    }
    if (this.queue[0] === ex) this.queue.shift();
    ex.status = status;
    ex.respHeaders = h;
    if (ex.method === undefined) ex.version = side.version;
    if (status === 101 || (ex.method === 'CONNECT' && status >= 200 && status < 300)) {
      // Switching protocols / tunnel: the rest of the connection is not HTTP/1 (RFC 9110 15.2.2, 9.3.6).
      this.anomalies.anomaly('http_tunnel_opaque', status === 101 ? (h.get('upgrade') ?? 'upgrade') : 'connect');
      ex.respBody = newBody();
      this.emit(ex);
      side.ex = undefined;
      side.state = S.Opaque;
      this.req.state = S.Opaque;
      return;
    }
    if (this.req.state === S.Hold && ex.method === 'CONNECT') {
      this.req.state = S.Start;
      this.req.lineLen = 0;
    }
    ex.respBody = newBody();
    side.body = ex.respBody;
    if (ex.method === 'HEAD' || status === 204 || status === 304) {
      this.messageDone(side);
    } else if (te !== undefined) {
      if (isChunked(te)) side.state = S.ChunkSize;
      else side.state = S.BodyEof;
    } else if (cl !== undefined) {
      const n = parseContentLength(cl);
      if (n < 0) {
        ex.respBody = undefined; // body length unknown
        this.malformed(side, ts, 'content_length');
        return;
      }
      side.remaining = n;
      if (n === 0) this.messageDone(side);
      else side.state = S.BodyLen;
    } else {
      side.state = S.BodyEof;
    }
  }

  private messageDone(side: Side): void {
    const ex = side.ex;
    side.ex = undefined;
    side.body = undefined;
    side.headers = undefined;
    side.trailers = undefined;
    side.headerBytes = 0;
    // After a gap in the body its end is an estimate: the next message is searched for, not assumed.
    side.state = side.bodyGap ? S.ResyncScan : S.Start;
    side.bodyGap = false;
    side.lineLen = 0;
    // Give back a line buffer that grew for one unusually long header line.
    if (side.line.length > LINE_BUFFER_KEEP) side.line = Buffer.allocUnsafe(256);
    if (!side.isRequest && ex) this.emit(ex);
  }
}

