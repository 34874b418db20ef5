/**
 * HTTP/2 analyzer over one decrypted connection (RFC 9113): frame layer per direction, header
 * block reassembly (HEADERS/PUSH_PROMISE + CONTINUATION), one HPACK context per direction, and
 * per-stream exchanges paired by stream id. DATA payloads are streamed into the body collectors,
 * never buffered whole; only control frames and header blocks (both capped) are copied.
 */
import type { AnomalySink, EndReason, EventSink, Timestamp } from '../../types.js';
import { Dir } from '../../types.js';
import { BodyCollector, mimeOf } from './body.js';
import { exchangeFields, HeaderMap, type Exchange } from './exchange.js';
import { HpackDecoder } from './hpack.js';
import type { HttpOptions } from './options.js';

/** RFC 9113 Section 3.4: the client connection preface. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** RFC 9113 Section 6: frame types. */
const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** RFC 9113 Section 6.5.2: SETTINGS_HEADER_TABLE_SIZE. */
const SETTINGS_HEADER_TABLE_SIZE = 0x1;

const enum R {
  Preface,
  Header,
  Data,
  Payload,
  Skip,
  Dead,
}

interface Stream {
  ex: Exchange;
  /** Final response headers seen (a later HEADERS block is a trailer section). */
  respHeaders: boolean;
  reqHeaders: boolean;
}

/** Decoded header block: pseudo-headers apart, regular fields in a HeaderMap. */
interface Block {
  pseudo: Map<string, string>;
  headers: HeaderMap;
  tooLarge: boolean;
}

class Reader {
  state: R;
  prefaceSeen = 0;
  readonly hdr = Buffer.alloc(9);
  hdrLen = 0;
  length = 0;
  type = 0;
  flags = 0;
  sid = 0;
  frameTs: Timestamp = { sec: 0, nsec: 0 };
  /** Payload bytes consumed of the current frame. */
  pos = 0;
  /** DATA: pad length (-1 = not read yet). */
  padLen = 0;
  /** Bytes of the current payload to keep (rest skipped). */
  keep = 0;
  pay: Buffer = Buffer.alloc(0);
  payLen = 0;
  readonly hpack = new HpackDecoder();
  poisoned = false;
  ended = false;
  /** Header block under reassembly (RFC 9113 Section 4.3): stream, kind and fragments. */
  hbStream = 0;
  hbEndStream = false;
  hbPromised = 0;
  hbKind: 0 | typeof HEADERS | typeof PUSH_PROMISE = 0;
  hbTs: Timestamp = { sec: 0, nsec: 0 };
  hb: Buffer = Buffer.alloc(0);
  hbLen = 0;
  constructor(readonly dir: Dir) {
    this.state = dir === Dir.ToServer ? R.Preface : R.Header;
  }
}

export class Http2Analyzer {
  private readonly readers: [Reader, Reader] = [new Reader(Dir.ToServer), new Reader(Dir.ToClient)];
  private readonly streams = new Map<number, Stream>();

  constructor(
    private readonly events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: HttpOptions,
  ) {}

  onData(dir: Dir, data: Buffer, ts: Timestamp): void {
    const r = this.readers[dir];
    if (r.ended || r.state === R.Dead) return;
    this.feed(r, data, ts);
  }

  /** A gap loses frame boundaries and HPACK state: this direction is not parsed any further. */
  onGap(dir: Dir, length: number, _ts: Timestamp): void {
    const r = this.readers[dir];
    if (r.ended || r.state === R.Dead || length <= 0) return;
    if (r.state === R.Data && r.padLen >= 0) {
      // Inside DATA payload: the frame layer survives a gap that ends within the same frame.
      const dataEnd = r.length - r.padLen;
      if (r.pos + length <= r.length) {
        const lost = Math.max(0, Math.min(dataEnd, r.pos + length) - Math.max(r.pos, r.flags & FLAG_PADDED ? 1 : 0));
        const body = this.bodyFor(r);
        if (body) body.gap(lost);
        r.pos += length;
        if (r.pos === r.length) this.endData(r);
        return;
      }
    }
    if (r.state === R.Skip && r.pos + length <= r.length) {
      r.pos += length;
      if (r.pos === r.length) r.state = R.Header;
      return;
    }
    this.anomalies.anomaly('http2_gap');
    r.state = R.Dead;
    for (const s of this.streams.values()) {
      const b = dir === Dir.ToServer ? s.ex.reqBody : s.ex.respBody;
      if (b) b.incomplete = true;
    }
  }

