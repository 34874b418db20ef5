/**
 * DTLS 1.0 / 1.2 framing (RFC 4347, RFC 6347): records in datagrams, and handshake messages
 * reassembled from their fragments.
 *
 * - Record (RFC 6347 §4.1): type(1) || version(2) || epoch(2) || sequence_number(6) || length(2)
 *   || fragment; a datagram holds one or more whole records. Each record carries its own epoch
 *   and sequence number, so lost, reordered or duplicated records need no resynchronisation.
 * - Handshake message (§4.2.2): msg_type(1) || length(3) || message_seq(2) || fragment_offset(3)
 *   || fragment_length(3) || fragment; a message may be split over records (and datagrams), and
 *   is retransmitted whole or in other fragments when a flight is lost (§4.2.4).
 *
 * Pure parsing: no crypto, no events. Malformed input is reported to the caller, never thrown.
 */
import type { AnomalySink } from '../types.js';

export const DTLS10 = 0xfeff;
export const DTLS12 = 0xfefd;
export const DTLS13 = 0xfefc;
export const DTLS_RECORD_HEADER_LEN = 13;
export const DTLS_HANDSHAKE_HEADER_LEN = 12;
/** RFC 6347 §4.1: a record's length must not exceed 2^14 + 2048 (TLSCiphertext). */
export const DTLS_MAX_RECORD_LEN = 16384 + 2048;

export const DtlsContentType = { ChangeCipherSpec: 20, Alert: 21, Handshake: 22, ApplicationData: 23 } as const;

export interface DtlsRecord {
  type: number;
  version: number;
  epoch: number;
  /** The 48-bit sequence number (exact in a double). */
  seq: number;
  /** The record body: a view into the datagram, valid only while the datagram is. */
  fragment: Buffer;
}

/**
 * The records of a datagram, appended to `out`. Returns false when the datagram does not end on a
 * record boundary with well-formed headers (unknown content type, a version that is not DTLS, a
 * length past the datagram or the limit): the records before the bad one are kept.
 */
export function splitRecords(d: Buffer, out: DtlsRecord[]): boolean {
  let i = 0;
  while (i < d.length) {
    if (d.length - i < DTLS_RECORD_HEADER_LEN) return false;
    const type = d[i];
    const len = (d[i + 11] << 8) | d[i + 12];
    // content types 20..25 (25: tls12_cid, RFC 9146), versions 0xfeXX
    if (type < 20 || type > 25 || d[i + 1] !== 0xfe || len > DTLS_MAX_RECORD_LEN || i + DTLS_RECORD_HEADER_LEN + len > d.length) return false;
    out.push({
      type,
      version: (d[i + 1] << 8) | d[i + 2],
      epoch: (d[i + 3] << 8) | d[i + 4],
      seq: d.readUIntBE(i + 5, 6),
      fragment: d.subarray(i + DTLS_RECORD_HEADER_LEN, i + DTLS_RECORD_HEADER_LEN + len),
    });
    i += DTLS_RECORD_HEADER_LEN + len;
  }
  return true;
}

/**
 * Whether a datagram starts as a client's first flight does: a handshake record of epoch 0 in a
 * DTLS version (1.0, 1.2, or 1.3's legacy 1.2 / 1.0 values) whose first handshake fragment is a
 * ClientHello with a consistent DTLS handshake header. Port-independent (detection by content).
 */
export function looksLikeClientHello(d: Buffer): boolean {
  if (d.length < DTLS_RECORD_HEADER_LEN + DTLS_HANDSHAKE_HEADER_LEN + 2) return false;
  if (d[0] !== DtlsContentType.Handshake || d[1] !== 0xfe || (d[2] !== 0xff && d[2] !== 0xfd)) return false;
  if (d[3] !== 0 || d[4] !== 0) return false; // epoch 0
  const len = d.readUInt16BE(11);
  if (len < DTLS_HANDSHAKE_HEADER_LEN || DTLS_RECORD_HEADER_LEN + len > d.length) return false;
  const h = DTLS_RECORD_HEADER_LEN;
  if (d[h] !== 1) return false; // ClientHello
  const msgLen = d.readUIntBE(h + 1, 3);
  const fragOff = d.readUIntBE(h + 6, 3);
  const fragLen = d.readUIntBE(h + 9, 3);
  return fragLen <= len - DTLS_HANDSHAKE_HEADER_LEN && fragOff + fragLen <= msgLen && msgLen >= 38;
}

