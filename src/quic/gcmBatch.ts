/**
 * AES-GCM packet protection for a run of 1-RTT packets without an AEAD context per packet.
 *
 * node:crypto cannot give a GCM decipher a new nonce: each packet would need its own context
 * (createDecipheriv + setAuthTag + setAAD + update + final), and in Node 20 that context costs
 * several times the AES-GCM work of a 1,250-byte packet (OpenSSL 3 fetch and key setup, a C++
 * object with a weak handle, five JS->C++ calls). Here instead, per packet:
 *
 * - the keystream (NIST SP 800-38D Section 7.2: E_K(J0) for the tag, E_K(inc32(J0))... for the
 *   payload) comes from one AES-ECB `update` over the counter blocks, on an ECB context made once
 *   per packet key; the plaintext is the ciphertext XOR that keystream;
 * - the GHASH input of the packet (A, zero padding, C, zero padding, the length block) is copied
 *   into a scratch buffer, followed by one more block, Y = tag XOR E_K(J0), which is what
 *   GHASH_H(A, C) must equal for an authentic packet.
 *
 * The scratch of many packets is then authenticated at once by ONE GCM context (same key) that
 * takes it all as additional data. GHASH is linear: a block sequence X followed by a block Y
 * contributes H^e * (GHASH_H(X) XOR Y) to the hash of the whole stream (e depending on where it
 * stands), which is zero exactly when the packet is authentic. So the whole stream hashes to
 * what an all-zero stream of the same length hashes to, L * H (L the length block), and the batch
 * context's tag must be L * H XOR E_K(J0') (J0' its own nonce, any fixed value: nothing computed
 * with it leaves this process). A packet whose tag is wrong makes the sum non-zero (H^e * delta,
 * delta != 0); two forged packets could only cancel each other knowing H, as forging one GCM
 * packet needs H. When a batch does not verify, the caller authenticates its packets one by one
 * with the per-packet AEAD (`PacketKeys.open`): every packet is still authenticated before its
 * plaintext is used, and the ones that fail are found and counted as before.
 */
import { createCipheriv, type Cipher } from 'node:crypto';
import type { Timestamp } from '../types.js';

/** The batch context's nonce (any fixed value). */
const BATCH_NONCE = Buffer.alloc(12);
/** Counter blocks of a batch (grown for a larger one). */
const CTR32 = new Uint32Array(((256 * 1024) >> 2) + 4 * 256);

function pad16(n: number): number {
  return (n + 15) & ~15;
}

/** GF(2^128) multiplication of GCM (SP 800-38D Algorithm 1) on big-endian 32-bit words. */
export function gfMul(x: readonly number[], y: readonly number[]): number[] {
  let z0 = 0,
    z1 = 0,
    z2 = 0,
    z3 = 0;
  let v0 = y[0] >>> 0,
    v1 = y[1] >>> 0,
    v2 = y[2] >>> 0,
    v3 = y[3] >>> 0;
  for (let i = 0; i < 128; i++) {
    if ((x[i >> 5] >>> (31 - (i & 31))) & 1) {
      z0 ^= v0;
      z1 ^= v1;
      z2 ^= v2;
      z3 ^= v3;
    }
    const lsb = v3 & 1;
    v3 = ((v3 >>> 1) | (v2 << 31)) >>> 0;
    v2 = ((v2 >>> 1) | (v1 << 31)) >>> 0;
    v1 = ((v1 >>> 1) | (v0 << 31)) >>> 0;
    v0 = v0 >>> 1;
    if (lsb) v0 = (v0 ^ 0xe1000000) >>> 0;
  }
  return [z0 >>> 0, z1 >>> 0, z2 >>> 0, z3 >>> 0];
}

function words(b: Buffer, off: number): number[] {
  return [b.readUInt32BE(off), b.readUInt32BE(off + 4), b.readUInt32BE(off + 8), b.readUInt32BE(off + 12)];
}

/** The ECB context and constants of one AES-GCM packet key. */
export class GcmKey {
  readonly ecb: Cipher;
  /** H = E_K(0^128) and E_K(J0') of the batch nonce. */
  private readonly h: number[];
  private readonly ej: number[];
  constructor(
    readonly aead: 'aes-128-gcm' | 'aes-256-gcm',
    readonly key: Buffer,
  ) {
    const ecb = createCipheriv(aead === 'aes-128-gcm' ? 'aes-128-ecb' : 'aes-256-ecb', key, null);
    ecb.setAutoPadding(false);
    this.ecb = ecb;
    const j0 = Buffer.alloc(32);
    BATCH_NONCE.copy(j0, 16);
    j0[31] = 1;
    const e = ecb.update(j0);
    this.h = words(e, 0);
    this.ej = words(e, 16);
  }

