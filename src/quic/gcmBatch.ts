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
export const BATCH_NONCE = Buffer.alloc(12);
/**
 * Keystream bytes per ECB call at most: node allocates each call's output, and large buffers cost
 * page faults when malloc hands back fresh memory (kept below its mmap threshold, and reused).
 */
const KEYSTREAM_BYTES = 16 * 1024;
/** Counter blocks of one ECB call (grown for a larger packet). */
const CTR32 = new Uint32Array(KEYSTREAM_BYTES >> 2);
/** Block counters 0..4097 byte-swapped (little-endian hosts write big-endian counters with it). */
const BSWAP_COUNTER = Int32Array.from({ length: 4098 }, (_, j) => bswap(j));

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
  /** H = E_K(0^128) (big-endian words) and E_K(J0') of the batch nonce. */
  readonly h: number[];
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
  /** After `open`: each packet's keystream buffer (shared by a group), whose blocks after its J0 block hold its plaintext. */
  private readonly ksBuf: Buffer[] = [];
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
   * Computes the packets' keystreams (one ECB call per group of packets up to KEYSTREAM_BYTES),
   * turns tags into Y blocks, decrypts into the keystream buffers and verifies the whole stream
   * with one GCM context. Whether every packet is authentic.
   */
  open(): boolean {
    const key = this.key as GcmKey;
    const m = this.meta;
    const n = this.count;
    for (let from = 0; from < n; ) {
      let to = from;
      let bytes = 0;
      do bytes += 16 + pad16(m[to++ * 6 + 4]);
      while (to < n && bytes + 16 + pad16(m[to * 6 + 4]) <= KEYSTREAM_BYTES);
      this.keystream(key, from, to);
      from = to;
    }
    const g = createCipheriv(key.aead, key.key, BATCH_NONCE);
    g.setAAD(this.scratch.subarray(0, this.off));
    g.final();
    return g.getAuthTag().equals(key.expectedTag(this.off));
  }

  /** Keystream, Y blocks and plaintexts of packets [from, to). */
  private keystream(key: GcmKey, from: number, to: number): void {
    const m = this.meta;
    // counter blocks: per packet J0 (counter 1), then 2, 3, ... (SP 800-38D: 96-bit IV || 32-bit counter)
    const le = LITTLE_ENDIAN;
    let c = CTR32;
    let w = 0;
    for (let i = from; i < to; i++) {
      const nb = (m[i * 6 + 4] + 15) >> 4;
      if (w + (nb + 1) * 4 > c.length) {
        const bigger = new Uint32Array(2 * (w + (nb + 1) * 4));
        bigger.set(c.subarray(0, w));
        c = bigger;
      }
      const n0 = le ? bswap(m[i * 6]) : m[i * 6];
      const n1 = le ? bswap(m[i * 6 + 1]) : m[i * 6 + 1];
      const n2 = le ? bswap(m[i * 6 + 2]) : m[i * 6 + 2];
      this.ksOff[i] = w * 4;
      for (let j = 1; j <= nb + 1; j++, w += 4) {
        c[w] = n0;
        c[w + 1] = n1;
        c[w + 2] = n2;
        c[w + 3] = le ? BSWAP_COUNTER[j] : j;
      }
    }
    const ks = key.ecb.update(Buffer.from(c.buffer, c.byteOffset, w * 4));
    const s = this.scratch;
    const s32 = this.s32;
    const k32 = (ks.byteOffset & 3) === 0 ? new Int32Array(ks.buffer, ks.byteOffset, ks.length >> 2) : undefined;
    for (let i = from; i < to; i++) {
      this.ksBuf[i] = ks;
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
  }

  /** After `open`: packet i's plaintext (authenticated only if `open` said so). */
  plain(i: number): Buffer {
    const ko = this.ksOff[i];
    return this.ksBuf[i].subarray(ko + 16, ko + 16 + this.meta[i * 6 + 4]);
  }

  /** After `open`: copies of packet i's payload (ciphertext || tag), for the one-by-one fallback. */
  payload(i: number): Buffer {
    const m = this.meta;
    const ctOff = m[i * 6 + 3];
    const ctLen = m[i * 6 + 4];
    const y = m[i * 6 + 5];
    const out = Buffer.allocUnsafe(ctLen + 16);
    this.scratch.copy(out, 0, ctOff, ctOff + ctLen);
    const ks = this.ksBuf[i];
    const ko = this.ksOff[i];
    for (let b = 0; b < 16; b++) out[ctLen + b] = this.scratch[y + b] ^ ks[ko + b];
    return out;
  }

  reset(): void {
    this.off = 0;
    this.count = 0;
    this.blocks = 0;
    this.key = undefined;
    this.ksBuf.length = 0;
  }
}