/**
 * Whether a datagram is wholly protected DTLS 1.0 / 1.2 records (epoch 1 or later, content types
 * 20-23, lengths chaining exactly to its end): an association whose handshake the capture missed.
 */
export function looksLikeProtectedRecords(d: Buffer): boolean {
  // cheap rejections first: most UDP flows are not DTLS
  if (d.length < DTLS_RECORD_HEADER_LEN + 16 || d[0] < 20 || d[0] > 23 || d[1] !== 0xfe || (d[2] !== 0xff && d[2] !== 0xfd)) return false;
  const recs: DtlsRecord[] = [];
  if (!splitRecords(d, recs)) return false;
  return recs.every((r) => r.epoch > 0 && r.type <= 23 && (r.version === DTLS10 || r.version === DTLS12) && r.fragment.length >= 16);
}

/** A complete handshake message. */
export interface DtlsHandshakeMessage {
  type: number;
  messageSeq: number;
  /** The body (without the 12-byte header), owned by the message. */
  body: Buffer;
  /** Epoch of the record that completed it. */
  epoch: number;
}

export interface HandshakeAssemblerOptions {
  /** Largest handshake message accepted (a certificate chain is the largest usual one). */
  maxMessageBytes: number;
  /** Messages held incomplete at once; beyond it the oldest is dropped. */
  maxPartialMessages: number;
}

export const DEFAULT_HANDSHAKE_ASSEMBLER_OPTIONS: Readonly<HandshakeAssemblerOptions> = Object.freeze({
  maxMessageBytes: 256 * 1024,
  maxPartialMessages: 16,
});

interface PartialMessage {
  type: number;
  buf: Buffer;
  /** Covered byte ranges [start, end), sorted and disjoint. */
  have: Array<[number, number]>;
}

/**
 * One direction's handshake messages from their fragments (RFC 6347 §4.2.3): a message is
 * delivered once, when all its bytes have arrived (in any order, over any records; overlapping
 * fragments of a retransmission are fine), and a message_seq already delivered is ignored
 * (retransmitted flights). Messages are delivered as they complete, not in message_seq order:
 * every message the decryption needs (ClientHello, ServerHello, Certificate, Finished) is read on
 * its own. Anomalies: dtls_malformed_handshake (a fragment header that does not fit its record or
 * its message), dtls_handshake_mismatch (a fragment whose type or length contradicts earlier
 * fragments of the same message_seq), dtls_handshake_too_large, dtls_handshake_dropped.
 */
export class HandshakeAssembler {
  private readonly partial = new Map<number, PartialMessage>();
  private readonly done = new Set<number>();
  private readonly opts: HandshakeAssemblerOptions;

  constructor(
    private readonly anomalies: AnomalySink,
    opts: Partial<HandshakeAssemblerOptions> = {},
  ) {
    this.opts = { ...DEFAULT_HANDSHAKE_ASSEMBLER_OPTIONS, ...opts };
  }

  /** The handshake record body `data` (one or more fragments); complete messages are appended to `out`. */
  add(data: Buffer, epoch: number, out: DtlsHandshakeMessage[]): void {
    let i = 0;
    while (i < data.length) {
      if (data.length - i < DTLS_HANDSHAKE_HEADER_LEN) {
        this.anomalies.anomaly('dtls_malformed_handshake');
        return;
      }
      const type = data[i];
      const msgLen = data.readUIntBE(i + 1, 3);
      const msgSeq = data.readUInt16BE(i + 4);
      const off = data.readUIntBE(i + 6, 3);
      const fragLen = data.readUIntBE(i + 9, 3);
      const start = i + DTLS_HANDSHAKE_HEADER_LEN;
      if (start + fragLen > data.length || off + fragLen > msgLen) {
        this.anomalies.anomaly('dtls_malformed_handshake');
        return;
      }
      i = start + fragLen;
      if (this.done.has(msgSeq)) continue; // a retransmission of a message already delivered
      if (msgLen > this.opts.maxMessageBytes) {
        this.anomalies.anomaly('dtls_handshake_too_large');
        continue;
      }
      const frag = data.subarray(start, start + fragLen);
      if (off === 0 && fragLen === msgLen && !this.partial.has(msgSeq)) {
        this.deliver(msgSeq, type, Buffer.from(frag), epoch, out);
        continue;
      }
      let p = this.partial.get(msgSeq);
      if (p === undefined) {
        if (this.partial.size >= this.opts.maxPartialMessages) {
          const oldest = this.partial.keys().next().value as number;
          this.partial.delete(oldest);
          this.anomalies.anomaly('dtls_handshake_dropped');
        }
        p = { type, buf: Buffer.alloc(msgLen), have: [] };
        this.partial.set(msgSeq, p);
      } else if (p.type !== type || p.buf.length !== msgLen) {
        this.anomalies.anomaly('dtls_handshake_mismatch');
        continue;
      }
      frag.copy(p.buf, off);
      if (fragLen > 0) cover(p.have, off, off + fragLen);
      if (msgLen === 0 || (p.have.length === 1 && p.have[0][0] === 0 && p.have[0][1] === msgLen)) {
        this.partial.delete(msgSeq);
        this.deliver(msgSeq, type, p.buf, epoch, out);
      }
    }
  }