  /** The tag a GCM context with this key and the batch nonce gives additional data that GHASHes to zero, `len` bytes long. */
  expectedTag(len: number): Buffer {
    // the length block: len(A) in bits (64-bit), len(C) = 0
    const bits = len * 8;
    const lh = gfMul([Math.floor(bits / 2 ** 32), bits >>> 0, 0, 0], this.h);
    const t = Buffer.allocUnsafe(16);
    for (let i = 0; i < 4; i++) t.writeUInt32BE((lh[i] ^ this.ej[i]) >>> 0, i * 4);
    return t;
  }
}

/** Packets of one direction in a batch at most. */
const MAX_STREAM_PACKETS = 256;

/** One direction's packets of a batch: their GHASH stream and what their keystream needs. */
export class GcmBatchStream {
  readonly scratch: Buffer;
  private readonly s32: Int32Array;
  /** Per packet: nonce (3 words), ciphertext offset and length in the scratch, offset of its Y block. */
  private readonly meta = new Int32Array(MAX_STREAM_PACKETS * 6);
  /** Counter blocks of the batch (one per packet for J0, one per 16 ciphertext bytes). */
  private blocks = 0;
  /** Bytes used. */
  off = 0;
  /** Packets in it. */
  count = 0;
  key: GcmKey | undefined;
  /** After `open`: the keystream buffer, whose blocks after each packet's J0 block hold its plaintext. */
  private ks: Buffer | undefined;
  private ksOff: Int32Array = new Int32Array(MAX_STREAM_PACKETS);

  constructor(readonly capacity: number) {
    this.scratch = Buffer.from(new ArrayBuffer(capacity));
    this.s32 = new Int32Array(this.scratch.buffer, 0, capacity >> 2);
  }

  /** Scratch bytes a packet takes. */
  static need(aadLen: number, ctLen: number): number {
    return pad16(aadLen) + pad16(ctLen) + 32;
  }

  /** Whether a packet needing `need` bytes fits. */
  fits(need: number): boolean {
    return this.off + need <= this.capacity && this.count < MAX_STREAM_PACKETS;
  }

  /**
   * Appends one packet (nonce, aad, payload = ciphertext || 16-byte tag): its GHASH input and its
   * tag; returns its index in the stream and where its aad and ciphertext copies stand. The
   * caller checks room first (`fits`) and sets `key`.
   */
  add(nonce: Buffer, aad: Buffer, payload: Buffer): number {
    const ctLen = payload.length - 16;
    const s = this.scratch;
    let p = this.off;
    const aadOff = p;
    aad.copy(s, p);
    p += aad.length;
    const aEnd = pad16(p - aadOff) + aadOff;
    s.fill(0, p, aEnd);
    p = aEnd;
    const ctOff = p;
    payload.copy(s, p, 0, ctLen);
    p += ctLen;
    const cEnd = pad16(ctLen) + ctOff;
    s.fill(0, p, cEnd);
    p = cEnd;
    // the length block: bit lengths of A and C, 64-bit big-endian each
    s.writeUInt32BE(0, p);
    s.writeUInt32BE(aad.length * 8, p + 4);
    s.writeUInt32BE(0, p + 8);
    s.writeUInt32BE(ctLen * 8, p + 12);
    p += 16;
    // the tag for now; Y = tag XOR E_K(J0) once the keystream is known (open)
    payload.copy(s, p, ctLen, ctLen + 16);
    const i = this.count;
    const m = this.meta;
    m[i * 6] = nonce.readInt32BE(0);
    m[i * 6 + 1] = nonce.readInt32BE(4);
    m[i * 6 + 2] = nonce.readInt32BE(8);
    m[i * 6 + 3] = ctOff;
    m[i * 6 + 4] = ctLen;
    m[i * 6 + 5] = p;
    this.blocks += 1 + ((ctLen + 15) >> 4);
    this.off = p + 16;
    this.count++;
    return i;
  }

