/**
 * TLS handshake messages: reassembly across records and pure parsers for the messages the
 * decryption engine needs (RFC 5246 §7.4, RFC 8446 §4).
 *
 * Parsers take a complete message body and return a typed object, or `undefined` when the body
 * is malformed. Unknown code points (cipher suites, extensions, groups) are kept as numbers.
 * Parsed objects own their bytes (one copy of the body is taken), so they may outlive the record
 * buffers they came from.
 */
import type { AnomalySink } from '../types.js';
import { Reader } from './reader.js';

/** HandshakeType (RFC 8446 §4, RFC 5246 §7.4). */
export const HandshakeType = {
  HelloRequest: 0,
  ClientHello: 1,
  ServerHello: 2,
  HelloVerifyRequest: 3,
  NewSessionTicket: 4,
  EndOfEarlyData: 5,
  EncryptedExtensions: 8,
  Certificate: 11,
  ServerKeyExchange: 12,
  CertificateRequest: 13,
  ServerHelloDone: 14,
  CertificateVerify: 15,
  ClientKeyExchange: 16,
  Finished: 20,
  CertificateStatus: 22,
  KeyUpdate: 24,
  MessageHash: 254,
} as const;

/** ExtensionType values this module interprets (IANA TLS ExtensionType registry). */
export const ExtensionType = {
  ServerName: 0,
  SupportedGroups: 10,
  EcPointFormats: 11,
  SignatureAlgorithms: 13,
  Alpn: 16,
  EncryptThenMac: 22,
  ExtendedMasterSecret: 23,
  SessionTicket: 35,
  PreSharedKey: 41,
  EarlyData: 42,
  SupportedVersions: 43,
  PskKeyExchangeModes: 45,
  KeyShare: 51,
} as const;

export interface RawExtension {
  type: number;
  data: Buffer;
}

export interface ParsedClientHello {
  legacyVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuites: number[];
  compressionMethods: number[];
  /** Every extension in wire order (for fingerprinting: JA3/JA4). */
  extensions: RawExtension[];
  sni?: string;
  supportedGroups?: number[];
  ecPointFormats?: number[];
  signatureAlgorithms?: number[];
  alpn?: string[];
  encryptThenMac: boolean;
  extendedMasterSecret: boolean;
  /** session_ticket extension present; `sessionTicket` holds its (possibly empty) content. */
  sessionTicket?: Buffer;
  preSharedKey: boolean;
  pskIdentities?: Buffer[];
  earlyData: boolean;
  supportedVersions?: number[];
  pskKeyExchangeModes?: number[];
  keyShareGroups?: number[];
}

/** RFC 8446 §4.1.3: the ServerHello.random that marks a HelloRetryRequest (SHA-256("HelloRetryRequest")). */
export const HELLO_RETRY_REQUEST_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
);

export interface ParsedServerHello {
  legacyVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuite: number;
  compressionMethod: number;
  extensions: RawExtension[];
  isHelloRetryRequest: boolean;
  /** supported_versions selected_version (RFC 8446 §4.2.1), when present. */
  selectedVersion?: number;
  /** The negotiated version: selectedVersion, else legacyVersion. */
  version: number;
  alpn?: string;
  encryptThenMac: boolean;
  extendedMasterSecret: boolean;
  /** The server will send a NewSessionTicket (RFC 5077 §3.2). */
  sessionTicket: boolean;
  keyShare: boolean;
  keyShareGroup?: number;
  preSharedKey: boolean;
  selectedIdentity?: number;
}

export interface ParsedEncryptedExtensions {
  extensions: RawExtension[];
  alpn?: string;
  earlyData: boolean;
}

export interface ParsedCertificate {
  /** TLS 1.3 certificate_request_context (empty for server certificates). */
  context?: Buffer;
  certificates: Buffer[];
}

export interface ParsedNewSessionTicket {
  lifetime: number;
  ageAdd?: number;
  nonce?: Buffer;
  ticket: Buffer;
  extensions?: RawExtension[];
}

function parseExtensions(r: Reader): RawExtension[] {
  const out: RawExtension[] = [];
  if (r.remaining === 0) return out; // extensions are optional in TLS 1.2 hellos
  const list = r.sub16();
  while (list.remaining > 0) {
    const type = list.u16();
    const data = list.vec16();
    if (!list.ok) {
      r.ok = false;
      break;
    }
    out.push({ type, data });
  }
  return out;
}

