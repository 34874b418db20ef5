/**
 * One direction's TLS read state: decrypts protected records (RFC 5246 §6.2.3, RFC 8446 §5.2).
 *
 * Hot path: called once per record. It allocates the decipher (node:crypto has no way to re-key
 * an AEAD context with a new nonce), the returned plaintext and the result object; the nonce,
 * additional data and sequence-number scratch buffers are reused (node copies them into the
 * OpenSSL context during the call, so reuse across calls is safe).
 *
 * Bad records never throw: they come back as `{ ok: false, error }`.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual, type CipherGCM } from 'node:crypto';
import type { CipherSuite } from './suites.js';
import type { TrafficKeys } from './prf.js';
import { BATCH_NONCE, GcmKey } from '../../quic/gcmBatch.js';
import { Rc4 } from './rc4.js';

export type DecryptError = 'integrity_failure' | 'malformed' | 'unsupported_cipher';
export type DecryptResult = { ok: true; contentType: number; plaintext: Buffer } | { ok: false; error: DecryptError };

export interface DecryptorOptions {
  tls13: boolean;
  /** RFC 7366 encrypt-then-MAC negotiated (CBC suites only). */
  encryptThenMac: boolean;
  /**
   * Negotiated protocol version (wire value), default 0x0303. Only matters for CBC: TLS 1.0
   * (0x0301, RFC 2246 §6.2.3.2) has no explicit per-record IV; the IV is the previous record's
   * last ciphertext block, starting with the key-block IV (`keys.iv`, one cipher block).
   */
  version?: number;
}

/** RFC 5246 §6.2.1: the record header is type(1) || version(2) || length(2). */
export const RECORD_HEADER_LEN = 5;
const TLS10 = 0x0301;

/**
 * Nonce and additional-data scratch shared by all decryptors: filled and consumed within one
 * synchronous decrypt call (node copies them into the OpenSSL context), so no two uses overlap,
 * and a decryptor needs no buffers of its own (two ArrayBuffer allocations per decryptor saved).
 */
const NONCE = Buffer.alloc(12);
const AAD = Buffer.alloc(13);

/** The record header padded to a GHASH block (authenticateAppData13), zeros after the 5 bytes. */
const HEADER_BLOCK = Buffer.alloc(16);
/** One AES input block (counter block) for the ECB context. */
const AES_IN = Buffer.alloc(16);
/**
 * batchAppData13 computes its keystream blocks for this many records ahead in one ECB call (per
 * record J0 and the block holding the content type, for the length of the record that asked):
 * records of one run mostly have one length, and an ECB call costs more than the AES.
 */
const AHEAD = 32;
const AHEAD_IN = Buffer.alloc(AHEAD * 32);
const TLS13_APPLICATION_DATA = 23;

/**
 * X * Y in GF(2^128) as GCM defines it (NIST SP 800-38D §6.3, Algorithm 1: bit 0 is the most
 * significant bit of the first byte; R = 11100001 || 0^120), on 32-bit big-endian words; the
 * product is written to `out`.
 */
function gfMul(x0: number, x1: number, x2: number, x3: number, y: Int32Array, out: Int32Array): void {
  let z0 = 0, z1 = 0, z2 = 0, z3 = 0;
  let v0 = y[0], v1 = y[1], v2 = y[2], v3 = y[3];
  for (let i = 0; i < 128; i++) {
    const w = i < 64 ? (i < 32 ? x0 : x1) : i < 96 ? x2 : x3;
    if ((w >>> (31 - (i & 31))) & 1) {
      z0 ^= v0;
      z1 ^= v1;
      z2 ^= v2;
      z3 ^= v3;
    }
    const lsb = v3 & 1;
    v3 = (v3 >>> 1) | (v2 << 31);
    v2 = (v2 >>> 1) | (v1 << 31);
    v1 = (v1 >>> 1) | (v0 << 31);
    v0 >>>= 1;
    if (lsb) v0 ^= 0xe1000000;
  }
  out[0] = z0;
  out[1] = z1;
  out[2] = z2;
  out[3] = z3;
}