  private deliver(messageSeq: number, type: number, body: Buffer, epoch: number, out: DtlsHandshakeMessage[]): void {
    this.done.add(messageSeq);
    out.push({ type, messageSeq, body, epoch });
  }

  /** Bytes held in incomplete messages. */
  get heldBytes(): number {
    let n = 0;
    for (const p of this.partial.values()) n += p.buf.length;
    return n;
  }
}

/** Adds [s, e) to a sorted list of disjoint ranges, merging what touches or overlaps. */
function cover(have: Array<[number, number]>, s: number, e: number): void {
  let i = 0;
  while (i < have.length && have[i][1] < s) i++;
  let j = i;
  while (j < have.length && have[j][0] <= e) {
    s = Math.min(s, have[j][0]);
    e = Math.max(e, have[j][1]);
    j++;
  }
  have.splice(i, j - i, [s, e]);
}

/**
 * The DTLS ClientHello body without its cookie (RFC 6347 §4.2.1: client_version, random,
 * session_id, cookie<0..2^8-1>, then as TLS): the TLS ClientHello body the TLS parser reads, and the
 * cookie's length. Undefined when the body is too short for the fields up to the cookie.
 */
export function clientHelloWithoutCookie(body: Buffer): { tlsBody: Buffer; cookieLen: number } | undefined {
  if (body.length < 35) return undefined;
  const sidEnd = 35 + body[34];
  if (sidEnd + 1 > body.length) return undefined;
  const cookieLen = body[sidEnd];
  if (sidEnd + 1 + cookieLen > body.length) return undefined;
  return { tlsBody: Buffer.concat([body.subarray(0, sidEnd), body.subarray(sidEnd + 1 + cookieLen)]), cookieLen };
}

/**
 * A 64-record anti-replay window of one direction and epoch (RFC 6347 §4.1.2.6): whether a
 * sequence number was already accepted. Updated only for records that authenticated.
 */
export class ReplayWindow {
  /** Records accepted (each sequence number once). */
  accepted = 0;
  /** Records that failed authentication (not accepted: their numbers count as used). */
  failed = 0;
  /** Highest sequence number accepted, -1 before the first. */
  max = -1;
  /** Bit i: max - i was accepted (i < 64). */
  private bits = 0n;

  seen(seq: number): boolean {
    if (seq > this.max) return false;
    const d = this.max - seq;
    return d >= 64 || ((this.bits >> BigInt(d)) & 1n) === 1n;
  }

  accept(seq: number): void {
    this.accepted++;
    if (seq > this.max) {
      const shift = this.max < 0 ? 64 : seq - this.max;
      this.bits = shift >= 64 ? 1n : ((this.bits << BigInt(shift)) | 1n) & 0xffffffffffffffffn;
      this.max = seq;
      return;
    }
    const d = this.max - seq;
    if (d < 64) this.bits |= 1n << BigInt(d);
  }

  /**
   * Sequence numbers up to the highest accepted that were neither accepted nor failed: records
   * the capture never had (each epoch numbers its records from 0, RFC 6347 §4.1).
   */
  get missing(): number {
    return Math.max(0, this.max + 1 - this.accepted - this.failed);
  }
}
