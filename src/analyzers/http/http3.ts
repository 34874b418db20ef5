/**
 * HTTP/3 analyzer over one decrypted QUIC connection (RFC 9114): the QUIC stage hands it each
 * stream's bytes in order (onStreamData), holes it will never fill (onStreamGap) and stream ends.
 *
 * - Request streams (client-initiated bidirectional, id % 4 == 0): HEADERS and DATA frames in
 *   both directions (Section 4.1); one exchange per stream, emitted when the response ends (FIN)
 *   or the connection closes. DATA payloads stream into the body collectors, never buffered.
 * - Unidirectional streams (Section 6.2): the first varint is the stream type: control (SETTINGS,
 *   GOAWAY), QPACK encoder / decoder (RFC 9204 Section 4.2), push; others are skipped.
 * - Unknown and reserved frame types are skipped (Section 9); frames not allowed on a stream are
 *   counted (`http3_frame_unexpected`) and skipped.
 * - QPACK (src/analyzers/http/qpack.ts): a HEADERS block that needs encoder-stream entries not seen
 *   yet waits for them (bounded by maxHeaderBytes).
 * - A gap inside a DATA payload is counted in the body; a gap anywhere else loses the frame
 *   boundaries of that stream, which is parsed no further (`http3_gap`).
 * Exchanges and their ECS fields are those of HTTP/2 (src/analyzers/http/exchange.ts), version "3".
 */
import type { AnomalySink, EventSink, Timestamp } from '../../types.js';
import { BodyCollector, mimeOf } from './body.js';
import { exchangeFields, HeaderMap, type Exchange } from './exchange.js';
import type { HttpOptions } from './options.js';
import { QpackDecoder } from './qpack.js';

/** RFC 9114 Section 7.2: frame types. */
const DATA = 0x0;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const GOAWAY = 0x7;
/** Section 6.2: unidirectional stream types; RFC 9204 Section 4.2. */
const UNI_CONTROL = 0x0;
const UNI_PUSH = 0x1;
const UNI_QPACK_ENCODER = 0x2;
const UNI_QPACK_DECODER = 0x3;
/** RFC 9204 Section 5: SETTINGS_QPACK_MAX_TABLE_CAPACITY. */
const SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0x1;

/** Who sent the bytes. */
export const enum H3Side {
  Client = 0,
  Server = 1,
}

const enum S {
  /** Unidirectional: reading the stream type. */
  UniType,
  FrameHeader,
  Payload,
  /** QPACK encoder stream: raw instructions. */
  Encoder,
  /** Skipping the rest of the stream (decoder stream, push, unknown, after an error). */
  Ignore,
}

interface Half {
  state: S;
  uniType: number;
  hdr: Buffer;
  hdrLen: number;
  type: number;
  length: number;
  pos: number;
  /** Kept payload of HEADERS / SETTINGS / GOAWAY (capped). */
  pay: Buffer | undefined;
  frameTs: Timestamp;
}

interface ReqStream {
  ex: Exchange;
  reqHeaders: boolean;
  respHeaders: boolean;
  /** HEADERS blocks waiting for encoder-stream entries, in order. */
  blocked: { side: H3Side; block: Buffer }[];
  ended: boolean;
}

const MAX_FRAME_HEADER = 16;

function varint(buf: Buffer, pos: number, end: number): [number, number] | undefined {
  if (pos >= end) return undefined;
  const len = 1 << (buf[pos] >> 6);
  if (pos + len > end) return undefined;
  let v = buf[pos] & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + buf[pos + i];
  return [v, pos + len];
}

export class Http3Analyzer {
  private readonly halves = new Map<number, Half>();
  private readonly streams = new Map<number, ReqStream>();
  /** QPACK decoders for the client's (requests) and the server's (responses) field sections. */
  private readonly qpack: [QpackDecoder, QpackDecoder];
  private blockedCount = 0;
  /** GOAWAY identifiers seen (client, server). */
  goaway: [number | undefined, number | undefined] = [undefined, undefined];

  constructor(
    private readonly events: EventSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: HttpOptions,
  ) {
    this.qpack = [new QpackDecoder(1 << 20, opts.maxHeaderBytes), new QpackDecoder(1 << 20, opts.maxHeaderBytes)];
  }

