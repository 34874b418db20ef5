/**
 * QUIC packet protection (RFC 9001 Section 5): versions and their Initial salts and labels,
 * Initial secrets, packet protection keys from TLS secrets, header protection (Section 5.4) with
 * AES (ECB over the sample) or ChaCha20 (counter || nonce = sample), AEAD payload protection
 * (Section 5.3), key update (Section 6, "quic ku"), and packet number decoding (RFC 9000 A.3).
 *
 * QUIC v2 (RFC 9369 Section 3.3) changes the salt, the labels ("quicv2 key" ...) and the long
 * header packet type numbers. The draft codepoint 0x709a50c4 (spoken by ngtcp2 0.12, Debian 12)
 * has the RFC's labels and types but the drafts' Initial salt a707c203... (the value in
 * libngtcp2_crypto_gnutls 0.12; checked against a real capture, fixtures/quic/v2draft).
 */
import { createCipheriv, createDecipheriv, type Cipher } from 'node:crypto';
import { hkdfExpandLabel, hkdfExtract } from '../tls/crypto/keySchedule13.js';
import { GcmKey } from './gcmBatch.js';

export const enum LongType {
  Initial = 0,
  ZeroRtt = 1,
  Handshake = 2,
  Retry = 3,
}

export interface QuicVersion {
  id: number;
  /** '1', '2' or '2-draft'. */
  name: string;
  salt: Buffer;
  keyLabel: string;
  ivLabel: string;
  hpLabel: string;
  kuLabel: string;
  /** Wire type bits (0..3) -> LongType. */
  types: readonly LongType[];
  /** Retry Integrity Tag AES-128-GCM key and nonce (RFC 9001 Section 5.8; RFC 9369 Section 3.3.3); absent: not checked. */
  retryKey?: Buffer;
  retryNonce?: Buffer;
}

const V1_TYPES: readonly LongType[] = [LongType.Initial, LongType.ZeroRtt, LongType.Handshake, LongType.Retry];
/** RFC 9369 Section 3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00. */
const V2_TYPES: readonly LongType[] = [LongType.Retry, LongType.Initial, LongType.ZeroRtt, LongType.Handshake];

const V1: QuicVersion = {
  id: 0x00000001,
  name: '1',
  // RFC 9001 Section 5.2
  salt: Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'),
  keyLabel: 'quic key',
  ivLabel: 'quic iv',
  hpLabel: 'quic hp',
  kuLabel: 'quic ku',
  types: V1_TYPES,
  // RFC 9001 Section 5.8
  retryKey: Buffer.from('be0c690b9f66575a1d766b54e368c84e', 'hex'),
  retryNonce: Buffer.from('461599d35d632bf2239825bb', 'hex'),
};
const V2_COMMON = {
  // RFC 9369 Section 3.3.1
  salt: Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex'),
  keyLabel: 'quicv2 key',
  ivLabel: 'quicv2 iv',
  hpLabel: 'quicv2 hp',
  kuLabel: 'quicv2 ku',
  types: V2_TYPES,
  // RFC 9369 Section 3.3.3
  retryKey: Buffer.from('8fb4b01b56ac48e260fbcbcead7ccc92', 'hex'),
  retryNonce: Buffer.from('d86969bc2d7c6d9990efb04a', 'hex'),
};

export const QUIC_VERSIONS: ReadonlyMap<number, QuicVersion> = new Map([
  [0x00000001, V1],
  [0x6b3343cf, { id: 0x6b3343cf, name: '2', ...V2_COMMON }],
  // (the draft's Retry key differs from the RFC's and no capture checks one: its Retry tags are not verified)
  [0x709a50c4, { id: 0x709a50c4, name: '2-draft', ...V2_COMMON, salt: Buffer.from('a707c203a59b47184a1d62ca570406ea7ae3e5d3', 'hex'), retryKey: undefined, retryNonce: undefined }],
]);

/** An AEAD of the TLS 1.3 suites QUIC uses (RFC 9001 Section 5.3). */
export interface QuicSuite {
  id: number;
  aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305' | 'aes-128-ccm';
  hash: 'sha256' | 'sha384';
  keyLen: number;
  /** Header protection: AES-ECB (key length keyLen) or ChaCha20. */
  hp: 'aes-128-ecb' | 'aes-256-ecb' | 'chacha20';
}