  onEnd(dir: Dir, _reason: EndReason, _ts: Timestamp): void {
    const r = this.readers[dir];
    if (r.ended) return;
    r.ended = true;
    if (r.state !== R.Header && r.state !== R.Dead && !(r.state === R.Preface && r.prefaceSeen === 0)) {
      this.anomalies.anomaly('http2_truncated_frame');
    }
    if (dir === Dir.ToClient) this.flushAll();
  }

  onClose(_ts: Timestamp): void {
    this.readers[0].ended = true;
    this.readers[1].ended = true;
    this.flushAll();
  }

  private flushAll(): void {
    for (const s of this.streams.values()) this.emit(s.ex);
    this.streams.clear();
  }

  private emit(ex: Exchange): void {
    if (ex.emitted) return;
    ex.emitted = true;
    this.events.emit('http', exchangeFields(ex, this.opts), ex.ts, true);
  }

  private bodyFor(r: Reader): BodyCollector | undefined {
    const s = this.streams.get(r.sid);
    if (!s) return undefined;
    if (r.dir === Dir.ToServer) {
      s.ex.reqBody ??= new BodyCollector(undefined, undefined, this.opts, this.anomalies);
      return s.ex.reqBody;
    }
    s.ex.respBody ??= new BodyCollector(undefined, undefined, this.opts, this.anomalies);
    return s.ex.respBody;
  }

  private feed(r: Reader, data: Buffer, ts: Timestamp): void {
    let i = 0;
    const end = data.length;
    while (i < end) {
      switch (r.state) {
        case R.Preface: {
          while (i < end && r.prefaceSeen < H2_PREFACE.length) {
            if (data[i] !== H2_PREFACE[r.prefaceSeen]) {
              this.anomalies.anomaly('http2_bad_preface');
              r.state = R.Dead;
              return;
            }
            i++;
            r.prefaceSeen++;
          }
          if (r.prefaceSeen === H2_PREFACE.length) r.state = R.Header;
          break;
        }
        case R.Header: {
          if (r.hdrLen === 0) r.frameTs = ts;
          const take = Math.min(9 - r.hdrLen, end - i);
          data.copy(r.hdr, r.hdrLen, i, i + take);
          r.hdrLen += take;
          i += take;
          if (r.hdrLen === 9) {
            r.hdrLen = 0;
            this.frameHeader(r);
          }
          break;
        }
        case R.Data: {
          i = this.dataBytes(r, data, i, end);
          break;
        }
        case R.Payload: {
          const need = r.length - r.pos;
          if (r.pos === 0 && end - i >= r.length && r.keep === r.length) {
            // Whole payload in this chunk: process the view, no copy.
            i += r.length;
            r.state = R.Header;
            this.frame(r, data.subarray(i - r.length, i));
            break;
          }
          const take = Math.min(need, end - i);
          const keepTake = Math.max(0, Math.min(take, r.keep - r.pos));
          if (keepTake > 0) {
            if (r.pay.length < r.keep) {
              const nb = Buffer.allocUnsafe(r.keep);
              r.pay.copy(nb, 0, 0, r.payLen);
              r.pay = nb;
            }
            data.copy(r.pay, r.payLen, i, i + keepTake);
            r.payLen += keepTake;
          }
          r.pos += take;
          i += take;
          if (r.pos === r.length) {
            r.state = R.Header;
            const payload = r.pay.subarray(0, r.payLen);
            r.payLen = 0;
            this.frame(r, payload);
          }
          break;
        }
        case R.Skip: {
          const take = Math.min(r.length - r.pos, end - i);
          r.pos += take;
          i += take;
          if (r.pos === r.length) r.state = R.Header;
          break;
        }
        case R.Dead:
          return;
      }
    }
  }

