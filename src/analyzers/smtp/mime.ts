/**
 * Internet Message Format header and MIME structure parsing, bounded: headers of the message and
 * of every MIME part are parsed (RFC 5322 Section 2.2, unfolding per Section 2.2.3), bodies are
 * only counted. Encoded words (RFC 2047 Section 4: B and Q) and parameter value continuations and
 * charsets (RFC 2231 Sections 3-4) are decoded; attachments are named from Content-Disposition
 * `filename` or Content-Type `name` (RFC 2183, RFC 2045).
 *
 * Pure functions plus one streaming class fed with message lines (dot-stuffing already removed).
 */

/** Decodes bytes in a MIME charset; unknown charsets fall back to Latin-1 (reported by the caller). */
export function decodeCharset(bytes: Buffer, charset: string): { text: string; known: boolean } {
  const cs = charset.trim().toLowerCase().replace(/\*.*$/, ''); // RFC 2231 Section 5 language suffix
  if (cs === 'utf-8' || cs === 'utf8' || cs === 'us-ascii' || cs === 'ascii') return { text: bytes.toString('utf8'), known: true };
  if (cs === 'iso-8859-1' || cs === 'latin1' || cs === 'latin-1') return { text: bytes.toString('latin1'), known: true };
  try {
    return { text: new TextDecoder(cs).decode(bytes), known: true };
  } catch {
    return { text: bytes.toString('latin1'), known: false };
  }
}

const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;

/** RFC 2047 Section 4.2: Q encoding ("_" is space, =XX hex). */
function decodeQ(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5f) out.push(0x20);
    else if (c === 0x3d && i + 2 < s.length && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(c & 0xff);
  }
  return Buffer.from(out);
}

/**
 * Decodes RFC 2047 encoded words in an unstructured header value. Whitespace between two adjacent
 * encoded words is dropped (Section 6.2); adjacent words in the same charset are joined before
 * decoding so multi-byte characters split across words survive.
 */
export function decodeEncodedWords(value: string, onUnknownCharset?: (cs: string) => void): string {
  if (!value.includes('=?')) return value;
  type Piece = { text: string } | { cs: string; bytes: Buffer };
  const pieces: Piece[] = [];
  let last = 0;
  ENCODED_WORD.lastIndex = 0;
  for (let m = ENCODED_WORD.exec(value); m; m = ENCODED_WORD.exec(value)) {
    const between = value.slice(last, m.index);
    const prev = pieces[pieces.length - 1];
    const prevIsWord = prev !== undefined && 'cs' in prev;
    if (between.length && !(prevIsWord && /^[ \t\r\n]+$/.test(between))) pieces.push({ text: between });
    const cs = m[1].toLowerCase();
    const bytes = m[2] === 'B' || m[2] === 'b' ? Buffer.from(m[3], 'base64') : decodeQ(m[3]);
    const p = pieces[pieces.length - 1];
    if (p !== undefined && 'cs' in p && p.cs === cs) p.bytes = Buffer.concat([p.bytes, bytes]);
    else pieces.push({ cs, bytes });
    last = m.index + m[0].length;
  }
  if (last < value.length) pieces.push({ text: value.slice(last) });
  let out = '';
  for (const p of pieces) {
    if ('text' in p) out += p.text;
    else {
      const d = decodeCharset(p.bytes, p.cs);
      if (!d.known) onUnknownCharset?.(p.cs);
      out += d.text;
    }
  }
  return out;
}

/** Splits a structured header value on `sep` outside quoted strings, comments and angle brackets. */
function splitTopLevel(value: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  let comment = 0;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\' && i + 1 < value.length) {
        cur += c + value[++i];
        continue;
      }
      if (c === '"') quoted = false;
    } else if (comment > 0) {
      if (c === '(') comment++;
      else if (c === ')') comment--;
    } else if (c === '"') quoted = true;
    else if (c === '(') comment = 1;
    else if (c === '<') angle = true;
    else if (c === '>') angle = false;
    else if (c === sep && !angle) {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  return parts;
}

/**
 * The addresses of an address-list header (To, Cc, From; RFC 5322 Section 3.4): `Name <a@b>`,
 * bare `a@b`, quoted display names with commas, groups (`team: a@b, c@d;`). Lower-casing is left
 * to consumers: the local part is case-sensitive.
 */
export function parseAddressList(value: string): string[] {
  const out: string[] = [];
  for (let part of splitTopLevel(value, ',')) {
    const colon = splitTopLevel(part, ':');
    if (colon.length > 1 && !part.trim().startsWith('<')) part = colon.slice(1).join(':'); // group name
    part = part.replace(/;\s*$/, '');
    const angle = /<([^<>]*)>/.exec(part);
    let addr = angle ? angle[1] : part.replace(/\([^()]*\)/g, '');
    addr = addr.trim().replace(/^"(.*)"$/, '$1');
    if (addr.length && (angle || addr.includes('@'))) out.push(addr);
  }
  return out;
}

