import { describe, expect, it } from 'vitest';
import {
  decodePacketNumber,
  initialKeys,
  nextPacketKeys,
  packetKeys,
  QUIC_SUITES,
  QUIC_VERSIONS,
  readVarint,
  type QuicSuite,
} from '../../src/quic/protection.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const V1 = QUIC_VERSIONS.get(1)!;
const V2 = QUIC_VERSIONS.get(0x6b3343cf)!;
const DCID = h('8394c8f03e515708');

describe('Initial keys (RFC 9001 Appendix A.1, RFC 9369 Appendix A.1)', () => {
  it('derives the v1 client and server Initial key, iv and hp from the DCID', () => {
    const k = initialKeys(V1, DCID);
    expect(k.client.key.toString('hex')).toBe('1f369613dd76d5467730efcbe3b1a22d');
    expect(k.client.iv.toString('hex')).toBe('fa044b2f42a3fd3b46fb255c');
    expect(k.server.key.toString('hex')).toBe('cf3a5331653c364c88f0f379b6067e37');
    expect(k.server.iv.toString('hex')).toBe('0ac1493ca1905853b0bba03e');
    // RFC 9001 A.2: the client Initial's sample gives mask 437b9aec36 under hp 9f50449e...
    expect(k.client.hp.mask(h('d1b1c98dd7689fb8ec11d242b123dc9b')).subarray(0, 5).toString('hex')).toBe('437b9aec36');
    // A.3: the server Initial's sample 2cd0991cd25b0aac406a5816b6394100 gives mask 2ec0d8356a
    expect(k.server.hp.mask(h('2cd0991cd25b0aac406a5816b6394100')).subarray(0, 5).toString('hex')).toBe('2ec0d8356a');
  });

  it('derives the v2 keys with the v2 salt and quicv2 labels', () => {
    const k = initialKeys(V2, DCID);
    expect(k.client.key.toString('hex')).toBe('8b1a0bc121284290a29e0971b5cd045d');
    expect(k.client.iv.toString('hex')).toBe('91f73e2351d8fa91660e909f');
    expect(k.server.key.toString('hex')).toBe('82db637861d55e1d011f19ea71d5d2a7');
    expect(k.server.iv.toString('hex')).toBe('dd13c276499c0249d3310652');
  });

  it('maps the v2 long header types (Initial 1, 0-RTT 2, Handshake 3, Retry 0)', () => {
    expect(V2.types).toEqual([3, 0, 1, 2]);
    expect(V1.types).toEqual([0, 1, 2, 3]);
  });
});

describe('ChaCha20-Poly1305 short header packet (RFC 9001 Appendix A.5)', () => {
  const suite = QUIC_SUITES.get(0x1303) as QuicSuite;
  const secret = h('9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b');
  it('derives key, iv, hp and the next generation (quic ku)', () => {
    const k = packetKeys(V1, suite, secret);
    expect(k.key.toString('hex')).toBe('c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8');
    expect(k.iv.toString('hex')).toBe('e0459b3474bdd0e44a41c144');
    expect(nextPacketKeys(V1, k).secret.toString('hex')).toBe('1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9');
  });

  it('removes header protection and opens the PING packet', () => {
    const k = packetKeys(V1, suite, secret);
    const pkt = h('4cfe4189655e5cd55c41f69080575d7999c25a5bfb');
    const pnOffset = 1;
    const mask = k.hp.mask(pkt.subarray(pnOffset + 4, pnOffset + 20));
    expect(mask.subarray(0, 5).toString('hex')).toBe('aefefe7d03');
    const first = pkt[0] ^ (mask[0] & 0x1f);
    const pnLen = (first & 3) + 1;
    const aad = Buffer.from(pkt.subarray(0, pnOffset + pnLen));
    aad[0] = first;
    let truncated = 0;
    for (let i = 0; i < pnLen; i++) {
      aad[pnOffset + i] ^= mask[1 + i];
      truncated = truncated * 256 + aad[pnOffset + i];
    }
    expect(aad.toString('hex')).toBe('4200bff4');
    const pn = decodePacketNumber(654360563, truncated, pnLen * 8);
    expect(pn).toBe(654360564);
    expect(k.open(aad, pkt.subarray(pnOffset + pnLen), pn)?.toString('hex')).toBe('01');
    // a flipped tag bit fails authentication
    const bad = Buffer.from(pkt);
    bad[bad.length - 1] ^= 1;
    expect(k.open(aad, bad.subarray(pnOffset + pnLen), pn)).toBeUndefined();
  });
});

describe('packet numbers and varints (RFC 9000 Appendix A.3, Section 16)', () => {
  it('reconstructs the example of A.3', () => {
    expect(decodePacketNumber(0xa82f30ea, 0x9b32, 16)).toBe(0xa82f9b32);
    expect(decodePacketNumber(-1, 0, 8)).toBe(0);
    expect(decodePacketNumber(255, 1, 8)).toBe(257);
  });
  it('reads the example varints of A.1 and reports cut-short ones', () => {
    expect(readVarint(h('c2197c5eff14e88c'), 0, 8)).toBe(151288809941952652);
    expect(readVarint(h('9d7f3e7d'), 0, 4)).toBe(494878333);
    expect(readVarint(h('7bbd'), 0, 2)).toBe(15293);
    expect(readVarint(h('25'), 0, 1)).toBe(37);
    expect(readVarint(h('7b'), 0, 1)).toBe(-1);
  });
});