/** Writes the counter block nonce(12) || counter(32-bit big-endian) at b[o]. */
function counterBlock(b: Buffer, o: number, nonce: Buffer, counter: number): void {
  for (let i = 0; i < 12; i++) b[o + i] = nonce[i];
  b[o + 12] = counter >>> 24;
  b[o + 13] = (counter >>> 16) & 0xff;
  b[o + 14] = (counter >>> 8) & 0xff;
  b[o + 15] = counter & 0xff;
}

function be32(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

const MALFORMED: DecryptResult = Object.freeze({ ok: false, error: 'malformed' }) as DecryptResult;
const INTEGRITY: DecryptResult = Object.freeze({ ok: false, error: 'integrity_failure' }) as DecryptResult;
const UNSUPPORTED: DecryptResult = Object.freeze({ ok: false, error: 'unsupported_cipher' }) as DecryptResult;

/** The parts of node's DecipherGCM / DecipherCCM / DecipherChaCha20Poly1305 we use. */
interface AeadDecipher {
  setAuthTag(tag: Buffer): unknown;
  setAAD(aad: Buffer, opts?: { plaintextLength: number }): unknown;
  update(data: Buffer): Buffer;
  final(): Buffer;
}

export class RecordDecryptor {
  /** Next record sequence number (RFC 5246 §6.1, RFC 8446 §5.3); the caller may set it when resynchronising. */
  seq = 0n;

  private readonly suite: CipherSuite;
  private readonly tls13: boolean;
  private readonly etm: boolean;
  private readonly tls10Cbc: boolean;
  /**
   * The raw key (no KeyObject: createSecretKey costs ~2.7 us and createDecipheriv is no faster
   * with one). Keys are never mutated after derivation.
   */
  private readonly key: Buffer | undefined;
  private readonly iv: Buffer;
  /** Last 8 bytes of a 12-byte IV as a number, precomputed for the per-record nonce XOR. */
  private readonly ivTail: bigint;
  private readonly macKey: Buffer;
  private readonly ccm: boolean;
  /** createDecipheriv options of the AEAD (one object per decryptor, not per record). */
  private readonly aeadOpts: { authTagLength: number };
  /** 12-byte AEAD nonce scratch (shared by every decryptor, see NONCE). */
  private readonly nonce = NONCE;
  /** TLS 1.2 AEAD additional data / CBC MAC header: seq(8) || type(1) || version(2) || length(2). */
  private readonly aad = AAD;
  /** TLS 1.0 CBC chained IV (a private copy: the caller's fragment buffers are not ours to keep). */
  private chainIv: Buffer | undefined;
  /** CBC: the cipher's block size (16, or 8 for 3DES). */
  private readonly block: number;
  /**
   * RC4 suites: the direction's keystream, which every record moves on whether or not its MAC
   * verifies (the sender's did). decrypt() and tryResync() run it once over the record into
   * rc4Plain, which the MAC checks under one or several sequence numbers then read.
   */
  private rc4: Rc4 | undefined;
  private rc4Plain: Buffer | undefined;
  /**
   * authenticateAppData13 / batchAppData13: an AES-ECB context under the record key (made on first
   * use, kept: ECB carries no state between whole blocks) for GCM's hash key H and single
   * keystream blocks, with the batch context's expected tag.
   */
  private gk: GcmKey | undefined;
  /** batchAppData13: the open batch's GCM context, its additional-data bytes so far, the sequence number of its first record. */
  private batch: CipherGCM | undefined;
  private batchBytes = 0;
  private batchSeq = 0n;
  /**
   * What follows a record's ciphertext in the batch's additional data, held until the next record
   * so that one setAAD call takes it with that record's header block: zero padding to a block
   * (bytes 15 - tailPad .. 14), the length block (15..30), Y (31..46); then the next header block
   * (47..62). tailPad -1: nothing held.
   */
  private tail: Buffer | undefined;
  private tailPad = -1;
  /** Keystream blocks computed ahead (AHEAD): for ciphertext length aheadN, record aheadIdx's pair is next, for sequence number aheadSeq. */
  private ahead: Buffer | undefined;
  private aheadN = -1;
  private aheadIdx = AHEAD;
  private aheadSeq = -1n;
  /** GCM's hash key H = AES_K(0^128) as big-endian words. */
  private readonly h = new Int32Array(4);
  /** The tag correction (L xor L') * H for ciphertext length fixN (authenticateAppData13). */
  private readonly fix = new Int32Array(4);
  private fixN = -1;
  /** Whether authenticateAppData13 applies (TLS 1.3, AES-GCM with a 16-byte tag, usable keys). */
  private readonly gcm13: boolean;

  constructor(suite: CipherSuite, keys: TrafficKeys, opts: DecryptorOptions) {
    this.suite = suite;
    this.tls13 = opts.tls13;
    this.etm = opts.encryptThenMac && suite.kind === 'cbc';
    this.tls10Cbc = suite.kind === 'cbc' && (opts.version ?? 0x0303) <= TLS10;
    this.block = suite.blockLen || 16;
    this.iv = keys.iv;
    this.ivTail = keys.iv.length === 12 ? keys.iv.readBigUInt64BE(4) : 0n;
    this.macKey = keys.macKey;
    this.ccm = suite.cipher.endsWith('-ccm');
    this.aeadOpts = { authTagLength: suite.tagLen };
    this.key = RecordDecryptor.usable(suite, keys, opts.tls13, this.tls10Cbc) ? keys.key : undefined;
    if (this.tls10Cbc && this.key) this.chainIv = Buffer.from(keys.iv);
    if (suite.kind === 'stream' && this.key) this.rc4 = new Rc4(this.key);
    this.gcm13 = this.key !== undefined && this.tls13 && (suite.cipher === 'aes-128-gcm' || suite.cipher === 'aes-256-gcm') && suite.tagLen === 16;
  }

  /**
   * TLS 1.3 AES-GCM, for a record whose plaintext nobody reads (AppStream.skippable): checks the
   * record's tag without decrypting the record, and reads only its content type. Returns the
   * length of the application data it holds, with the sequence number advanced, when the tag
   * verifies, the record has no padding and its content type is application_data; otherwise -1
   * with nothing changed, and the caller decrypts the record with decrypt() (which also reports a
   * bad tag).
   *
   * How (NIST SP 800-38D §7.2): the tag is E_K(J0) xor GHASH_H(A' || C' || len(A) || len(C)),
   * with A, C each zero-padded to whole blocks. An encryption under the same key and nonce with
   * no plaintext and the additional data (header padded to a block) || ciphertext hashes the very
   * same blocks, except that its last block is len(16 + |C|) || len(0). GHASH is linear, so the
   * record's tag is that tag xor (L xor L') * H: one multiplication, with H = AES_K(0^128). The
   * hash over the ciphertext runs in OpenSSL (GHASH alone, no CTR pass and no plaintext buffer);
   * the content type is the last ciphertext byte xor one keystream block AES_K(nonce || 2 + b).
   */
  authenticateAppData13(header: Buffer, fragment: Buffer): number {
    if (!this.gcm13 || header.length < RECORD_HEADER_LEN || fragment.length < 17) return -1;
    const n = fragment.length - 16; // ciphertext length, content type included
    const key = this.key as Buffer;
    const nonce = this.xorNonce(this.seq);
    // The content type: the last inner-plaintext byte (no padding: a zero there means padding).
    counterBlock(AES_IN, 0, nonce, ((n - 1) >>> 4) + 2); // the block holding byte n - 1 (J0 + 1 is the first)
    const ks = this.gcmKey().ecb.update(AES_IN);
    if ((fragment[n - 1] ^ ks[(n - 1) & 15]) !== TLS13_APPLICATION_DATA) return -1;
    // The tag over (header block || ciphertext) as additional data.
    let t: Buffer;
    try {
      const g = createCipheriv(this.suite.cipher as 'aes-128-gcm', key, nonce, { authTagLength: 16 });
      for (let i = 0; i < RECORD_HEADER_LEN; i++) HEADER_BLOCK[i] = header[i];
      g.setAAD(HEADER_BLOCK);
      g.setAAD(fragment.subarray(0, n));
      g.final();
      t = g.getAuthTag();
    } catch {
      return -1;
    }
    // (L xor L') * H: L = len(A) = 40 bits || len(C) = 8n bits; L' = 8 * (16 + n) bits || 0 (all
    // < 2^32). It depends on n only, and a bulk transfer's records mostly have one length.
    const fix = this.fix;
    if (n !== this.fixN) {
      gfMul(0, 40 ^ (8 * (16 + n)), 0, 8 * n, this.h, fix);
      this.fixN = n;
    }
    const d =
      (be32(t, 0) ^ fix[0] ^ be32(fragment, n)) |
      (be32(t, 4) ^ fix[1] ^ be32(fragment, n + 4)) |
      (be32(t, 8) ^ fix[2] ^ be32(fragment, n + 8)) |
      (be32(t, 12) ^ fix[3] ^ be32(fragment, n + 12));
    if (d !== 0) return -1;
    this.seq++;
    return n - 1;
  }

  /**
   * authenticateAppData13 for a run of records: adds the record to this decryptor's open batch,
   * one GCM context for the whole run (made by the first record), and answers as
   * authenticateAppData13 does except that the tag is only checked by checkBatch(): until then
   * nobody may use the answer. Per record: J0 and the content type's counter block in one ECB call;
   * as additional data of the batch context, the record's GHASH input (header padded to a block,
   * ciphertext padded to a block, length block) followed by Y = tag xor E_K(J0), which GHASH_H of
   * that input equals exactly when the record is authentic; GHASH being linear, a run of authentic
   * records hashes as zeros do (src/quic/gcmBatch.ts says why, for QUIC packets). The context costs
   * several times the GHASH of a 16 KiB record when made per record.
   */
  batchAppData13(header: Buffer, fragment: Buffer): number {
    if (!this.gcm13 || header.length < RECORD_HEADER_LEN || fragment.length < 17) return -1;
    const n = fragment.length - 16;
    const gk = this.gcmKey();
    if (this.ahead === undefined || n !== this.aheadN || this.seq !== this.aheadSeq || this.aheadIdx >= AHEAD) {
      // J0 and the block holding byte n - 1 (J0 + 1 is the first) of records seq .. seq + AHEAD - 1
      const ctr = ((n - 1) >>> 4) + 2;
      for (let i = 0; i < AHEAD; i++) {
        const nonce = this.xorNonce(this.seq + BigInt(i));
        counterBlock(AHEAD_IN, 32 * i, nonce, 1);
        counterBlock(AHEAD_IN, 32 * i + 16, nonce, ctr);
      }
      this.ahead = gk.ecb.update(AHEAD_IN);
      this.aheadN = n;
      this.aheadIdx = 0;
      this.aheadSeq = this.seq;
    }
    const ks = this.ahead;
    const k = 32 * this.aheadIdx;
    if ((fragment[n - 1] ^ ks[k + 16 + ((n - 1) & 15)]) !== TLS13_APPLICATION_DATA) return -1;
    this.aheadIdx++;
    this.aheadSeq = this.seq + 1n;
    let g = this.batch;
    if (g === undefined) {
      g = this.batch = createCipheriv(gk.aead, gk.key, BATCH_NONCE, { authTagLength: 16 });
      this.batchBytes = 0;
      this.batchSeq = this.seq;
      this.tailPad = -1;
    }
    const t = (this.tail ??= Buffer.alloc(15 + 48));
    for (let i = 0; i < RECORD_HEADER_LEN; i++) t[47 + i] = header[i];
    g.setAAD(this.tailPad < 0 ? t.subarray(47) : t.subarray(15 - this.tailPad));
    g.setAAD(fragment.subarray(0, n));
    const pad = (16 - (n & 15)) & 15;
    // the length block: len(A) = 40 bits, len(C) = 8n bits (64-bit big-endian each); then Y
    t.fill(0, 15 - pad, 15 + 12);
    t[15 + 7] = 40;
    t.writeUInt32BE(8 * n, 15 + 12);
    for (let i = 0; i < 16; i++) t[31 + i] = fragment[n + i] ^ ks[k + i];
    this.tailPad = pad;
    this.batchBytes += 16 + n + pad + 32;
    this.seq++;
    return n - 1;
  }

  /**
   * Closes the open batch (batchAppData13): whether every record in it is authentic. When not,
   * the sequence number is back at the batch's first record, for the caller to take the records
   * one by one again. True when no batch is open.
   */
  checkBatch(): boolean {
    const g = this.batch;
    if (g === undefined) return true;
    this.batch = undefined;
    let ok = false;
    try {
      if (this.tailPad >= 0) g.setAAD((this.tail as Buffer).subarray(15 - this.tailPad, 47));
      this.tailPad = -1;
      g.final();
      ok = g.getAuthTag().equals((this.gk as GcmKey).expectedTag(this.batchBytes));
    } catch {
      ok = false;
    }
    if (!ok) this.seq = this.batchSeq;
    return ok;
  }

  /** The ECB context and constants under the record key (TLS 1.3 AES-GCM only). */
  private gcmKey(): GcmKey {
    let gk = this.gk;
    if (gk === undefined) {
      gk = this.gk = new GcmKey(this.suite.cipher as 'aes-128-gcm' | 'aes-256-gcm', this.key as Buffer);
      for (let i = 0; i < 4; i++) this.h[i] = gk.h[i];
    }
    return gk;
  }

  /** Whether the suite and keys fit together; an unusable decryptor answers 'unsupported_cipher'. */
  private static usable(suite: CipherSuite, keys: TrafficKeys, tls13: boolean, tls10Cbc: boolean): boolean {
    if (!suite.supported || suite.tls13 !== tls13 || keys.key.length !== suite.keyLen) return false;
    if (suite.kind === 'aead') return keys.iv.length === (tls13 ? 12 : suite.fixedIvLen);
    if (suite.kind === 'cbc') {
      return keys.macKey.length === suite.macLen && keys.iv.length === (tls10Cbc ? suite.blockLen : 0) && suite.macHash !== null;
    }
    return keys.macKey.length === suite.macLen && keys.iv.length === 0 && suite.macHash !== null; // stream (RC4), null
  }

  /**
   * Decrypts one record. `header` is the 5-byte record header as on the wire, `fragment` the record
   * body. The sequence number advances after every call, success or not (a record that fails
   * still consumed its number at the sender).
   */
  decrypt(header: Buffer, fragment: Buffer): DecryptResult {
    if (this.rc4) this.rc4Plain = this.rc4.process(fragment);
    const r = this.decryptAt(this.seq, header, fragment);
    this.rc4Plain = undefined;
    this.seq++;
    this.advanceChain(fragment);
    return r;
  }

  /**
   * Decrypts one record under sequence number `seq`, moving nothing (neither `seq` nor any chained
   * state): DTLS (RFC 6347 §4.1.2.1), whose records carry their own epoch(2) || sequence_number(6)
   * — the 8 bytes TLS 1.2's additional data / MAC header and the ChaCha20 nonce take from the
   * sequence number — and may come lost, reordered or duplicated. `header` is a 5-byte TLS-style
   * header type || version || length. Suites whose state moves per record (RC4, TLS 1.0 CBC
   * chained IVs: neither exists in DTLS) answer 'unsupported_cipher'.
   */
  decryptDatagramRecord(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    if (this.rc4 || this.chainIv) return UNSUPPORTED;
    return this.decryptAt(seq, header, fragment);
  }

  /**
   * After lost records: tries sequence numbers seq..seq+maxSkip (for TLS 1.2 GCM/CCM first the
   * explicit nonce, which OpenSSL, NSS, Go and others fill with the sequence number). On success
   * seq moves past the record; otherwise seq is left unchanged. (TLS 1.0 CBC: the IV chain always
   * moves on to this record's last ciphertext block, since it depends on wire bytes only; so the
   * first record after a loss fails, the next one can be found.)
   */
  tryResync(header: Buffer, fragment: Buffer, maxSkip: number): DecryptResult {
    if (this.rc4) this.rc4Plain = this.rc4.process(fragment);
    try {
      return this.resync(header, fragment, maxSkip);
    } finally {
      this.rc4Plain = undefined;
    }
  }

  private resync(header: Buffer, fragment: Buffer, maxSkip: number): DecryptResult {
    const base = this.seq;
    let hint: bigint | undefined;
    if (!this.tls13 && this.suite.explicitNonceLen === 8 && fragment.length >= 8) {
      hint = fragment.readBigUInt64BE(0);
      const r = this.decryptAt(hint, header, fragment);
      if (r.ok) return this.resynced(hint, fragment, r);
      if (r.error !== 'integrity_failure') return this.unsynced(fragment, r);
    }
    let last: DecryptResult = INTEGRITY;
    const skip = Number.isFinite(maxSkip) && maxSkip > 0 ? Math.floor(maxSkip) : 0;
    for (let i = 0; i <= skip; i++) {
      const s = base + BigInt(i);
      if (s === hint) continue;
      const r = this.decryptAt(s, header, fragment);
      if (r.ok) return this.resynced(s, fragment, r);
      if (r.error !== 'integrity_failure') return this.unsynced(fragment, r); // no sequence number helps
      last = r;
    }
    return this.unsynced(fragment, last);
  }

  private unsynced(fragment: Buffer, r: DecryptResult): DecryptResult {
    this.advanceChain(fragment);
    return r;
  }

  private resynced(s: bigint, fragment: Buffer, r: DecryptResult): DecryptResult {
    this.seq = s + 1n;
    this.advanceChain(fragment);
    return r;
  }

  /** TLS 1.0 CBC: the next record's IV is this record's last ciphertext block (RFC 2246 §6.2.3.2). */
  private advanceChain(fragment: Buffer): void {
    if (!this.chainIv) return;
    const ctEnd = this.etm ? fragment.length - this.suite.macLen : fragment.length;
    const b = this.block;
    if (ctEnd >= b && ctEnd % b === 0) fragment.copy(this.chainIv, 0, ctEnd - b, ctEnd);
  }

  private decryptAt(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    if (!this.key) return UNSUPPORTED;
    if (header.length < RECORD_HEADER_LEN) return MALFORMED;
    const kind = this.suite.kind;
    if (kind === 'aead') return this.tls13 ? this.open13(seq, header, fragment) : this.open12(seq, header, fragment);
    if (kind === 'cbc') return this.etm ? this.openCbcEtm(seq, header, fragment) : this.openCbc(seq, header, fragment);
    return this.openMacOnly(seq, header, fragment);
  }

  /** nonce = iv XOR seq, the sequence number left-padded to the IV length (RFC 8446 §5.3, RFC 7905 §2). */
  private xorNonce(seq: bigint): Buffer {
    const n = this.nonce;
    const iv = this.iv;
    if (seq >= 0n && seq <= 0xffffffffn) {
      // The usual case without BigInt arithmetic: only the last 4 bytes of the IV change.
      const lo = Number(seq);
      for (let i = 0; i < 8; i++) n[i] = iv[i];
      n[8] = iv[8] ^ (lo >>> 24);
      n[9] = iv[9] ^ ((lo >>> 16) & 0xff);
      n[10] = iv[10] ^ ((lo >>> 8) & 0xff);
      n[11] = iv[11] ^ (lo & 0xff);
      return n;
    }
    iv.copy(n, 0, 0, 12);
    n.writeBigUInt64BE(BigInt.asUintN(64, seq) ^ this.ivTail, 4);
    return n;
  }

  /** Runs the AEAD; null when the tag does not verify. */
  private aeadOpen(nonce: Buffer, aad: Buffer, ct: Buffer, tag: Buffer): Buffer | null {
    try {
      const d = createDecipheriv(this.suite.cipher, this.key as Buffer, nonce, this.aeadOpts as object) as unknown as AeadDecipher;
      if (this.ccm) {
        // node: for CCM the tag and the plaintext length must be known before update().
        d.setAuthTag(tag);
        d.setAAD(aad, { plaintextLength: ct.length });
      } else {
        d.setAAD(aad);
        d.setAuthTag(tag);
      }
      const out = d.update(ct);
      const fin = d.final();
      return fin.length ? Buffer.concat([out, fin]) : out;
    } catch {
      return null;
    }
  }

  /**
   * RFC 8446 §5.2: AEAD over TLSInnerPlaintext with the record header as additional data;
   * the real content type is the last non-zero byte, zeros after it are padding.
   */
  private open13(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    const tagLen = this.suite.tagLen;
    if (fragment.length < tagLen + 1) return MALFORMED;
    const split = fragment.length - tagLen;
    const aad = header.length === RECORD_HEADER_LEN ? header : header.subarray(0, RECORD_HEADER_LEN);
    const inner = this.aeadOpen(this.xorNonce(seq), aad, fragment.subarray(0, split), fragment.subarray(split));
    if (!inner) return INTEGRITY;
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    if (i < 0) return MALFORMED; // all padding: no content type (RFC 8446 §5.4 says unexpected_message)
    return { ok: true, contentType: inner[i], plaintext: inner.subarray(0, i) };
  }

  /** Fills the 13-byte TLS 1.2 additional data / MAC header: seq || type || version || length. */
  private fillAad(seq: bigint, header: Buffer, length: number): Buffer {
    const a = this.aad;
    if (seq >= 0n && seq <= 0xffffffffn) {
      const lo = Number(seq);
      a[0] = a[1] = a[2] = a[3] = 0;
      a[4] = lo >>> 24;
      a[5] = (lo >>> 16) & 0xff;
      a[6] = (lo >>> 8) & 0xff;
      a[7] = lo & 0xff;
    } else {
      a.writeBigUInt64BE(BigInt.asUintN(64, seq), 0);
    }
    a[8] = header[0];
    a[9] = header[1];
    a[10] = header[2];
    a.writeUInt16BE(length & 0xffff, 11);
    return a;
  }

  /**
   * TLS 1.2 AEAD (RFC 5246 §6.2.3.3). GCM/CCM (RFC 5288 §3, RFC 6655 §3): nonce = salt(4) ||
   * explicit nonce (first 8 bytes of the fragment). ChaCha20-Poly1305 (RFC 7905 §2): nonce = iv XOR
   * seq, no explicit part. Additional data = seq || type || version || plaintext length.
   */
  private open12(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    const explicit = this.suite.explicitNonceLen;
    const tagLen = this.suite.tagLen;
    const ptLen = fragment.length - explicit - tagLen;
    if (ptLen < 0) return MALFORMED;
    let nonce: Buffer;
    if (explicit) {
      nonce = this.nonce;
      this.iv.copy(nonce, 0, 0, this.suite.fixedIvLen);
      fragment.copy(nonce, this.suite.fixedIvLen, 0, explicit);
    } else {
      nonce = this.xorNonce(seq);
    }
    const pt = this.aeadOpen(nonce, this.fillAad(seq, header, ptLen), fragment.subarray(explicit, explicit + ptLen), fragment.subarray(explicit + ptLen));
    if (!pt) return INTEGRITY;
    return { ok: true, contentType: header[0], plaintext: pt };
  }

  private cbcDecrypt(iv: Buffer, ct: Buffer): Buffer | null {
    try {
      const d = createDecipheriv(this.suite.cipher, this.key as Buffer, iv);
      d.setAutoPadding(false); // TLS padding is checked below, not PKCS#7
      const out = d.update(ct);
      const fin = d.final();
      return fin.length ? Buffer.concat([out, fin]) : out;
    } catch {
      return null;
    }
  }

  private macMatches(seq: bigint, header: Buffer, data: Buffer, mac: Buffer): boolean {
    const expected = createHmac(this.suite.macHash as string, this.macKey).update(this.fillAad(seq, header, data.length)).update(data).digest();
    return expected.length === mac.length && timingSafeEqual(expected, mac);
  }

  /** Splits off the explicit IV (TLS 1.1+, RFC 4346 §6.2.3.2) or takes the chained one (TLS 1.0). */
  private cbcIvAndCiphertext(body: Buffer): [Buffer, Buffer] {
    const b = this.block;
    return this.chainIv ? [this.chainIv, body] : [body.subarray(0, b), body.subarray(b)];
  }

  /**
   * MAC-then-encrypt CBC (RFC 5246 §6.2.3.2): decrypt, check that every padding byte equals the
   * padding length, then HMAC(seq || type || version || length || content).
   */
  private openCbc(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    const macLen = this.suite.macLen;
    const b = this.block;
    const ivLen = this.chainIv ? 0 : b;
    const minCt = Math.ceil((macLen + 1) / b) * b;
    if (fragment.length < ivLen + minCt || fragment.length % b !== 0) return MALFORMED;
    const [iv, ct] = this.cbcIvAndCiphertext(fragment);
    const pt = this.cbcDecrypt(iv, ct);
    if (!pt) return MALFORMED;
    const n = pt.length;
    const padLen = pt[n - 1];
    if (padLen + 1 + macLen > n) return INTEGRITY;
    for (let i = n - 1 - padLen; i < n - 1; i++) if (pt[i] !== padLen) return INTEGRITY;
    const contentLen = n - 1 - padLen - macLen;
    const content = pt.subarray(0, contentLen);
    if (!this.macMatches(seq, header, content, pt.subarray(contentLen, contentLen + macLen))) return INTEGRITY;
    return { ok: true, contentType: header[0], plaintext: content };
  }

  /**
   * Encrypt-then-MAC (RFC 7366 §3): the MAC covers seq || type || version || length of
   * (IV + ciphertext) || IV + ciphertext, and is checked before decrypting.
   */
  private openCbcEtm(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    const macLen = this.suite.macLen;
    const b = this.block;
    const ivLen = this.chainIv ? 0 : b;
    const body = fragment.subarray(0, fragment.length - macLen);
    if (fragment.length < macLen || body.length < ivLen + b || body.length % b !== 0) return MALFORMED;
    if (!this.macMatches(seq, header, body, fragment.subarray(body.length))) return INTEGRITY;
    const [iv, ct] = this.cbcIvAndCiphertext(body);
    const pt = this.cbcDecrypt(iv, ct);
    if (!pt) return MALFORMED;
    const n = pt.length;
    const padLen = pt[n - 1];
    if (padLen + 1 > n) return MALFORMED;
    for (let i = n - 1 - padLen; i < n - 1; i++) if (pt[i] !== padLen) return MALFORMED; // authentic but badly padded: sender bug
    return { ok: true, contentType: header[0], plaintext: pt.subarray(0, n - 1 - padLen) };
  }

  /**
   * RC4 and NULL suites (RFC 5246 §6.2.3.1): content || HMAC(seq || type || version || length ||
   * content), encrypted by the direction's RC4 keystream or not at all.
   */
  private openMacOnly(seq: bigint, header: Buffer, fragment: Buffer): DecryptResult {
    const macLen = this.suite.macLen;
    const pt = this.rc4 ? (this.rc4Plain as Buffer) : fragment;
    if (pt.length < macLen) return MALFORMED;
    const contentLen = pt.length - macLen;
    const content = pt.subarray(0, contentLen);
    if (!this.macMatches(seq, header, content, pt.subarray(contentLen))) return INTEGRITY;
    return { ok: true, contentType: header[0], plaintext: this.rc4 ? content : Buffer.from(content) };
  }
}