  /** RFC 9113 Section 4.1: 24-bit length, 8-bit type, 8-bit flags, R + 31-bit stream id. */
  private frameHeader(r: Reader): void {
    const h = r.hdr;
    r.length = (h[0] << 16) | (h[1] << 8) | h[2];
    r.type = h[3];
    r.flags = h[4];
    r.sid = h.readUInt32BE(5) & 0x7fffffff;
    r.pos = 0;
    r.payLen = 0;
    if (r.hbKind !== 0 && (r.type !== CONTINUATION || r.sid !== r.hbStream)) {
      // Section 6.10: a header block must continue on the same stream without other frames.
      this.anomalies.anomaly('http2_protocol_error', 'interrupted_header_block');
      this.poison(r);
      r.hbKind = 0;
    }
    switch (r.type) {
      case DATA:
        r.state = R.Data;
        r.padLen = r.flags & FLAG_PADDED ? -1 : 0;
        if (r.length === 0) {
          r.state = R.Header;
          this.endData(r);
        }
        return;
      case HEADERS:
      case PUSH_PROMISE:
      case CONTINUATION:
        if (r.length > this.opts.maxHeaderBytes || (r.type === CONTINUATION && r.hbKind === 0)) {
          if (r.type === CONTINUATION && r.hbKind === 0) this.anomalies.anomaly('http2_protocol_error', 'orphan_continuation');
          else this.anomalies.anomaly('http2_header_list_too_large');
          // The block cannot be decoded, so the HPACK context is lost.
          this.poison(r);
          this.skipOrHeader(r);
          if (r.type === HEADERS && r.flags & FLAG_END_STREAM) this.endStream(r, r.sid);
          return;
        }
        r.keep = r.length;
        break;
      case SETTINGS:
      case RST_STREAM:
      case GOAWAY:
      case PING:
      case WINDOW_UPDATE:
      case PRIORITY:
        // Control frames are small; a bigger one (e.g. GOAWAY debug data) is kept up to the
        // header cap and the rest skipped.
        r.keep = Math.min(r.length, this.opts.maxHeaderBytes);
        break;
      default:
        // Section 5.5: unknown frame types are ignored.
        this.skipOrHeader(r);
        return;
    }
    if (r.length === 0) {
      r.state = R.Header;
      this.frame(r, r.pay.subarray(0, 0));
    } else {
      r.state = R.Payload;
    }
  }

  private skipOrHeader(r: Reader): void {
    r.state = r.length === 0 ? R.Header : R.Skip;
  }

  private poison(r: Reader): void {
    r.poisoned = true;
  }

  /** Streams DATA payload bytes into the stream's body, minus padding (Section 6.1). */
  private dataBytes(r: Reader, data: Buffer, i: number, end: number): number {
    if (r.padLen < 0) {
      r.padLen = data[i];
      r.pos = 1;
      i++;
      if (r.padLen >= r.length) {
        this.anomalies.anomaly('http2_protocol_error', 'data_padding');
        r.padLen = r.length - 1;
      }
      if (r.pos === r.length) {
        r.state = R.Header;
        this.endData(r);
        return i;
      }
    }
    const take = Math.min(r.length - r.pos, end - i);
    const dataEnd = r.length - r.padLen;
    const useEnd = Math.min(dataEnd, r.pos + take);
    if (useEnd > r.pos) {
      const body = this.bodyFor(r);
      if (body) body.write(data, i, i + (useEnd - r.pos));
    }
    r.pos += take;
    i += take;
    if (r.pos === r.length) {
      r.state = R.Header;
      this.endData(r);
    }
    return i;
  }

  private endData(r: Reader): void {
    r.state = R.Header;
    if (r.flags & FLAG_END_STREAM) this.endStream(r, r.sid);
  }

  /** END_STREAM from one side: a complete response completes the exchange (Section 5.1). */
  private endStream(r: Reader, sid: number): void {
    if (r.dir !== Dir.ToClient) return;
    const s = this.streams.get(sid);
    if (!s) return;
    this.streams.delete(sid);
    this.emit(s.ex);
  }

