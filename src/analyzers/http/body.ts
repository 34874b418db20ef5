/**
 * Body accounting and capture. Counts body bytes as they were on the wire (after HTTP/1 chunked
 * framing is removed, before content decoding: RFC 9110 Section 8.6 Content-Length semantics) and
 * keeps a bounded prefix for `*.body.content`: text bodies only, content-decoded (RFC 9110
 * Section 8.4: gzip, deflate, br), capped by `bodyCaptureBytes`. Never holds a whole body.
 */
import * as zlib from 'node:zlib';
import type { AnomalySink } from '../../types.js';
import type { HttpOptions } from './options.js';

/** Media types whose bodies are text worth capturing (RFC 9110 Section 8.3.1 names the syntax). */
export function isTextMime(mime: string | undefined): boolean {
  if (!mime) return false;
  if (mime.startsWith('text/')) return true;
  if (mime.endsWith('+json') || mime.endsWith('+xml')) return true;
  switch (mime) {
    case 'application/json':
    case 'application/xml':
    case 'application/javascript':
    case 'application/x-javascript':
    case 'application/ecmascript':
    case 'application/x-www-form-urlencoded':
    case 'application/graphql':
    case 'application/x-ndjson':
    case 'application/soap+xml':
      return true;
    default:
      return false;
  }
}

/** Content-Type without parameters, lower case (RFC 9110 Section 8.3.1). */
export function mimeOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const semi = contentType.indexOf(';');
  const m = (semi >= 0 ? contentType.slice(0, semi) : contentType).trim().toLowerCase();
  return m || undefined;
}

type Coding = 'gzip' | 'deflate' | 'br';

/** Parses Content-Encoding into the list of codings applied (in order), or null if unsupported. */
function parseCodings(ce: string | undefined): Coding[] | null {
  if (!ce) return [];
  const out: Coding[] = [];
  for (const raw of ce.split(',')) {
    const c = raw.trim().toLowerCase();
    if (c === '' || c === 'identity') continue;
    if (c === 'gzip' || c === 'x-gzip') out.push('gzip');
    else if (c === 'deflate') out.push('deflate');
    else if (c === 'br') out.push('br');
    else return null;
  }
  return out;
}

function isTooLarge(e: unknown): boolean {
  return e instanceof RangeError || (e as { code?: string })?.code === 'ERR_BUFFER_TOO_LARGE';
}

/**
 * Decodes one coding of a (possibly truncated) body prefix. SYNC_FLUSH as finishing flush lets zlib
 * return what it has for a prefix instead of failing on the missing end; `maxOutputLength` stops a
 * decompression bomb early (Node aborts with a RangeError once the output cap is reached).
 */
function decodeOnce(c: Coding, input: Buffer, maxOut: number): Buffer {
  if (c === 'br') {
    return zlib.brotliDecompressSync(input, {
      finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
      maxOutputLength: maxOut,
    });
  }
  const o = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: maxOut };
  if (c === 'gzip') return zlib.gunzipSync(input, o);
  // "deflate" is meant to be zlib-wrapped (RFC 9110 8.4.1.2) but raw deflate is common in the
  // wild: a zlib header has CM=8 and a header checksum divisible by 31 (RFC 1950 Section 2.2).
  if (input.length >= 2 && (input[0] & 0x0f) === 8 && ((input[0] << 8) | input[1]) % 31 === 0) {
    return zlib.inflateSync(input, o);
  }
  return zlib.inflateRawSync(input, o);
}

/** Accumulates one message body. */
export class BodyCollector {
  /** Body bytes on the wire (before content decoding), including bytes lost in gaps. */
  bytes = 0;
  /** True when part of the body was never seen (gap) or the message ended early. */
  incomplete = false;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private readonly cap: number;
  private readonly codings: Coding[] | null;
  private readonly capture: boolean;
  private readonly sniff: boolean;
  /**
   * The first wire bytes of every body, whatever its type, kept for `body.magic` (file-type
   * detection by magic bytes, e.g. an executable download). Identity bodies need MAGIC_BYTES;
   * content-encoded ones keep a little more to decode the first bytes from.
   */
  private head: Buffer | undefined;
  private headLen = 0;
  private readonly headKeep: number;