  private half(id: number, side: H3Side, ts: Timestamp): Half {
    const key = id * 2 + side;
    let h = this.halves.get(key);
    if (h === undefined) {
      const uni = (id & 2) !== 0;
      h = { state: uni ? S.UniType : S.FrameHeader, uniType: -1, hdr: Buffer.alloc(MAX_FRAME_HEADER), hdrLen: 0, type: 0, length: 0, pos: 0, pay: undefined, frameTs: ts };
      this.halves.set(key, h);
    }
    return h;
  }

  /** In-order bytes of stream `id` from `side`. */
  onStreamData(id: number, side: H3Side, data: Buffer, ts: Timestamp): void {
    const h = this.half(id, side, ts);
    let i = 0;
    const end = data.length;
    while (i < end) {
      switch (h.state) {
        case S.Ignore:
          return;
        case S.Encoder: {
          const n = this.qpack[side].encoderStream(data.subarray(i));
          if (typeof n === 'string') {
            this.anomalies.anomaly('http3_qpack_error', n);
            h.state = S.Ignore;
          } else if (n > 0) this.unblock();
          return;
        }
        case S.UniType:
        case S.FrameHeader: {
          if (h.hdrLen === 0) h.frameTs = ts;
          const take = Math.min(MAX_FRAME_HEADER - h.hdrLen, end - i);
          data.copy(h.hdr, h.hdrLen, i, i + take);
          const avail = h.hdrLen + take;
          if (h.state === S.UniType) {
            const t = varint(h.hdr, 0, avail);
            if (t === undefined) {
              h.hdrLen = avail;
              return;
            }
            i += t[1] - h.hdrLen;
            h.hdrLen = 0;
            this.uniType(h, t[0], side);
            break;
          }
          const t = varint(h.hdr, 0, avail);
          const l = t && varint(h.hdr, t[1], avail);
          if (t === undefined || l === undefined) {
            h.hdrLen = avail;
            i += take;
            if (avail >= MAX_FRAME_HEADER) this.streamError(h, 'frame_header');
            return;
          }
          i += l[1] - h.hdrLen;
          h.hdrLen = 0;
          h.type = t[0];
          h.length = l[0];
          h.pos = 0;
          this.frameStart(id, side, h);
          if (h.length === 0) this.frameEnd(id, side, h);
          break;
        }
        case S.Payload: {
          const take = Math.min(h.length - h.pos, end - i);
          const chunk = data.subarray(i, i + take);
          if (h.type === DATA) this.body(id, side)?.write(chunk);
          else if (h.pay !== undefined) chunk.copy(h.pay, h.pos);
          h.pos += take;
          i += take;
          if (h.pos === h.length) this.frameEnd(id, side, h);
          break;
        }
      }
    }
  }

  /** `length` bytes of stream `id` from `side` will never be seen. */
  onStreamGap(id: number, side: H3Side, length: number, ts: Timestamp): void {
    const h = this.half(id, side, ts);
    if (h.state === S.Ignore) return;
    if (h.state === S.Payload && h.type === DATA && h.pos + length <= h.length) {
      const b = this.body(id, side);
      if (b) b.gap(length);
      h.pos += length;
      if (h.pos === h.length) this.frameEnd(id, side, h);
      return;
    }
    this.anomalies.anomaly('http3_gap');
    h.state = S.Ignore;
    const s = this.streams.get(id);
    if (s) {
      const b = side === H3Side.Client ? s.ex.reqBody : s.ex.respBody;
      if (b) b.incomplete = true;
    }
  }

  /** The stream's FIN from `side` (or a RESET_STREAM). */
  onStreamEnd(id: number, side: H3Side, _ts: Timestamp): void {
    const h = this.halves.get(id * 2 + side);
    if (h && (h.state === S.Payload || h.hdrLen > 0) && h.state !== S.Ignore) this.anomalies.anomaly('http3_truncated_frame');
    if (h) h.state = S.Ignore;
    if (side !== H3Side.Server) return;
    const s = this.streams.get(id);
    if (s) {
      s.ended = true;
      if (s.blocked.length === 0) this.finish(id, s);
    }
  }