function parseAlpnList(data: Buffer): string[] | undefined {
  const r = new Reader(data);
  const list = r.sub16();
  const out: string[] = [];
  while (list.remaining > 0) {
    const name = list.vec8();
    if (!list.ok) return undefined;
    out.push(name.toString('latin1'));
  }
  return r.ok && r.remaining === 0 ? out : undefined;
}

/** RFC 6066 §3: the host_name entry of a server_name extension. */
function parseSni(data: Buffer): string | undefined {
  const r = new Reader(data);
  const list = r.sub16();
  while (list.remaining > 0) {
    const type = list.u8();
    const name = list.vec16();
    if (!list.ok) return undefined;
    if (type === 0) return name.toString('latin1');
  }
  return undefined;
}

/** The last extension of `type` in the list starting at `extStart` of `own` (later ones win, as the eager parse did). */
function lastExtension(own: Buffer, extStart: number, type: number): Buffer | undefined {
  const r = new Reader(own, extStart);
  if (r.remaining === 0) return undefined;
  const list = r.sub16();
  let found: Buffer | undefined;
  while (list.remaining > 0) {
    const t = list.u16();
    const data = list.vec16();
    if (!list.ok) break;
    if (t === type) found = data;
  }
  return found;
}

/**
 * A parsed ClientHello. Memory: every flow waiting for its ServerHello keeps one, so only the
 * fields decryption reads on the way (random, session id, SNI, the EMS / EtM / early-data /
 * ticket flags) are stored; the lists (cipher suites, extensions in wire order, groups,
 * signature algorithms, ALPN, versions, ...) that only fingerprinting and events read, once, are
 * re-parsed from the hello's own bytes on access (bench/RESULTS.md, 100k flows).
 */
class ClientHelloView implements ParsedClientHello {
  legacyVersion: number;
  random: Buffer;
  sni?: string;
  encryptThenMac = false;
  extendedMasterSecret = false;
  sessionTicket?: Buffer;
  preSharedKey = false;
  earlyData = false;
  /** The whole handshake message (header included) when parsed from it, else undefined. */
  readonly message: Buffer | undefined;

  constructor(
    private readonly own: Buffer,
    private readonly base: number,
    private readonly extStart: number,
    hasHeader: boolean,
    legacyVersion: number,
    random: Buffer,
  ) {
    this.legacyVersion = legacyVersion;
    this.random = random;
    this.message = hasHeader ? own : undefined;
  }

  get sessionId(): Buffer {
    const at = this.base + 34;
    return this.own.subarray(at + 1, at + 1 + this.own[at]);
  }

  private ext(type: number): Buffer | undefined {
    return lastExtension(this.own, this.extStart, type);
  }
  /** Reader positioned after legacy_version, random and session id. */
  private afterSessionId(): Reader {
    const r = new Reader(this.own, this.base + 34);
    r.vec8();
    return r;
  }