  constructor(
    private readonly mime: string | undefined,
    contentEncoding: string | undefined,
    private readonly opts: HttpOptions,
    private readonly anomalies: AnomalySink,
  ) {
    this.codings = parseCodings(contentEncoding);
    // Without a Content-Type the prefix is sniffed (valid UTF-8, no NUL) before it is kept.
    this.sniff = mime === undefined;
    this.capture = opts.bodyCaptureBytes > 0 && this.codings !== null && (this.sniff || isTextMime(mime));
    if (this.codings === null && opts.bodyCaptureBytes > 0 && (this.sniff || isTextMime(mime))) {
      anomalies.anomaly('http_unsupported_content_encoding');
    }
    this.cap = this.codings && this.codings.length > 0
      ? Math.max(opts.maxEncodedCaptureBytes, opts.bodyCaptureBytes + 1024)
      : opts.bodyCaptureBytes;
    this.headKeep = this.codings && this.codings.length > 0 ? MAGIC_ENCODED_KEEP : MAGIC_BYTES;
  }

  /**
   * Hex of the first MAGIC_BYTES of the body after content decoding (undefined when no body bytes
   * were seen, the start was lost, or an encoded start cannot be decoded).
   */
  magic(): string | undefined {
    // bodyCaptureBytes = 0 means no body content at all in events, and 16 bytes of a text body are content
    if (!this.head || this.headLen === 0 || this.opts.bodyCaptureBytes === 0) return undefined;
    let b: Buffer | undefined = this.head.subarray(0, this.headLen);
    const codings = this.codings;
    if (codings === null) return undefined;
    for (let i = codings.length - 1; i >= 0 && b !== undefined; i--) b = decodeStart(codings[i], b);
    return b && b.length ? b.subarray(0, MAGIC_BYTES).toString('hex') : undefined;
  }

  /** Body bytes; only a bounded prefix is copied, and only when it will be captured. */
  /**
   * True when write() would only count from now on: the magic-bytes head is complete (or can no
   * longer fill) and nothing more is captured.
   */
  get countsOnly(): boolean {
    const headOpen = this.headLen < this.headKeep && this.bytes === this.headLen && !this.incomplete;
    return !headOpen && (!this.capture || this.incomplete || this.buffered >= this.cap);
  }

  /** `n` body bytes that only count (countsOnly): as write() would take them, unread. */
  count(n: number): void {
    if (n > 0) this.bytes += n;
  }

  write(data: Buffer, start = 0, end = data.length): void {
    const n = end - start;
    if (n <= 0) return;
    if (this.headLen < this.headKeep && this.bytes === this.headLen && !this.incomplete) {
      this.head ??= Buffer.allocUnsafe(this.headKeep);
      const t = Math.min(this.headKeep - this.headLen, n);
      data.copy(this.head, this.headLen, start, start + t);
      this.headLen += t;
    }
    this.bytes += n;
    if (!this.capture || this.incomplete) return;
    const room = this.cap - this.buffered;
    if (room <= 0) return;
    const take = Math.min(room, n);
    this.chunks.push(Buffer.from(data.subarray(start, start + take)));
    this.buffered += take;
  }

  /** `n` body bytes were lost: counted as body bytes, and capture stops at the hole. */
  gap(n: number): void {
    this.bytes += n;
    this.incomplete = true;
  }

  /** The captured, decoded text prefix, or undefined when nothing (textual) was captured. */
  content(isForm: boolean, redact: boolean): string | undefined {
    if (!this.capture || this.buffered === 0) return undefined;
    let raw: Buffer | undefined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const codings = this.codings ?? [];
    if (codings.length === 1) {
      raw = this.decodePrefix(codings[0], raw);
    } else {
      // Stacked codings (rare): each stage decodes all of the previous stage's output.
      for (let i = codings.length - 1; i >= 0 && raw !== undefined; i--) raw = this.decodeAll(codings[i], raw);
    }
    if (raw === undefined) return undefined;
    let out = raw.length > this.opts.bodyCaptureBytes ? raw.subarray(0, this.opts.bodyCaptureBytes) : raw;
    if (this.sniff && !looksLikeText(out)) return undefined;
    out = trimPartialUtf8(out);
    let s = out.toString('utf8');
    if (isForm && redact) s = redactFormBody(s);
    return s;
  }