/** One packet of a batch: a protected 1-RTT packet copied as it came. */
export interface BatchEntry {
  dir: number;
  /** The packet in its direction's raw area, and where its packet number starts. */
  rawOff: number;
  len: number;
  pnOffset: number;
  ts: Timestamp;
  /** Its index in its direction's GHASH stream (-1: not batched after all, e.g. another key phase), and where its header stands there. */
  i: number;
  aadOff: number;
  aadLen: number;
  /** Set when opened: the plaintext of a packet whose direction's batch verified. */
  plain?: Buffer;
  /** Otherwise copies of its unprotected header and its payload (ciphertext || tag), for the one-by-one path. */
  aad?: Buffer;
  payload?: Buffer;
}

/** The connection whose packets a batch holds. */
export interface BatchOwner {
  /** Header protection, packet numbers, decryption and authentication of the batch's packets (sets plain, or aad and payload). */
  batchOpen(entries: readonly BatchEntry[], batch: PacketBatch): void;
  /** The opened packets, in their order: frames of the authenticated ones, the others one by one. */
  batchDone(entries: readonly BatchEntry[]): void;
}

/** Raw bytes per direction (~150 packets of 1,250 bytes); larger packets are not batched. */
const RAW_CAPACITY = 192 * 1024;
/** Packets per batch at most (the latency of a connection's events, in packets). */
export const MAX_BATCH_PACKETS = 128;
/** Largest packet batched. */
export const MAX_BATCH_PACKET_BYTES = 16 * 1024;

/**
 * The 1-RTT packets of one connection (a run of its datagrams) held until their batch is opened.
 * One per QUIC stage (the engine is single-threaded): a datagram of another connection, a packet
 * that is not batched, the end of a connection and the engine's tick flush it first, so packets
 * are still processed in capture order.
 */
export class PacketBatch {
  owner: BatchOwner | undefined;
  /** Per direction: the packets' bytes as they came, and their GHASH stream when opened. */
  readonly raw = [Buffer.allocUnsafeSlow(RAW_CAPACITY), Buffer.allocUnsafeSlow(RAW_CAPACITY)];
  readonly rawUsed = [0, 0];
  readonly streams = [new GcmBatchStream(RAW_CAPACITY + MAX_BATCH_PACKETS * 48), new GcmBatchStream(RAW_CAPACITY + MAX_BATCH_PACKETS * 48)];
  entries: BatchEntry[] = [];

  /** Whether a packet of `len` bytes fits (false: flush first). */
  fits(dir: number, len: number): boolean {
    return this.rawUsed[dir] + len <= RAW_CAPACITY && this.entries.length < MAX_BATCH_PACKETS;
  }

  /** Copies a packet in; the caller checked `fits` and owns the batch. */
  add(dir: number, pkt: Buffer, pnOffset: number, ts: Timestamp): void {
    const off = this.rawUsed[dir];
    pkt.copy(this.raw[dir], off);
    this.rawUsed[dir] = off + pkt.length;
    this.entries.push({ dir, rawOff: off, len: pkt.length, pnOffset, ts, i: -1, aadOff: 0, aadLen: 0 });
  }

  /** Opens the held packets and hands them to their connection. */
  flush(): void {
    const owner = this.owner;
    this.owner = undefined;
    const list = this.entries;
    this.entries = [];
    if (list.length > 0 && owner !== undefined) owner.batchOpen(list, this);
    this.rawUsed[0] = this.rawUsed[1] = 0;
    this.streams[0].reset();
    this.streams[1].reset();
    if (list.length > 0 && owner !== undefined) owner.batchDone(list);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function bswap(x: number): number {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}