export const QUIC_SUITES: ReadonlyMap<number, QuicSuite> = new Map([
  [0x1301, { id: 0x1301, aead: 'aes-128-gcm', hash: 'sha256', keyLen: 16, hp: 'aes-128-ecb' }],
  [0x1302, { id: 0x1302, aead: 'aes-256-gcm', hash: 'sha384', keyLen: 32, hp: 'aes-256-ecb' }],
  [0x1303, { id: 0x1303, aead: 'chacha20-poly1305', hash: 'sha256', keyLen: 32, hp: 'chacha20' }],
  [0x1304, { id: 0x1304, aead: 'aes-128-ccm', hash: 'sha256', keyLen: 16, hp: 'aes-128-ecb' }],
] as [number, QuicSuite][]);

const INITIAL_SUITE = QUIC_SUITES.get(0x1301) as QuicSuite;
const EMPTY = Buffer.alloc(0);
const ZERO5 = Buffer.alloc(5);
const HASH_LEN = { sha256: 32, sha384: 48 } as const;
export const AEAD_TAG_LEN = 16;

/** Header protection mask generator of one hp key (Section 5.4.3 / 5.4.4). */
export class HeaderProtection {
  private readonly ecb: Cipher | undefined;
  constructor(
    private readonly alg: QuicSuite['hp'],
    private readonly key: Buffer,
  ) {
    if (alg !== 'chacha20') {
      const c = createCipheriv(alg, key, null);
      c.setAutoPadding(false);
      this.ecb = c;
    }
  }
  /** AES: the masks of several packets at once, 16 bytes each from their samples one after the other; undefined for ChaCha20. */
  masks(samples: Buffer): Buffer | undefined {
    return this.ecb?.update(samples);
  }

  /** 5 mask bytes from the 16-byte sample (only the first 5 are used). */
  mask(sample: Buffer): Buffer {
    if (this.ecb !== undefined) return this.ecb.update(sample);
    // ChaCha20: the first 4 sample bytes are the block counter (little-endian), the rest the nonce,
    // which is node's 16-byte chacha20 IV layout.
    return createCipheriv('chacha20', this.key, sample).update(ZERO5);
  }
}

/** One direction's keys at one encryption level (and key phase). */
export class PacketKeys {
  readonly hp: HeaderProtection;
  constructor(
    readonly suite: QuicSuite,
    readonly secret: Buffer,
    readonly key: Buffer,
    readonly iv: Buffer,
    hp: HeaderProtection | Buffer,
  ) {
    this.hp = hp instanceof HeaderProtection ? hp : new HeaderProtection(suite.hp, hp);
  }

  private gcmKey: GcmKey | undefined;
  /** AES-GCM suites: the ECB context for batched packet protection (src/quic/gcmBatch.ts), made on first use; undefined for the others. */
  get gcm(): GcmKey | undefined {
    const a = this.suite.aead;
    if (a !== 'aes-128-gcm' && a !== 'aes-256-gcm') return undefined;
    return (this.gcmKey ??= new GcmKey(a, this.key));
  }

  /** Section 5.3: nonce = iv XOR packet number (left-padded), in a shared scratch valid until the next call. */
  nonce(pn: number): Buffer {
    const nonce = NONCE;
    const iv = this.iv;
    for (let i = 0; i < 12; i++) nonce[i] = iv[i]; // (a loop: Buffer.copy costs more for 12 bytes)
    let p = pn;
    for (let i = 11; i >= 4 && p > 0; i--) {
      nonce[i] ^= p & 0xff;
      p = (p - (p & 0xff)) / 256;
    }
    return nonce;
  }

  /** Section 5.3: returns the plaintext or undefined when authentication fails. */
  open(aad: Buffer, payload: Buffer, pn: number): Buffer | undefined {
    if (payload.length < AEAD_TAG_LEN) return undefined;
    // the nonce scratch is shared: node copies it into the cipher context during createDecipheriv
    const nonce = this.nonce(pn);
    const ctLen = payload.length - AEAD_TAG_LEN;
    try {
      const d = createDecipheriv(this.suite.aead as 'aes-128-gcm', this.key, nonce, AEAD_OPTS);
      d.setAuthTag(payload.subarray(ctLen));
      if (this.suite.aead === 'aes-128-ccm') (d as unknown as { setAAD(b: Buffer, o: object): void }).setAAD(aad, { plaintextLength: ctLen });
      else d.setAAD(aad);
      const out = d.update(payload.subarray(0, ctLen));
      d.final();
      return out;
    } catch {
      return undefined;
    }
  }
}

