import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Dir } from '../../src/types.js';
import {
  HandshakeReassembler,
  HandshakeType,
  parseCertificate,
  parseClientHello,
  parseEncryptedExtensions,
  parseFinished,
  parseKeyUpdate,
  parseNewSessionTicket,
  parseRsaClientKeyExchange,
  parseServerHello,
} from '../../src/tls/handshake.js';
import { Anomalies, loadSession, splitRecords, streamOf } from './helpers.js';

/** All plaintext handshake messages at the start of a direction (before CCS / encryption). */
function plaintextMessages(name: string, dir: Dir): { type: number; body: Buffer }[] {
  const out: { type: number; body: Buffer }[] = [];
  const r = new HandshakeReassembler((type, body) => out.push({ type, body: Buffer.from(body) }), new Anomalies(), { maxHandshakeMessageBytes: 1 << 20 });
  for (const rec of splitRecords(streamOf(loadSession(name), dir))) {
    if (rec[0] === 20) break;
    if (rec[0] === 22) r.push(rec.subarray(5));
  }
  return out;
}

const ch13 = plaintextMessages('tls13-aes128gcm', Dir.ToServer)[0];
const sh13 = plaintextMessages('tls13-aes128gcm', Dir.ToClient)[0];
const hrrMsgs = plaintextMessages('tls13-chacha-hrr', Dir.ToClient);
const srv12 = plaintextMessages('tls12-ecdhe-gcm', Dir.ToClient);
const cli12rsa = plaintextMessages('tls12-rsa-cbc', Dir.ToServer);
const srv12rsa = plaintextMessages('tls12-rsa-cbc', Dir.ToClient);
const keylogRandom = loadSession('tls13-aes128gcm').keylog.split('\n')[0].split(' ')[1];