  get cipherSuites(): number[] {
    return this.afterSessionId().u16List16();
  }
  get compressionMethods(): number[] {
    const r = this.afterSessionId();
    r.u16List16();
    return r.u8List8();
  }
  get extensions(): RawExtension[] {
    return parseExtensions(new Reader(this.own, this.extStart));
  }
  get supportedGroups(): number[] | undefined {
    const d = this.ext(ExtensionType.SupportedGroups);
    return d && new Reader(d).u16List16();
  }
  get ecPointFormats(): number[] | undefined {
    const d = this.ext(ExtensionType.EcPointFormats);
    return d && new Reader(d).u8List8();
  }
  get signatureAlgorithms(): number[] | undefined {
    const d = this.ext(ExtensionType.SignatureAlgorithms);
    return d && new Reader(d).u16List16();
  }
  get alpn(): string[] | undefined {
    const d = this.ext(ExtensionType.Alpn);
    return d && parseAlpnList(d);
  }
  get pskIdentities(): Buffer[] | undefined {
    // RFC 8446 §4.2.11: identities<7..2^16-1> of { identity<1..2^16-1>, uint32 age }.
    const d = this.ext(ExtensionType.PreSharedKey);
    return d && entries16(d, (r) => {
      const id = r.vec16();
      r.u32();
      return id;
    });
  }
  get supportedVersions(): number[] | undefined {
    const d = this.ext(ExtensionType.SupportedVersions);
    return d && new Reader(d).u16List8();
  }
  get pskKeyExchangeModes(): number[] | undefined {
    const d = this.ext(ExtensionType.PskKeyExchangeModes);
    return d && new Reader(d).u8List8();
  }
  /**
   * A string that determines every list the fingerprints (JA3/JA4) read through the getters above,
   * built from the hello's bytes without parsing them into arrays: legacy_version, the cipher
   * suite and compression vectors as on the wire, then the extension list walked as the getters
   * walk it (per entry its type, plus length and data of the extensions whose content a
   * fingerprint reads; after a framing error the raw rest). Random, session id and the
   * content of other extensions (SNI, key shares, PSK, padding) are left out, so hellos from one
   * client stack share a key. Same key => same getters' results for those fields.
   */
  fingerprintKey(): string {
    const own = this.own;
    let n = 0;
    const room = (k: number): void => {
      if (keyScratch.length < n + k) {
        const bigger = Buffer.allocUnsafe(Math.max(keyScratch.length * 2, n + k));
        keyScratch.copy(bigger, 0, 0, n);
        keyScratch = bigger;
      }
    };
    const put = (from: number, end: number): void => {
      const to = Math.min(end, own.length);
      if (to <= from) return;
      room(to - from);
      for (let i = from; i < to; i++) keyScratch[n++] = own[i];
    };
    const tag = (v: number): void => {
      room(1);
      keyScratch[n++] = v;
    };
    // Uniquely decodable (so distinct inputs never share a key): fixed-size or length-prefixed
    // fields, and a tag byte before each extension entry / error rest.
    put(this.base, this.base + 2);
    const sidAt = this.base + 34;
    put(sidAt + 1 + own[sidAt], this.extStart); // cipher_suites<2..> and compression_methods<1..> as validated
    const r = new Reader(own, this.extStart);
    if (r.remaining > 0) {
      const listLenAt = r.pos;
      const list = r.sub16();
      // The list length is implied by the entries (a parsed hello's list is well framed), so it
      // is left out with the entries' lengths: names of any length share a key.
      tag(3);
      if (!list.ok) {
        tag(2); // the getters see no extensions; keep the bytes anyway
        put(listLenAt + 2, own.length);
      }
      let at = listLenAt + 2;
      while (list.ok && list.remaining > 0) {
        const t = list.u16();
        const data = list.vec16();
        if (!list.ok) {
          tag(1); // framing error: the raw rest of the list
          put(at, listLenAt + 2 + list.buf.length);
          break;
        }
        tag(0);
        put(at, at + 2); // type; length and data only where the content is read
        if (FINGERPRINT_EXTENSIONS.has(t)) put(at + 2, at + 4 + data.length);
        at += 4 + data.length;
      }
    }
    return keyScratch.toString('latin1', 0, n);
  }
  get keyShareGroups(): number[] | undefined {
    // RFC 8446 §4.2.8: client_shares<0..2^16-1> of { group, key_exchange<1..2^16-1> }.
    const d = this.ext(ExtensionType.KeyShare);
    return d && entries16(d, (r) => {
      const g = r.u16();
      r.vec16();
      return g;
    });
  }
}

/** Extensions whose content JA3/JA4 read (the others count by type only). */
const FINGERPRINT_EXTENSIONS = new Set<number>([
  ExtensionType.SupportedGroups,
  ExtensionType.EcPointFormats,
  ExtensionType.SignatureAlgorithms,
  ExtensionType.Alpn,
  ExtensionType.SupportedVersions,
]);
let keyScratch = Buffer.allocUnsafe(1024);

/**
 * The entries of a `<0..2^16-1>` vector of structs, each read by `one` (which returns the part
 * kept); stops at the first entry that does not fit.
 */
function entries16<T>(d: Buffer, one: (r: Reader) => T): T[] {
  const list = new Reader(d).sub16();
  const out: T[] = [];
  while (list.remaining > 0) {
    const v = one(list);
    if (!list.ok) break;
    out.push(v);
  }
  return out;
}