const NONCE = Buffer.alloc(12);
const AEAD_OPTS = Object.freeze({ authTagLength: AEAD_TAG_LEN });

/** Section 5.1: key, iv and hp from a TLS secret (v1 "quic key"/"quic iv"/"quic hp", v2 "quicv2 ..."). */
export function packetKeys(v: QuicVersion, suite: QuicSuite, secret: Buffer, hp?: HeaderProtection): PacketKeys {
  const key = hkdfExpandLabel(suite.hash, secret, v.keyLabel, EMPTY, suite.keyLen);
  const iv = hkdfExpandLabel(suite.hash, secret, v.ivLabel, EMPTY, 12);
  return new PacketKeys(suite, secret, key, iv, hp ?? hkdfExpandLabel(suite.hash, secret, v.hpLabel, EMPTY, suite.keyLen));
}

/** Section 6.1: the next generation of 1-RTT keys; the header protection key does not change. */
export function nextPacketKeys(v: QuicVersion, k: PacketKeys): PacketKeys {
  const secret = hkdfExpandLabel(k.suite.hash, k.secret, v.kuLabel, EMPTY, HASH_LEN[k.suite.hash]);
  return packetKeys(v, k.suite, secret, k.hp);
}

/** Section 5.2: Initial secrets of both directions from the client's first Destination Connection ID. */
export function initialKeys(v: QuicVersion, dcid: Buffer): { client: PacketKeys; server: PacketKeys } {
  const initial = hkdfExtract('sha256', v.salt, dcid);
  const c = hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32);
  const s = hkdfExpandLabel('sha256', initial, 'server in', EMPTY, 32);
  return { client: packetKeys(v, INITIAL_SUITE, c), server: packetKeys(v, INITIAL_SUITE, s) };
}

/** RFC 9000 Appendix A.3: the full packet number from its truncated form and the largest one seen (-1: none). */
export function decodePacketNumber(largest: number, truncated: number, nbits: number): number {
  const expected = largest + 1;
  const win = 2 ** nbits;
  const hwin = win / 2;
  const candidate = expected - (expected % win) + truncated;
  if (candidate <= expected - hwin && candidate < 2 ** 62 - win) return candidate + win;
  if (candidate > expected + hwin && candidate >= win) return candidate - win;
  return candidate;
}

/** RFC 9000 Section 16: a variable-length integer at buf[pos]; [value, next pos] or undefined when cut short. */
export function readVarint(buf: Buffer, pos: number, end: number): number {
  if (pos >= end) return -1;
  const b = buf[pos];
  const len = 1 << (b >> 6);
  if (pos + len > end) return -1;
  let v = b & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + buf[pos + i];
  return v;
}

/** Encoded length of the varint starting with byte b. */
export function varintLen(b: number): number {
  return 1 << (b >> 6);
}

/**
 * RFC 9001 Section 5.8 (RFC 9369 Section 3.3.3 for v2): whether a Retry packet's last 16 bytes are
 * the AES-128-GCM tag over the Retry pseudo-packet (ODCID length, ODCID, the Retry without its
 * tag) with an empty plaintext. undefined when the version has no known Retry key.
 */
export function retryTagValid(v: QuicVersion, odcid: Buffer, retry: Buffer): boolean | undefined {
  if (v.retryKey === undefined || v.retryNonce === undefined) return undefined;
  if (retry.length < AEAD_TAG_LEN) return false;
  const body = retry.subarray(0, retry.length - AEAD_TAG_LEN);
  const c = createCipheriv('aes-128-gcm', v.retryKey, v.retryNonce);
  c.setAAD(Buffer.concat([Buffer.from([odcid.length]), odcid, body]));
  c.final();
  return c.getAuthTag().equals(retry.subarray(retry.length - AEAD_TAG_LEN));
}