function hs(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

describe('ClientHello parser', () => {
  it('parses a real TLS 1.3 ClientHello (OpenSSL 3)', () => {
    expect(ch13.type).toBe(HandshakeType.ClientHello);
    const ch = parseClientHello(ch13.body)!;
    expect(ch).toBeDefined();
    expect(ch.legacyVersion).toBe(0x0303);
    expect(ch.random.toString('hex')).toBe(keylogRandom);
    expect(ch.sessionId.length).toBe(32);
    expect(ch.cipherSuites).toContain(0x1301);
    expect(ch.compressionMethods).toEqual([0]);
    expect(ch.sni).toBe('test.example');
    expect(ch.alpn).toEqual(['http/1.1']);
    expect(ch.supportedVersions).toContain(0x0304);
    expect(ch.keyShareGroups).toContain(29);
    expect(ch.supportedGroups).toContain(29);
    expect(ch.signatureAlgorithms!.length).toBeGreaterThan(3);
    expect(ch.pskKeyExchangeModes).toEqual([1]);
    expect(ch.extendedMasterSecret).toBe(true);
    const types = ch.extensions.map((e) => e.type);
    for (const t of [0, 10, 13, 16, 43, 45, 51]) expect(types).toContain(t);
  });

  it('keeps unknown extensions and cipher suites as numbers', () => {
    const body = Buffer.from(
      '0303' + '11'.repeat(32) + '00' + '0004' + 'fafa' + '1301' + '0100' + '0008' + 'abcd0000' + '7a7a0000',
      'hex',
    );
    const ch = parseClientHello(body)!;
    expect(ch.cipherSuites).toEqual([0xfafa, 0x1301]);
    expect(ch.extensions.map((e) => e.type)).toEqual([0xabcd, 0x7a7a]);
  });

  it('accepts a TLS 1.2 ClientHello without extensions', () => {
    const body = Buffer.from('0303' + '22'.repeat(32) + '00' + '0002' + '002f' + '0100', 'hex');
    const ch = parseClientHello(body)!;
    expect(ch.extensions).toEqual([]);
    expect(ch.cipherSuites).toEqual([0x2f]);
  });

  it('rejects truncated SNI', () => {
    // server_name extension whose list claims 10 bytes but holds 3
    const ext = Buffer.from('0000' + '0005' + '000a' + '000001', 'hex');
    const body = Buffer.concat([Buffer.from('0303' + '22'.repeat(32) + '00' + '0002' + '002f' + '0100', 'hex'), Buffer.from([0, ext.length]), ext]);
    const ch = parseClientHello(body)!;
    expect(ch).toBeDefined();
    expect(ch.sni).toBeUndefined();
  });

  it('rejects a ClientHello whose extension block overruns', () => {
    const body = Buffer.concat([ch13.body.subarray(0, ch13.body.length - 1)]);
    expect(parseClientHello(body)).toBeUndefined();
  });

  it('rejects a session id longer than 32 bytes', () => {
    const body = Buffer.from('0303' + '22'.repeat(32) + '21' + '00'.repeat(33) + '0002002f0100', 'hex');
    expect(parseClientHello(body)).toBeUndefined();
  });

  it('never throws on any prefix of a real ClientHello', () => {
    for (let i = 0; i <= ch13.body.length; i++) parseClientHello(ch13.body.subarray(0, i));
    expect(parseClientHello(ch13.body.subarray(0, 10))).toBeUndefined();
  });

  it('parses the ClientHello the copy owns (input may be reused)', () => {
    const copy = Buffer.from(ch13.body);
    const ch = parseClientHello(copy)!;
    copy.fill(0);
    expect(ch.sni).toBe('test.example');
    expect(ch.random.toString('hex')).toBe(keylogRandom);
  });
});

describe('ServerHello parser', () => {
  it('parses a real TLS 1.3 ServerHello', () => {
    const sh = parseServerHello(sh13.body)!;
    expect(sh.isHelloRetryRequest).toBe(false);
    expect(sh.selectedVersion).toBe(0x0304);
    expect(sh.version).toBe(0x0304);
    expect(sh.legacyVersion).toBe(0x0303);
    expect(sh.cipherSuite).toBe(0x1301);
    expect(sh.keyShare).toBe(true);
    expect(sh.keyShareGroup).toBe(29);
    expect(sh.preSharedKey).toBe(false);
  });

  it('detects a HelloRetryRequest by its special random', () => {
    const hrr = parseServerHello(hrrMsgs[0].body)!;
    expect(hrr.isHelloRetryRequest).toBe(true);
    expect(hrr.keyShareGroup).toBe(24); // secp384r1: the only group the server accepts
    expect(hrr.cipherSuite).toBe(0x1303);
  });

  it('parses a TLS 1.2 ServerHello with extended master secret and session ticket', () => {
    const sh = parseServerHello(srv12[0].body)!;
    expect(sh.version).toBe(0x0303);
    expect(sh.selectedVersion).toBeUndefined();
    expect(sh.cipherSuite).toBe(0xc030);
    expect(sh.extendedMasterSecret).toBe(true);
  });

  it('sees encrypt-then-MAC on a CBC suite', () => {
    const sh = parseServerHello(srv12rsa[0].body)!;
    expect(sh.cipherSuite).toBe(0x002f);
    expect(sh.encryptThenMac).toBe(true);
  });

  it('never throws on any prefix', () => {
    for (let i = 0; i <= sh13.body.length; i++) parseServerHello(sh13.body.subarray(0, i));
    expect(parseServerHello(sh13.body.subarray(0, 20))).toBeUndefined();
  });
});

describe('other handshake messages', () => {
  it('parses a TLS 1.2 Certificate chain', () => {
    const cert = srv12.find((m) => m.type === HandshakeType.Certificate)!;
    const c = parseCertificate(cert.body, false)!;
    expect(c.certificates).toHaveLength(1);
    expect(c.certificates[0][0]).toBe(0x30); // DER SEQUENCE
    expect(parseCertificate(cert.body, true)).toBeUndefined();
  });

  it('parses the TLS 1.3 Certificate format with per-entry extensions', () => {
    const der = Buffer.from('3003020101', 'hex');
    const entry = Buffer.concat([Buffer.from([0, 0, der.length]), der, Buffer.from('0000', 'hex')]);
    const body = Buffer.concat([Buffer.from([0]), Buffer.from([0, 0, entry.length]), entry]);
    const c = parseCertificate(body, true)!;
    expect(c.context!.length).toBe(0);
    expect(c.certificates).toEqual([der]);
  });

  it('extracts the RSA encrypted premaster with its 2-byte length (TLS 1.0+) and bare (SSLv3)', () => {
    const cke = cli12rsa.find((m) => m.type === HandshakeType.ClientKeyExchange)!;
    const enc = parseRsaClientKeyExchange(cke.body, 0x0303)!;
    expect(enc.length).toBe(256);
    expect(parseRsaClientKeyExchange(Buffer.from('0102', 'hex'), 0x0300)!.length).toBe(2);
    expect(parseRsaClientKeyExchange(Buffer.from('000501', 'hex'), 0x0303)).toBeUndefined();
  });

  it('parses TLS 1.2 and TLS 1.3 NewSessionTicket', () => {
    const t12 = parseNewSessionTicket(Buffer.from('0000012c0003aabbcc', 'hex'), false)!;
    expect(t12).toEqual({ lifetime: 300, ticket: Buffer.from('aabbcc', 'hex') });
    const t13 = parseNewSessionTicket(Buffer.from('00001c20' + '01020304' + '0101' + '0002eeff' + '0000', 'hex'), true)!;
    expect(t13.lifetime).toBe(7200);
    expect(t13.ageAdd).toBe(0x01020304);
    expect(t13.nonce).toEqual(Buffer.from([1]));
    expect(t13.ticket).toEqual(Buffer.from('eeff', 'hex'));
    expect(parseNewSessionTicket(Buffer.from('00001c20010203040101000000', 'hex'), true)).toBeUndefined(); // empty ticket
  });

  it('parses EncryptedExtensions with ALPN and early_data', () => {
    const alpn = Buffer.from('0010' + '0005' + '0003' + '026832', 'hex');
    const early = Buffer.from('002a0000', 'hex');
    const list = Buffer.concat([alpn, early]);
    const ee = parseEncryptedExtensions(Buffer.concat([Buffer.from([0, list.length]), list]))!;
    expect(ee.alpn).toBe('h2');
    expect(ee.earlyData).toBe(true);
    expect(parseEncryptedExtensions(Buffer.from('0005', 'hex'))).toBeUndefined();
  });

  it('parses KeyUpdate and rejects unknown request values', () => {
    expect(parseKeyUpdate(Buffer.from([1]))).toEqual({ requestUpdate: true });
    expect(parseKeyUpdate(Buffer.from([0]))).toEqual({ requestUpdate: false });
    expect(parseKeyUpdate(Buffer.from([2]))).toBeUndefined();
    expect(parseKeyUpdate(Buffer.alloc(0))).toBeUndefined();
    expect(parseFinished(Buffer.from('0102', 'hex'))).toEqual(Buffer.from('0102', 'hex'));
  });

  it('never throws on any prefix of real Certificate, ClientKeyExchange and NewSessionTicket bodies', () => {
    const bodies = [...srv12, ...cli12rsa, ...srv12rsa].map((m) => m.body);
    for (const b of bodies) {
      for (let i = 0; i < b.length; i++) {
        const p = b.subarray(0, i);
        parseCertificate(p, false);
        parseCertificate(p, true);
        parseRsaClientKeyExchange(p, 0x0303);
        parseNewSessionTicket(p, false);
        parseNewSessionTicket(p, true);
        parseEncryptedExtensions(p);
      }
    }
    const cert = srv12.find((m) => m.type === HandshakeType.Certificate)!.body;
    expect(parseCertificate(cert.subarray(0, cert.length - 1), false)).toBeUndefined();
  });

  it('no parser throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (u, b) => {
        const buf = Buffer.from(u);
        parseClientHello(buf);
        parseServerHello(buf);
        parseEncryptedExtensions(buf);
        parseCertificate(buf, b);
        parseNewSessionTicket(buf, b);
        parseRsaClientKeyExchange(buf, b ? 0x0300 : 0x0303);
        parseKeyUpdate(buf);
        parseFinished(buf);
      }),
      { numRuns: 1000 },
    );
  });

  it('no parser throws on a real ClientHello with random byte mutations', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(ch13.body.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (muts) => {
        const b = Buffer.from(ch13.body);
        for (const [i, v] of muts) b[i] = v;
        parseClientHello(b);
      }),
      { numRuns: 500 },
    );
  });
});