/**
 * RFC 5246 §7.4.1.2, RFC 8446 §4.1.2. `message`, when given, is the whole handshake message
 * (4-byte header + body): it is copied instead of the body alone, and the copy is exposed as
 * `message` (for a transcript that needs it) so that one copy serves both.
 */
export function parseClientHello(body: Buffer, message?: Buffer): (ParsedClientHello & { readonly message?: Buffer }) | undefined {
  const own = Buffer.from(message ?? body);
  const base = message ? message.length - body.length : 0;
  const r = new Reader(own, base);
  const legacyVersion = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vec8();
  r.skipU16List16(); // cipher suites (validated here, re-read on access)
  r.vec8(); // compression methods
  const extStart = r.pos;
  if (!r.ok || sessionId.length > 32) return undefined;
  // Validate the extension list framing, reading the few extensions decryption needs.
  const ch = new ClientHelloView(own, base, extStart, message !== undefined, legacyVersion, random);
  if (r.remaining > 0) {
    const list = r.sub16();
    while (list.remaining > 0) {
      const type = list.u16();
      const len = list.u16();
      if (!list.ok || list.remaining < len) {
        r.ok = false;
        break;
      }
      // a view only for the two extensions whose content is kept (no Buffer per extension)
      switch (type) {
        case ExtensionType.ServerName:
          ch.sni = parseSni(list.bytes(len));
          continue;
        case ExtensionType.EncryptThenMac:
          ch.encryptThenMac = true;
          break;
        case ExtensionType.ExtendedMasterSecret:
          ch.extendedMasterSecret = true;
          break;
        case ExtensionType.SessionTicket:
          ch.sessionTicket = list.bytes(len);
          continue;
        case ExtensionType.PreSharedKey:
          ch.preSharedKey = true;
          break;
        case ExtensionType.EarlyData:
          ch.earlyData = true;
          break;
        default:
          break;
      }
      list.pos += len;
    }
  }
  if (!r.ok) return undefined;
  return ch;
}

/** RFC 5246 §7.4.1.3, RFC 8446 §4.1.3 (ServerHello and HelloRetryRequest). */
export function parseServerHello(body: Buffer): ParsedServerHello | undefined {
  const own = Buffer.from(body);
  const r = new Reader(own);
  const legacyVersion = r.u16();
  const random = r.bytes(32);
  const sessionId = r.vec8();
  const cipherSuite = r.u16();
  const compressionMethod = r.u8();
  const extensions = parseExtensions(r);
  if (!r.ok || sessionId.length > 32) return undefined;
  const sh: ParsedServerHello = {
    legacyVersion,
    random,
    sessionId,
    cipherSuite,
    compressionMethod,
    extensions,
    isHelloRetryRequest: random.equals(HELLO_RETRY_REQUEST_RANDOM),
    version: legacyVersion,
    encryptThenMac: false,
    extendedMasterSecret: false,
    sessionTicket: false,
    keyShare: false,
    preSharedKey: false,
  };
  for (const ext of extensions) {
    const e = new Reader(ext.data);
    switch (ext.type) {
      case ExtensionType.SupportedVersions: {
        const v = e.u16();
        if (e.ok) {
          sh.selectedVersion = v;
          sh.version = v;
        }
        break;
      }
      case ExtensionType.Alpn: {
        const list = parseAlpnList(ext.data);
        if (list && list.length === 1) sh.alpn = list[0];
        break;
      }
      case ExtensionType.EncryptThenMac:
        sh.encryptThenMac = true;
        break;
      case ExtensionType.ExtendedMasterSecret:
        sh.extendedMasterSecret = true;
        break;
      case ExtensionType.SessionTicket:
        sh.sessionTicket = true;
        break;
      case ExtensionType.KeyShare: {
        // ServerHello: one KeyShareEntry; HelloRetryRequest: selected_group only (§4.2.8).
        sh.keyShare = true;
        const g = e.u16();
        if (e.ok) sh.keyShareGroup = g;
        break;
      }
      case ExtensionType.PreSharedKey: {
        sh.preSharedKey = true;
        const id = e.u16();
        if (e.ok) sh.selectedIdentity = id;
        break;
      }
      default:
        break;
    }
  }
  return sh;
}