  /**
   * Computes every packet's keystream with one ECB call, turns tags into Y blocks, decrypts into
   * the keystream buffer and verifies the whole stream with one GCM context. Whether every packet
   * is authentic.
   */
  open(): boolean {
    const key = this.key as GcmKey;
    const m = this.meta;
    const n = this.count;
    // counter blocks: per packet J0 (counter 1), then 2, 3, ... (SP 800-38D: 96-bit IV || 32-bit counter)
    let c = CTR32;
    if (this.blocks * 4 > c.length) c = new Uint32Array(this.blocks * 4);
    const le = LITTLE_ENDIAN;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const n0 = le ? bswap(m[i * 6]) : m[i * 6];
      const n1 = le ? bswap(m[i * 6 + 1]) : m[i * 6 + 1];
      const n2 = le ? bswap(m[i * 6 + 2]) : m[i * 6 + 2];
      const nb = (m[i * 6 + 4] + 15) >> 4;
      this.ksOff[i] = w * 4;
      for (let j = 1; j <= nb + 1; j++, w += 4) {
        c[w] = n0;
        c[w + 1] = n1;
        c[w + 2] = n2;
        c[w + 3] = le ? bswap(j) : j;
      }
    }
    const ks = key.ecb.update(Buffer.from(c.buffer, c.byteOffset, w * 4));
    this.ks = ks;
    const s = this.scratch;
    const s32 = this.s32;
    const aligned = (ks.byteOffset & 3) === 0;
    const k32 = aligned ? new Int32Array(ks.buffer, ks.byteOffset, ks.length >> 2) : undefined;
    for (let i = 0; i < n; i++) {
      const ko = this.ksOff[i];
      const y = m[i * 6 + 5];
      for (let b = 0; b < 16; b++) s[y + b] ^= ks[ko + b];
      const ctOff = m[i * 6 + 3];
      const ctLen = m[i * 6 + 4];
      // plaintext = ciphertext XOR keystream, in place after the J0 block
      if (k32 !== undefined) {
        const base = ctOff >> 2;
        const kb = (ko + 16) >> 2;
        const words = (ctLen + 3) >> 2;
        for (let x = 0; x < words; x++) k32[kb + x] ^= s32[base + x];
      } else {
        for (let x = 0; x < ctLen; x++) ks[ko + 16 + x] ^= s[ctOff + x];
      }
    }
    const g = createCipheriv(key.aead, key.key, BATCH_NONCE);
    g.setAAD(s.subarray(0, this.off));
    g.final();
    return g.getAuthTag().equals(key.expectedTag(this.off));
  }

  /** After `open`: packet i's plaintext (authenticated only if `open` said so). */
  plain(i: number): Buffer {
    const ko = this.ksOff[i];
    return (this.ks as Buffer).subarray(ko + 16, ko + 16 + this.meta[i * 6 + 4]);
  }

  /** After `open`: copies of packet i's payload (ciphertext || tag), for the one-by-one fallback. */
  payload(i: number): Buffer {
    const m = this.meta;
    const ctOff = m[i * 6 + 3];
    const ctLen = m[i * 6 + 4];
    const y = m[i * 6 + 5];
    const out = Buffer.allocUnsafe(ctLen + 16);
    this.scratch.copy(out, 0, ctOff, ctOff + ctLen);
    const ks = this.ks as Buffer;
    const ko = this.ksOff[i];
    for (let b = 0; b < 16; b++) out[ctLen + b] = this.scratch[y + b] ^ ks[ko + b];
    return out;
  }

  reset(): void {
    this.off = 0;
    this.count = 0;
    this.blocks = 0;
    this.key = undefined;
    this.ks = undefined;
  }
}

/** One packet of a batch. */
export interface BatchEntry {
  dir: number;
  /** Its index in its direction's stream. */
  i: number;
  aadOff: number;
  aadLen: number;
  ts: Timestamp;
  /** Set by flush: the plaintext (authenticated when its direction's batch verified). */
  plain?: Buffer;
  /** Set when its direction's batch did not verify: copies of the packet's aad and payload (ciphertext || tag). */
  aad?: Buffer;
  payload?: Buffer;
}

/** The connection whose packets a batch holds. */
export interface BatchOwner {
  /**
   * The batch's packets in their order: `ok[dir]` says whether that direction's all verified;
   * `largestBefore[dir]`: the direction's largest packet number before the batch (the packet
   * numbers of a batch that did not verify are decoded again one by one).
   */
  batchDone(entries: BatchEntry[], ok: readonly boolean[], largestBefore: readonly number[]): void;
}

/** Scratch bytes per direction: ~200 packets of 1,250 bytes. */
const STREAM_CAPACITY = 256 * 1024;
/** Packets per batch at most (the latency of a connection's events, in packets). */
export const MAX_BATCH_PACKETS = 128;

/**
 * The 1-RTT packets of one connection (a run of its datagrams) whose plaintext waits for their
 * batch's verification. One per QUIC stage (the engine is single-threaded): a datagram of another
 * connection, a packet that is not batched, the end of a connection and the engine's tick flush it
 * first, so packets are still processed in capture order.
 */
export class PacketBatch {
  owner: BatchOwner | undefined;
  readonly streams = [new GcmBatchStream(STREAM_CAPACITY), new GcmBatchStream(STREAM_CAPACITY)];
  entries: BatchEntry[] = [];
  readonly largestBefore = [-1, -1];

  /** Verifies and hands the held packets to their connection. */
  flush(): void {
    const owner = this.owner;
    this.owner = undefined;
    const [s0, s1] = this.streams;
    const list = this.entries;
    this.entries = [];
    if (list.length === 0 || owner === undefined) {
      s0.reset();
      s1.reset();
      return;
    }
    const ok = [s0.count === 0 || s0.open(), s1.count === 0 || s1.open()];
    for (const e of list) {
      const st = this.streams[e.dir];
      if (ok[e.dir]) {
        e.plain = st.plain(e.i);
      } else {
        e.aad = Buffer.from(st.scratch.subarray(e.aadOff, e.aadOff + e.aadLen));
        e.payload = st.payload(e.i);
      }
    }
    const before = [this.largestBefore[0], this.largestBefore[1]];
    s0.reset();
    s1.reset();
    owner.batchDone(list, ok, before);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function bswap(x: number): number {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}