  /** A complete non-DATA frame payload (possibly only its kept prefix for control frames). */
  private frame(r: Reader, p: Buffer): void {
    switch (r.type) {
      case HEADERS: {
        if (r.sid === 0) return this.badBlock(r, 'headers_stream_0');
        let off = 0;
        let end = p.length;
        if (r.flags & FLAG_PADDED) {
          if (p.length < 1) return this.badBlock(r, 'headers_padding');
          end -= p[0];
          off = 1;
        }
        if (r.flags & FLAG_PRIORITY) off += 5; // Section 6.2: stream dependency + weight
        if (off > end) return this.badBlock(r, 'headers_padding');
        this.blockStart(r, HEADERS, r.sid, 0, p, off, end, (r.flags & FLAG_END_STREAM) !== 0);
        return;
      }
      case PUSH_PROMISE: {
        let off = 0;
        let end = p.length;
        if (r.flags & FLAG_PADDED) {
          if (p.length < 1) return this.badBlock(r, 'push_promise_padding');
          end -= p[0];
          off = 1;
        }
        if (off + 4 > end) return this.badBlock(r, 'push_promise_padding');
        const promised = p.readUInt32BE(off) & 0x7fffffff;
        this.blockStart(r, PUSH_PROMISE, r.sid, promised, p, off + 4, end, false);
        return;
      }
      case CONTINUATION: {
        this.blockAppend(r, p, 0, p.length);
        if (r.flags & FLAG_END_HEADERS) this.blockEnd(r, r.hb.subarray(0, r.hbLen));
        return;
      }
      case SETTINGS: {
        if (r.flags & FLAG_ACK) return;
        if (p.length % 6 !== 0) return this.badFrame(r, 'settings_length');
        for (let o = 0; o + 6 <= p.length; o += 6) {
          if (p.readUInt16BE(o) === SETTINGS_HEADER_TABLE_SIZE) {
            // The sender's decoder limit bounds the peer's encoder: the other direction's context.
            this.readers[r.dir === Dir.ToServer ? Dir.ToClient : Dir.ToServer].hpack.setSettingsTableSize(p.readUInt32BE(o + 2));
          }
        }
        return;
      }
      case RST_STREAM: {
        // Section 6.4: the stream is closed; emit what is known.
        const s = this.streams.get(r.sid);
        if (s) {
          this.streams.delete(r.sid);
          this.emit(s.ex);
        }
        return;
      }
      case GOAWAY:
        // Section 6.8: streams above the last id were not processed; they are emitted (without a
        // response) when the connection ends, like any other unanswered stream.
        return;
      default:
        return; // PING, WINDOW_UPDATE, PRIORITY: nothing to record
    }
  }

  private badFrame(r: Reader, detail: string): void {
    this.anomalies.anomaly('http2_protocol_error', detail);
  }

  /** A header block that cannot be decoded leaves the HPACK context out of sync: poison it. */
  private badBlock(r: Reader, detail: string): void {
    this.anomalies.anomaly('http2_protocol_error', detail);
    this.poison(r);
  }

  private blockStart(r: Reader, kind: typeof HEADERS | typeof PUSH_PROMISE, sid: number, promised: number,
    p: Buffer, off: number, end: number, endStream: boolean): void {
    r.hbKind = kind;
    r.hbStream = sid;
    r.hbPromised = promised;
    r.hbEndStream = endStream;
    r.hbTs = r.frameTs;
    r.hbLen = 0;
    if (r.flags & FLAG_END_HEADERS) {
      this.blockEnd(r, p.subarray(off, end));
    } else {
      this.blockAppend(r, p, off, end);
    }
  }

  private blockAppend(r: Reader, p: Buffer, off: number, end: number): void {
    const n = end - off;
    if (r.hbLen + n > this.opts.maxHeaderBytes) {
      this.anomalies.anomaly('http2_header_list_too_large');
      this.poison(r);
      r.hbLen = 0;
      return;
    }
    if (r.hb.length < r.hbLen + n) {
      const nb = Buffer.allocUnsafe(Math.min(Math.max(r.hbLen + n, r.hb.length * 2, 1024), this.opts.maxHeaderBytes));
      r.hb.copy(nb, 0, 0, r.hbLen);
      r.hb = nb;
    }
    p.copy(r.hb, r.hbLen, off, end);
    r.hbLen += n;
  }