  /** End of the connection: every exchange still open is emitted with what is known. */
  onClose(_ts: Timestamp): void {
    for (const [id, s] of this.streams) {
      if (s.blocked.length > 0) this.anomalies.anomaly('http3_qpack_blocked_at_close');
      this.finish(id, s);
    }
    this.halves.clear();
  }

  private finish(id: number, s: ReqStream): void {
    this.streams.delete(id);
    this.blockedCount -= s.blocked.length;
    s.blocked.length = 0;
    if (s.ex.emitted) return;
    s.ex.emitted = true;
    this.events.emit('http', exchangeFields(s.ex, this.opts), s.ex.ts, true);
  }

  private streamError(h: Half, detail: string): void {
    this.anomalies.anomaly('http3_frame_error', detail);
    h.state = S.Ignore;
  }

  private uniType(h: Half, type: number, side: H3Side): void {
    h.uniType = type;
    switch (type) {
      case UNI_CONTROL:
        h.state = S.FrameHeader;
        return;
      case UNI_QPACK_ENCODER:
        h.state = S.Encoder;
        return;
      case UNI_QPACK_DECODER: // acknowledgements only: nothing an observer needs
      case UNI_PUSH: // server push is not reported (RFC 9114 Section 4.6; rarely used)
      default: // reserved / unknown stream types (Section 6.2.3): skipped
        if (type === UNI_PUSH) this.anomalies.anomaly('http3_push_ignored');
        h.state = S.Ignore;
        void side;
    }
  }

  private frameStart(id: number, side: H3Side, h: Half): void {
    h.state = S.Payload;
    h.pay = undefined;
    const control = (id & 2) !== 0;
    if (h.type === HEADERS || ((h.type === SETTINGS || h.type === GOAWAY) && control)) {
      if (h.length > this.opts.maxHeaderBytes) {
        this.anomalies.anomaly('http3_header_list_too_large');
        if (h.type === HEADERS) this.blockLost(id, side);
        return; // skipped (pay undefined)
      }
      h.pay = Buffer.allocUnsafe(h.length);
      return;
    }
    if (h.type === DATA && !control) {
      const s = this.streams.get(id);
      if (!s) this.anomalies.anomaly('http3_frame_unexpected', 'data_before_headers');
      return;
    }
    if ((h.type === DATA || h.type === PUSH_PROMISE) && control) this.anomalies.anomaly('http3_frame_unexpected', `type=${h.type}`);
    // everything else (PRIORITY_UPDATE, MAX_PUSH_ID, CANCEL_PUSH, reserved, unknown): skipped
  }

  private frameEnd(id: number, side: H3Side, h: Half): void {
    h.state = S.FrameHeader;
    const pay = h.pay;
    h.pay = undefined;
    if (pay === undefined) return;
    const control = (id & 2) !== 0;
    if (!control && h.type === HEADERS) {
      this.headers(id, side, pay, h.frameTs);
      return;
    }
    if (h.type === SETTINGS) {
      // Section 7.2.4: identifier/value varint pairs. The sender's decoder capacity bounds the peer's encoder.
      for (let p = 0; p < pay.length; ) {
        const k = varint(pay, p, pay.length);
        const v = k && varint(pay, k[1], pay.length);
        if (!k || !v) {
          this.anomalies.anomaly('http3_frame_error', 'settings');
          return;
        }
        if (k[0] === SETTINGS_QPACK_MAX_TABLE_CAPACITY) this.qpack[side === H3Side.Client ? H3Side.Server : H3Side.Client].setMaxTableCapacity(v[0]);
        p = v[1];
      }
      return;
    }
    if (h.type === GOAWAY) {
      const v = varint(pay, 0, pay.length);
      if (v) this.goaway[side] = v[0];
    }
  }

  private body(id: number, side: H3Side): BodyCollector | undefined {
    const s = this.streams.get(id);
    if (!s) return undefined;
    if (side === H3Side.Client) return (s.ex.reqBody ??= new BodyCollector(undefined, undefined, this.opts, this.anomalies));
    return (s.ex.respBody ??= new BodyCollector(undefined, undefined, this.opts, this.anomalies));
  }