describe('HandshakeReassembler', () => {
  function collect(max = 1 << 20) {
    const out: { type: number; body: Buffer; raw: Buffer }[] = [];
    const an = new Anomalies();
    const r = new HandshakeReassembler((type, body, raw) => out.push({ type, body: Buffer.from(body), raw: Buffer.from(raw) }), an, { maxHandshakeMessageBytes: max });
    return { r, out, an };
  }
  const m1 = hs(1, Buffer.alloc(300, 1));
  const m2 = hs(11, Buffer.alloc(5, 2));
  const m3 = hs(14, Buffer.alloc(0));

  it('splits several messages sharing one fragment', () => {
    const { r, out } = collect();
    r.push(Buffer.concat([m1, m2, m3]));
    expect(out.map((m) => m.type)).toEqual([1, 11, 14]);
    expect(out[0].raw).toEqual(m1);
    expect(out[2].body.length).toBe(0);
  });

  it('joins a message spanning fragments, including a split 4-byte header, for any cut points', () => {
    const all = Buffer.concat([m1, m2, m3]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: all.length }), { maxLength: 10 }), (cuts) => {
        const { r, out } = collect();
        const pts = [0, ...cuts.sort((a, b) => a - b), all.length];
        for (let i = 0; i + 1 < pts.length; i++) r.push(all.subarray(pts[i], pts[i + 1]));
        expect(out.map((m) => m.raw)).toEqual([m1, m2, m3]);
        expect(r.buffered).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('skips a message above maxHandshakeMessageBytes, counts it, and parses the next one', () => {
    const { r, out, an } = collect(100);
    const all = Buffer.concat([m1, m2]);
    r.push(all.subarray(0, 2));
    r.push(all.subarray(2, 150));
    r.push(all.subarray(150));
    expect(an.count('tls_handshake_too_large')).toBe(1);
    expect(out.map((m) => m.type)).toEqual([11]);
  });

  it('drops a partial message on reset (after a gap)', () => {
    const { r, out } = collect();
    r.push(m1.subarray(0, 100));
    r.reset();
    r.push(m2);
    expect(out.map((m) => m.type)).toEqual([11]);
  });
});