  /** A complete header block: decode (Section 4.3) and apply to the stream. */
  private blockEnd(r: Reader, block: Buffer): void {
    const kind = r.hbKind;
    r.hbKind = 0;
    const sid = r.hbStream;
    let decoded: Block | undefined;
    if (!r.poisoned) {
      decoded = { pseudo: new Map(), headers: new HeaderMap(), tooLarge: false };
      const d = decoded;
      const cap = this.opts.maxHeaderBytes;
      const err = r.hpack.decode(block, (name, value) => {
        if (d.tooLarge) return;
        if (d.headers.size + name.length + value.length + 32 > cap) {
          d.tooLarge = true;
          return;
        }
        if (name.charCodeAt(0) === 0x3a) {
          d.pseudo.set(name, value);
          d.headers.size += name.length + value.length + 32;
        } else {
          d.headers.add(name, value);
        }
      });
      if (err) {
        this.anomalies.anomaly('http2_compression_error', err);
        this.poison(r);
        decoded = undefined;
      } else if (d.tooLarge) {
        this.anomalies.anomaly('http2_header_list_too_large');
      }
    }
    if (kind === PUSH_PROMISE) {
      if (decoded) this.pushPromise(r, r.hbPromised, decoded);
      else this.anomalies.anomaly('http2_push_ignored');
      return;
    }
    if (r.dir === Dir.ToServer) this.requestHeaders(r, sid, decoded);
    else this.responseHeaders(r, sid, decoded);
    if (r.hbEndStream) this.endStream(r, sid);
  }

  private newStream(sid: number, ex: Exchange): Stream | undefined {
    if (this.streams.size >= this.opts.maxPendingExchanges) {
      this.anomalies.anomaly('http2_too_many_streams');
      return undefined;
    }
    const s: Stream = { ex, respHeaders: false, reqHeaders: true };
    this.streams.set(sid, s);
    return s;
  }

  private applyRequest(ex: Exchange, b: Block): void {
    ex.method = b.pseudo.get(':method');
    ex.target = b.pseudo.get(':path');
    ex.authority = b.pseudo.get(':authority');
    ex.scheme = b.pseudo.get(':scheme');
    ex.reqHeaders = b.headers;
    ex.reqBody = new BodyCollector(mimeOf(b.headers.get('content-type')), b.headers.get('content-encoding'), this.opts, this.anomalies);
  }

  private requestHeaders(r: Reader, sid: number, b: Block | undefined): void {
    const s = this.streams.get(sid);
    if (s) {
      if (s.reqHeaders) {
        // trailer section (Section 8.1): fields only, no pseudo-header fields
        if (b && b.headers.size > 0) s.ex.reqTrailers = b.headers;
        return;
      }
      if (b) this.applyRequest(s.ex, b);
      s.reqHeaders = true;
      return;
    }
    // A poisoned context produces no new exchanges.
    if (!b) return;
    const ex: Exchange = { ts: r.hbTs, version: '2' };
    this.applyRequest(ex, b);
    this.newStream(sid, ex);
  }

  private responseHeaders(r: Reader, sid: number, b: Block | undefined): void {
    let s = this.streams.get(sid);
    if (!s) {
      // Unknown stream: when the client's context is unusable its requests were dropped on
      // purpose, so their responses are not reported either.
      const client = this.readers[Dir.ToServer];
      if (!b || client.poisoned || client.state === R.Dead) return;
      this.anomalies.anomaly('http2_response_without_request');
      s = this.newStream(sid, { ts: r.hbTs, version: '2' });
      if (!s) return;
      s.reqHeaders = false;
    }
    if (!b) return; // undecodable
    if (s.respHeaders) {
      // trailer section (Section 8.1)
      if (b.headers.size > 0) s.ex.respTrailers = b.headers;
      return;
    }
    const st = b.pseudo.get(':status');
    const status = st !== undefined && /^\d{3}$/.test(st) ? Number(st) : undefined;
    if (status !== undefined && status >= 100 && status < 200) return; // interim (Section 8.1)
    s.respHeaders = true;
    s.ex.status = status;
    s.ex.respHeaders = b.headers;
    const prev = s.ex.respBody;
    s.ex.respBody = new BodyCollector(mimeOf(b.headers.get('content-type')), b.headers.get('content-encoding'), this.opts, this.anomalies);
    if (prev) s.ex.respBody.bytes = prev.bytes;
  }

  /** Section 8.4: a pushed request; its response arrives on the promised (even) stream. */
  private pushPromise(r: Reader, promised: number, b: Block): void {
    if (promised === 0 || this.streams.has(promised)) {
      this.anomalies.anomaly('http2_protocol_error', 'push_promise_stream');
      return;
    }
    const ex: Exchange = { ts: r.hbTs, version: '2', pushed: true };
    this.applyRequest(ex, b);
    this.newStream(promised, ex);
  }
}