  private stream(id: number, ts: Timestamp): ReqStream | undefined {
    let s = this.streams.get(id);
    if (s) return s;
    if (this.streams.size >= this.opts.maxPendingExchanges) {
      this.anomalies.anomaly('http3_too_many_streams');
      return undefined;
    }
    const n: ReqStream = { ex: { ts, version: '3' }, reqHeaders: false, respHeaders: false, blocked: [], ended: false };
    this.streams.set(id, n);
    return n;
  }

  /** A HEADERS block whose bytes were skipped: the exchange exists, its headers stay unknown. */
  private blockLost(id: number, side: H3Side): void {
    const s = this.stream(id, { sec: 0, nsec: 0 });
    if (s && side === H3Side.Client) s.reqHeaders = true;
  }

  private headers(id: number, side: H3Side, block: Buffer, ts: Timestamp): void {
    const s = this.stream(id, ts);
    if (!s) return;
    if (s.blocked.length > 0) {
      s.blocked.push({ side, block });
      this.blockedCount++;
      return;
    }
    this.decodeBlock(id, s, side, block);
  }

  /** Decodes and applies one block; false when it is blocked (queued on the stream). */
  private decodeBlock(id: number, s: ReqStream, side: H3Side, block: Buffer): boolean {
    const pseudo = new Map<string, string>();
    const headers = new HeaderMap();
    let tooLarge = false;
    const cap = this.opts.maxHeaderBytes;
    const r = this.qpack[side].decode(block, (name, value) => {
      if (tooLarge) return;
      if (headers.size + name.length + value.length + 32 > cap) {
        tooLarge = true;
        return;
      }
      if (name.charCodeAt(0) === 0x3a) {
        pseudo.set(name, value);
        headers.size += name.length + value.length + 32;
      } else headers.add(name, value);
    });
    if (r === 'blocked') {
      if (this.blockedCount >= this.opts.maxPendingExchanges) {
        this.anomalies.anomaly('http3_qpack_too_many_blocked');
        return true;
      }
      s.blocked.unshift({ side, block: Buffer.from(block) });
      this.blockedCount++;
      return false;
    }
    if (r !== undefined) {
      this.anomalies.anomaly('http3_qpack_error', r);
      return true;
    }
    if (tooLarge) this.anomalies.anomaly('http3_header_list_too_large');
    const ex = s.ex;
    if (side === H3Side.Client) {
      if (s.reqHeaders) {
        if (headers.size > 0) ex.reqTrailers = headers; // trailer section (RFC 9114 §4.1)
        return true;
      }
      s.reqHeaders = true;
      ex.method = pseudo.get(':method');
      ex.target = pseudo.get(':path');
      ex.authority = pseudo.get(':authority');
      ex.scheme = pseudo.get(':scheme');
      ex.reqHeaders = headers;
      const prev = ex.reqBody;
      ex.reqBody = new BodyCollector(mimeOf(headers.get('content-type')), headers.get('content-encoding'), this.opts, this.anomalies);
      if (prev) ex.reqBody.bytes = prev.bytes;
      return true;
    }
    if (s.respHeaders) {
      if (headers.size > 0) ex.respTrailers = headers; // trailer section (RFC 9114 §4.1)
      return true;
    }
    const st = pseudo.get(':status');
    const status = st !== undefined && /^\d{3}$/.test(st) ? Number(st) : undefined;
    if (status !== undefined && status >= 100 && status < 200) return true; // interim (Section 4.1)
    s.respHeaders = true;
    ex.status = status;
    ex.respHeaders = headers;
    const prev = ex.respBody;
    ex.respBody = new BodyCollector(mimeOf(headers.get('content-type')), headers.get('content-encoding'), this.opts, this.anomalies);
    if (prev) ex.respBody.bytes = prev.bytes;
    void id;
    return true;
  }

  /** New encoder-stream entries: retry blocked blocks in stream order. */
  private unblock(): void {
    if (this.blockedCount === 0) return;
    for (const [id, s] of this.streams) {
      while (s.blocked.length > 0) {
        const b = s.blocked.shift() as { side: H3Side; block: Buffer };
        this.blockedCount--;
        if (!this.decodeBlock(id, s, b.side, b.block)) break;
      }
      if (s.blocked.length === 0 && s.ended) this.finish(id, s);
    }
  }
}