  /**
   * Decodes just enough of the encoded prefix to fill the capture: starts with an input prefix
   * the size of the capture (compressed data rarely expands less than 1:1) and doubles it while the
   * output is short. A step whose output passes maxDecodedBodyBytes (a bomb) is counted and the
   * input shrunk instead, so the work per message stays bounded by the cap.
   */
  private decodePrefix(c: Coding, input: Buffer): Buffer | undefined {
    const want = this.opts.bodyCaptureBytes;
    const maxOut = this.opts.maxDecodedBodyBytes;
    let k = Math.min(input.length, Math.max(want, 256));
    let best: Buffer | undefined;
    for (;;) {
      let out: Buffer;
      try {
        out = decodeOnce(c, input.subarray(0, k), maxOut);
      } catch (e) {
        if (!isTooLarge(e)) {
          this.anomalies.anomaly('http_body_decode_error', c);
          return best;
        }
        this.anomalies.anomaly('http_body_decode_limit', c);
        if (best !== undefined) return best;
        for (let j = k >> 2; j >= 16; j >>= 2) {
          try {
            return decodeOnce(c, input.subarray(0, j), maxOut);
          } catch {
            // still beyond the cap: shrink again
          }
        }
        return undefined;
      }
      best = out;
      if (out.length >= want || k >= input.length) return out;
      k = Math.min(input.length, k * 2);
    }
  }

  private decodeAll(c: Coding, input: Buffer): Buffer | undefined {
    try {
      return decodeOnce(c, input, this.opts.maxDecodedBodyBytes);
    } catch (e) {
      this.anomalies.anomaly(isTooLarge(e) ? 'http_body_decode_limit' : 'http_body_decode_error', c);
      return undefined;
    }
  }
}

/** Bytes reported in `body.magic`: enough for every common file signature (PE, ELF, Mach-O, ZIP, 7z...). */
export const MAGIC_BYTES = 16;
/** Encoded bytes kept to decode the first MAGIC_BYTES of a content-encoded body. */
const MAGIC_ENCODED_KEEP = 512;

/** Decodes as much of an encoded prefix as it yields (a truncated stream is expected here). */
function decodeStart(c: Coding, input: Buffer): Buffer | undefined {
  try {
    return decodeOnce(c, input, 1 << 16);
  } catch {
    return undefined;
  }
}

/** Rough text check for bodies without a Content-Type: no NUL or other C0 control bytes. */
function looksLikeText(b: Buffer): boolean {
  const n = Math.min(b.length, 512);
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c < 0x09 || (c > 0x0d && c < 0x20 && c !== 0x1b)) return false;
  }
  return true;
}

/** Drops an incomplete UTF-8 sequence at the end of a cut prefix (no U+FFFD at the cut). */
function trimPartialUtf8(b: Buffer): Buffer {
  let i = b.length - 1;
  let back = 0;
  while (i >= 0 && back < 3 && (b[i] & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return b;
  const lead = b[i];
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (need > 1 && b.length - i < need) return b.subarray(0, i);
  return b;
}

/** Credential-like parameter names (query strings and form bodies). */
const SECRET_PARAM = /^(password|passwd|pwd|pass|token|api_key|apikey|api-key|secret|access_token|refresh_token|client_secret|id_token)$/i;

function isSecretParam(name: string): boolean {
  let n = name;
  try {
    n = decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    // keep the raw name
  }
  return SECRET_PARAM.test(n.trim());
}

/** Replaces the values of credential-like parameters in an `a=1&b=2` string with [REDACTED]. */
export function redactParams(q: string): string {
  if (q.length === 0) return q;
  let changed = false;
  const parts = q.split('&');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    if (isSecretParam(p.slice(0, eq))) {
      parts[i] = p.slice(0, eq + 1) + '[REDACTED]';
      changed = true;
    }
  }
  return changed ? parts.join('&') : q;
}

/** Form bodies (application/x-www-form-urlencoded) follow the query-string rule. */
export function redactFormBody(s: string): string {
  return redactParams(s);
}