/** RFC 8446 §4.3.1. */
export function parseEncryptedExtensions(body: Buffer): ParsedEncryptedExtensions | undefined {
  const own = Buffer.from(body);
  const r = new Reader(own);
  const list = r.sub16();
  const extensions: RawExtension[] = [];
  while (list.remaining > 0) {
    const type = list.u16();
    const data = list.vec16();
    if (!list.ok) return undefined;
    extensions.push({ type, data });
  }
  if (!r.ok || r.remaining !== 0) return undefined;
  const ee: ParsedEncryptedExtensions = { extensions, earlyData: false };
  for (const ext of extensions) {
    if (ext.type === ExtensionType.Alpn) {
      const l = parseAlpnList(ext.data);
      if (l && l.length === 1) ee.alpn = l[0];
    } else if (ext.type === ExtensionType.EarlyData) {
      ee.earlyData = true;
    }
  }
  return ee;
}

/**
 * Certificate: TLS 1.2 (RFC 5246 §7.4.2: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>)
 * or TLS 1.3 (RFC 8446 §4.4.2: a request context, then CertificateEntry with per-entry extensions).
 */
export function parseCertificate(body: Buffer, tls13: boolean, copy = true): ParsedCertificate | undefined {
  // copy = false: the certificates (and context) are views of `body`, for a caller that keeps
  // what it needs itself (TlsFlowHandler interns each certificate: internCertificate)
  const own = copy ? Buffer.from(body) : body;
  const r = new Reader(own);
  const context = tls13 ? r.vec8() : undefined;
  const list = r.sub24();
  const certificates: Buffer[] = [];
  while (list.remaining > 0) {
    const cert = list.vec24();
    if (tls13) list.vec16();
    if (!list.ok) return undefined;
    certificates.push(cert);
  }
  if (!r.ok || r.remaining !== 0) return undefined;
  return { context, certificates };
}

/**
 * ClientKeyExchange with RSA key transport (RFC 5246 §7.4.7.1): EncryptedPreMasterSecret with a
 * 2-byte length prefix in TLS 1.0 and later; SSLv3 sent it bare. Returns the encrypted bytes.
 */
export function parseRsaClientKeyExchange(body: Buffer, version: number): Buffer | undefined {
  if (version === 0x0300) return body.length > 0 ? Buffer.from(body) : undefined;
  const r = new Reader(body);
  const enc = r.vec16();
  if (!r.ok || r.remaining !== 0 || enc.length === 0) return undefined;
  return Buffer.from(enc);
}

/** NewSessionTicket: RFC 5077 §3.3 (TLS 1.2) or RFC 8446 §4.6.1 (TLS 1.3). */
export function parseNewSessionTicket(body: Buffer, tls13: boolean): ParsedNewSessionTicket | undefined {
  const own = Buffer.from(body);
  const r = new Reader(own);
  const lifetime = r.u32();
  if (!tls13) {
    const ticket = r.vec16();
    if (!r.ok || r.remaining !== 0) return undefined;
    return { lifetime, ticket };
  }
  const ageAdd = r.u32();
  const nonce = r.vec8();
  const ticket = r.vec16();
  const exts = r.sub16();
  const extensions: RawExtension[] = [];
  while (exts.remaining > 0) {
    const type = exts.u16();
    const data = exts.vec16();
    if (!exts.ok) return undefined;
    extensions.push({ type, data });
  }
  if (!r.ok || r.remaining !== 0 || ticket.length === 0) return undefined;
  return { lifetime, ageAdd, nonce, ticket, extensions };
}

/** RFC 8446 §4.6.3: KeyUpdateRequest update_not_requested(0) / update_requested(1). */
export function parseKeyUpdate(body: Buffer): { requestUpdate: boolean } | undefined {
  if (body.length !== 1 || body[0] > 1) return undefined;
  return { requestUpdate: body[0] === 1 };
}

/** Finished (RFC 5246 §7.4.9, RFC 8446 §4.4.4): the verify_data, copied. */
export function parseFinished(body: Buffer): Buffer | undefined {
  return body.length > 0 ? Buffer.from(body) : undefined;
}