/** Parsed `value; name=val; ...` header (Content-Type, Content-Disposition). */
export interface HeaderParams {
  /** The main value, lower-cased (e.g. `multipart/mixed`, `attachment`). */
  value: string;
  /** Parameters by lower-cased name, RFC 2231 continuations joined and charsets decoded. */
  params: Map<string, string>;
}

function unquote(v: string): string {
  v = v.trim();
  if (v.length >= 2 && v[0] === '"' && v[v.length - 1] === '"') return v.slice(1, -1).replace(/\\(.)/g, '$1');
  return v;
}

function percentDecode(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      const c = s.charCodeAt(i);
      if (c < 0x80) out.push(c);
      else out.push(...Buffer.from(s[i], 'utf8'));
    }
  }
  return Buffer.from(out);
}

/** Parses a parameterised header value with RFC 2231 continuations (`name*0*=`, `name*1=`). */
export function parseHeaderParams(raw: string, onUnknownCharset?: (cs: string) => void): HeaderParams {
  const parts = splitTopLevel(raw, ';');
  const value = (parts[0] ?? '').replace(/\([^()]*\)/g, '').trim().toLowerCase();
  const params = new Map<string, string>();
  // name -> sections (index -> {encoded, text})
  const sections = new Map<string, Map<number, { enc: boolean; text: string }>>();
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    let name = p.slice(0, eq).trim().toLowerCase();
    const val = unquote(p.slice(eq + 1));
    const m = /^([^*]+)(?:\*(\d+))?(\*)?$/.exec(name);
    if (!m) continue;
    name = m[1];
    if (m[2] === undefined && m[3] === undefined) {
      if (!params.has(name)) params.set(name, val);
      continue;
    }
    let s = sections.get(name);
    if (!s) sections.set(name, (s = new Map()));
    const idx = m[2] === undefined ? 0 : Number(m[2]);
    if (idx < 1000 && !s.has(idx)) s.set(idx, { enc: m[3] !== undefined, text: val });
  }
  for (const [name, s] of sections) {
    let charset = '';
    const bytes: Buffer[] = [];
    for (let i = 0; s.has(i); i++) {
      const sec = s.get(i)!;
      let t = sec.text;
      if (sec.enc) {
        if (i === 0) {
          // RFC 2231 Section 4: charset'language'value
          const q = /^([^']*)'[^']*'(.*)$/s.exec(t);
          if (q) {
            charset = q[1];
            t = q[2];
          }
        }
        bytes.push(percentDecode(t));
      } else bytes.push(Buffer.from(t, 'utf8'));
    }
    if (!bytes.length) continue;
    const all = Buffer.concat(bytes);
    const d = charset ? decodeCharset(all, charset) : { text: all.toString('utf8'), known: true };
    if (!d.known) onUnknownCharset?.(charset);
    params.set(name, d.text); // the extended form wins over a plain one (RFC 2231 Section 4.1)
  }
  // Non-standard but common: RFC 2047 encoded words inside a quoted filename/name.
  for (const k of ['filename', 'name']) {
    const v = params.get(k);
    if (v !== undefined && v.includes('=?')) params.set(k, decodeEncodedWords(v, onUnknownCharset));
  }
  return { value, params };
}

export interface MimeLimits {
  /** Bytes of one header block (message or part) parsed; the rest is skipped and counted. */
  maxHeaderBytes: number;
  /** MIME parts tracked per message (attachments beyond are counted, not named). */
  maxParts: number;
  /** Nesting depth of multiparts tracked. */
  maxDepth: number;
}

export const DEFAULT_MIME_LIMITS: MimeLimits = { maxHeaderBytes: 64 * 1024, maxParts: 1000, maxDepth: 20 };

export interface Attachment {
  name: string;
  mimeType?: string;
  /** Encoded octets of the part body as transferred. */
  encodedBytes: number;
}

/** What the message parser found (the event fields of one mail). */
export interface MessageSummary {
  headers: Map<string, string>;
  subject?: string;
  messageId?: string;
  from: string[];
  to: string[];
  cc: string[];
  replyTo: string[];
  date?: string;
  contentType?: string;
  xMailer?: string;
  attachments: Attachment[];
  /** Parts seen (leaves and multiparts, the message itself included). */
  parts: number;
  /** Octets of the message as received (headers + body, after dot-unstuffing, CRLF counted). */
  bytes: number;
  /** Octets of header blocks. */
  headerBytes: number;
  anomalies: string[];
}

interface Frame {
  boundary: string;
}

const enum MState {
  Headers,
  Body,
}

/**
 * Streaming message parser: feed it each line of the message (no line terminator; the caller
 * has removed SMTP dot-stuffing), then `finish()`. Keeps at most one header block.
 */
export class MessageParser {
  private state = MState.Headers;
  private stack: Frame[] = [];
  private headerLines: string[] = [];
  private headerBytesBlock = 0;
  private headerSkipped = false;
  private isTop = true;
  private currentPart: Attachment | undefined;
  private pendingBoundary: string | undefined;
  readonly summary: MessageSummary = {
    headers: new Map(),
    from: [],
    to: [],
    cc: [],
    replyTo: [],
    attachments: [],
    parts: 0,
    bytes: 0,
    headerBytes: 0,
    anomalies: [],
  };

  constructor(private readonly limits: MimeLimits = DEFAULT_MIME_LIMITS) {}

  /** One line of the message; `fullLength` may exceed line.length for truncated long lines. */
  line(line: Buffer, fullLength = line.length): void {
    this.summary.bytes += fullLength + 2;
    if (this.state === MState.Headers) {
      this.summary.headerBytes += fullLength + 2;
      if (fullLength === 0) {
        this.endHeaders();
        return;
      }
      if (this.stack.length && line[0] === 0x2d && this.matchBoundary(line)) return; // part without body
      this.headerBytesBlock += fullLength + 2;
      if (this.headerBytesBlock > this.limits.maxHeaderBytes) {
        if (!this.headerSkipped) this.anomaly('smtp_header_limit');
        this.headerSkipped = true;
        return;
      }
      const text = line.toString('utf8');
      if ((line[0] === 0x20 || line[0] === 0x09) && this.headerLines.length) {
        this.headerLines[this.headerLines.length - 1] += ' ' + text.trim(); // unfold (RFC 5322 2.2.3)
      } else this.headerLines.push(text);
      return;
    }
    // body
    if (this.stack.length && line.length >= 2 && line[0] === 0x2d && line[1] === 0x2d && this.matchBoundary(line)) return;
    if (this.currentPart) this.currentPart.encodedBytes += fullLength + 2;
  }

  finish(): MessageSummary {
    if (this.state === MState.Headers) this.endHeaders();
    if (this.stack.length) this.anomaly('smtp_mime_unterminated');
    return this.summary;
  }

  private anomaly(code: string): void {
    if (this.summary.anomalies.length < 32) this.summary.anomalies.push(code);
  }

  /** `--boundary` or `--boundary--` of an open multipart (innermost first; outer ones close inner). */
  private matchBoundary(line: Buffer): boolean {
    const s = line.toString('latin1').replace(/[ \t]+$/, ''); // RFC 2046 5.1.1: trailing whitespace
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const b = this.stack[i].boundary;
      if (s.length < b.length + 2 || !s.startsWith(b, 2)) continue;
      const rest = s.slice(b.length + 2);
      if (rest === '') {
        this.stack.length = i + 1;
        this.startPart();
        return true;
      }
      if (rest === '--') {
        this.stack.length = i; // close this multipart: epilogue of the parent follows
        this.state = MState.Body;
        this.currentPart = undefined;
        return true;
      }
    }
    return false;
  }

  private startPart(): void {
    if (this.state === MState.Headers && this.headerLines.length) this.endHeaders(); // headers cut by a boundary
    this.state = MState.Headers;
    this.headerLines = [];
    this.headerBytesBlock = 0;
    this.headerSkipped = false;
    this.currentPart = undefined;
  }

  private endHeaders(): void {
    const top = this.isTop;
    this.isTop = false;
    this.state = MState.Body;
    this.summary.parts++;
    const h = new Map<string, string>();
    for (const l of this.headerLines) {
      const c = l.indexOf(':');
      if (c <= 0) {
        this.anomaly('smtp_header_malformed');
        continue;
      }
      const name = l.slice(0, c).trim().toLowerCase();
      if (!h.has(name)) h.set(name, l.slice(c + 1).trim());
    }
    this.headerLines = [];
    const cs = () => this.anomaly('smtp_unknown_charset');
    if (top) {
      this.summary.headers = h;
      const subj = h.get('subject');
      if (subj !== undefined) this.summary.subject = decodeEncodedWords(subj, cs);
      const mid = h.get('message-id');
      if (mid !== undefined) this.summary.messageId = mid.replace(/^\s*<|>\s*$/g, '').trim();
      this.summary.from = parseAddressList(h.get('from') ?? '');
      this.summary.to = parseAddressList(h.get('to') ?? '');
      this.summary.cc = parseAddressList(h.get('cc') ?? '');
      this.summary.replyTo = parseAddressList(h.get('reply-to') ?? '');
      this.summary.date = h.get('date');
      this.summary.xMailer = h.get('x-mailer') ?? h.get('user-agent');
    }
    const ct = h.has('content-type') ? parseHeaderParams(h.get('content-type')!, cs) : undefined;
    if (top) this.summary.contentType = ct?.value;
    if (ct && ct.value.startsWith('multipart/')) {
      const b = ct.params.get('boundary');
      if (b && this.stack.length < this.limits.maxDepth) this.stack.push({ boundary: b });
      else if (!b) this.anomaly('smtp_mime_no_boundary');
      else this.anomaly('smtp_mime_depth_limit');
      this.currentPart = undefined;
      return;
    }
    const cd = h.has('content-disposition') ? parseHeaderParams(h.get('content-disposition')!, cs) : undefined;
    const name = cd?.params.get('filename') ?? ct?.params.get('name');
    if (name !== undefined && name.length) {
      if (this.summary.attachments.length < this.limits.maxParts) {
        this.currentPart = { name, mimeType: ct?.value, encodedBytes: 0 };
        this.summary.attachments.push(this.currentPart);
      } else this.anomaly('smtp_mime_part_limit');
    } else this.currentPart = undefined;
  }
}