export interface HandshakeReassemblerOptions {
  /** Messages declaring a larger body are skipped and counted as `tls_handshake_too_large`. */
  maxHandshakeMessageBytes: number;
}

/**
 * Reassembles handshake messages from the fragments of consecutive handshake records
 * (RFC 5246 §6.2.1: "multiple client messages of the same ContentType MAY be coalesced into a
 * single TLSPlaintext record, or a single message MAY be fragmented across several records").
 *
 * A message wholly inside one fragment is delivered as a view; one that spans fragments is copied
 * into a reused buffer. `raw` includes the 4-byte header (for transcript hashes). Views are valid
 * only during the callback.
 */
export interface HandshakeSink {
  message(type: number, body: Buffer, raw: Buffer): void;
}

const NO_BUF = Buffer.alloc(0);

export class HandshakeReassembler {
  private buf: Buffer = NO_BUF;
  private len = 0;
  /** Body bytes of an oversized message still to discard. */
  private discard = 0;
  private readonly sink: HandshakeSink;

  /** `onMessage`: a callback, or an object whose `message` method is called (no closure per user). */
  constructor(
    onMessage: ((type: number, body: Buffer, raw: Buffer) => void) | HandshakeSink,
    private readonly anomalies: AnomalySink,
    private readonly opts: HandshakeReassemblerOptions,
  ) {
    this.sink = typeof onMessage === 'function' ? { message: onMessage } : onMessage;
  }

  /** Bytes of an incomplete message held. */
  get buffered(): number {
    return this.len;
  }

  /** Drop a partial message (after a gap: it can never complete correctly). */
  reset(): void {
    this.len = 0;
    this.discard = 0;
  }

  push(fragment: Buffer): void {
    let off = 0;
    const n = fragment.length;
    if (this.discard > 0) {
      const d = Math.min(this.discard, n);
      this.discard -= d;
      off = d;
    }
    while (off < n) {
      if (this.len > 0) {
        if (this.len < 4) {
          const take = Math.min(4 - this.len, n - off);
          this.ensure(4);
          fragment.copy(this.buf, this.len, off, off + take);
          this.len += take;
          off += take;
          if (this.len < 4) return;
          const bodyLen = this.buf.readUIntBE(1, 3);
          if (bodyLen > this.opts.maxHandshakeMessageBytes) {
            this.tooLarge(this.buf[0], bodyLen);
            this.len = 0;
            const d = Math.min(bodyLen, n - off);
            this.discard = bodyLen - d;
            off += d;
            continue;
          }
          this.ensure(4 + bodyLen);
        }
        const total = 4 + this.buf.readUIntBE(1, 3);
        const take = Math.min(total - this.len, n - off);
        fragment.copy(this.buf, this.len, off, off + take);
        this.len += take;
        off += take;
        if (this.len === total) {
          this.len = 0;
          this.sink.message(this.buf[0], this.buf.subarray(4, total), this.buf.subarray(0, total));
        }
        continue;
      }
      const rem = n - off;
      if (rem < 4) {
        this.ensure(4);
        fragment.copy(this.buf, 0, off, n);
        this.len = rem;
        return;
      }
      const bodyLen = fragment.readUIntBE(off + 1, 3);
      if (bodyLen > this.opts.maxHandshakeMessageBytes) {
        this.tooLarge(fragment[off], bodyLen);
        const d = Math.min(bodyLen, rem - 4);
        this.discard = bodyLen - d;
        off += 4 + d;
        continue;
      }
      const total = 4 + bodyLen;
      if (rem >= total) {
        this.sink.message(fragment[off], fragment.subarray(off + 4, off + total), fragment.subarray(off, off + total));
        off += total;
      } else {
        this.ensure(total);
        fragment.copy(this.buf, 0, off, n);
        this.len = rem;
        return;
      }
    }
  }

  private tooLarge(type: number, bodyLen: number): void {
    this.anomalies.anomaly('tls_handshake_too_large', `type=${type} length=${bodyLen}`);
  }

  private ensure(size: number): void {
    if (this.buf.length < size) {
      const next = Buffer.allocUnsafe(Math.max(size, Math.min(this.buf.length * 2, 4 + this.opts.maxHandshakeMessageBytes)));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
  }
}
