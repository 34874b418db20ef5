import { describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { Dir } from '../../src/types.js';
import type { RsaServerKey } from '../../src/tls/crypto/rsa.js';
import { SessionCache } from '../../src/tls/session.js';
import { feedWithHole, Harness, loadSession, recordRange, rsaKeys, splitRecords, streamOf, type Chunk } from './helpers.js';

const tls13 = loadSession('tls13-aes128gcm');
const hrr = loadSession('tls13-chacha-hrr');
const ecdhe = loadSession('tls12-ecdhe-gcm');
const rsa = loadSession('tls12-rsa-cbc');
const resumed = loadSession('tls12-rsa-cbc-resumed');
const keyUpdate = loadSession('tls13-keyupdate');
const early = loadSession('tls13-early-data');
const earlyRejected = loadSession('tls13-early-data-rejected');
const reneg = loadSession('tls12-renegotiation');
const tls10 = loadSession('tls10-ecdhe-cbc');
const tls11 = loadSession('tls11-rsa-cbc');

function fields(e: { fields: Record<string, unknown> }): any {
  return e.fields as any;
}

describe('TlsFlowHandler on recorded sessions', () => {
  it('decrypts a TLS 1.3 AES-128-GCM session with its key log', () => {
    const h = new Harness({ keylog: tls13.keylog }).feed(tls13.chunks);
    expect(h.text(Dir.ToServer)).toBe(tls13.request);
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(h.handler.info.version).toBe('1.3');
    expect(h.handler.info.cipher).toBe('TLS_AES_128_GCM_SHA256');
    expect(h.handler.info.sni).toBe('test.example');
    expect(h.handler.info.alpn).toBe('http/1.1');
    expect(h.appInfo?.alpn).toBe('http/1.1');
    expect(h.handler.info.resumed).toBe(false);
    expect(h.handler.info.certificates).toHaveLength(1);
    const ev = h.close();
    expect(h.events).toHaveLength(1);
    expect(ev.dataset).toBe('tls.session');
    expect(ev.decrypted).toBe(true);
    expect(fields(ev).decryption).toEqual({ status: 'decrypted', bytes: tls13.request.length + tls13.response.length });
    expect(fields(ev).tls.established).toBe(true);
    expect(fields(ev).tls.server.x509.subject).toContain('test.example');
    expect(fields(ev).source.bytes).toBe(111);
    expect(fields(ev).destination.bytes).toBe(222);
    expect(h.closedApps).toBe(1);
    expect(h.anomalies.codes).toEqual([]);
  });

  it('decrypts a TLS 1.3 ChaCha20 session after a HelloRetryRequest', () => {
    const h = new Harness({ keylog: hrr.keylog }).feed(hrr.chunks);
    expect(h.text(Dir.ToServer)).toBe(hrr.request);
    expect(h.text(Dir.ToClient)).toBe(hrr.response);
    expect(h.handler.info.cipher).toBe('TLS_CHACHA20_POLY1305_SHA256');
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts a TLS 1.2 ECDHE AES-256-GCM session (extended master secret) with CLIENT_RANDOM', () => {
    const h = new Harness({ keylog: ecdhe.keylog }).feed(ecdhe.chunks);
    expect(h.text(Dir.ToServer)).toBe(ecdhe.request);
    expect(h.text(Dir.ToClient)).toBe(ecdhe.response);
    expect(h.handler.info.version).toBe('1.2');
    expect(h.handler.info.cipher).toBe('TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384');
    expect(h.handler.info.certificates).toHaveLength(1);
    const ev = h.close();
    expect(fields(ev).decryption.status).toBe('decrypted');
    expect(fields(ev).tls.established).toBe(true);
  });

  it('decrypts TLS 1.2 RSA key exchange with CBC + encrypt-then-MAC + EMS from the server key alone', () => {
    const h = new Harness({ rsa: rsaKeys() }).feed(rsa.chunks);
    expect(h.handler.info.clientHello?.extendedMasterSecret).toBe(true);
    expect(h.handler.info.serverHello?.encryptThenMac).toBe(true);
    expect(h.text(Dir.ToServer)).toBe(rsa.request);
    expect(h.text(Dir.ToClient)).toBe(rsa.response);
    expect(h.handler.info.cipher).toBe('TLS_RSA_WITH_AES_128_CBC_SHA');
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts TLS 1.2 RSA from the key log RSA line (premaster by encrypted prefix)', () => {
    const rsaLine = rsa.keylog.split('\n').filter((l) => l.startsWith('RSA ')).join('\n');
    expect(rsaLine).not.toBe('');
    const h = new Harness({ keylog: rsaLine }).feed(rsa.chunks);
    expect(h.text(Dir.ToClient)).toBe(rsa.response);
  });

  it('decrypts a resumed TLS 1.2 session from the session cache filled by the RSA-decrypted full handshake', () => {
    const cache = new SessionCache();
    const keys = rsaKeys();
    new Harness({ rsa: keys, cache }).feed(rsa.chunks).close();
    expect(cache.size).toBeGreaterThan(0);
    const h = new Harness({ rsa: keys, cache }).feed(resumed.chunks);
    expect(h.handler.info.resumed).toBe(true);
    expect(h.text(Dir.ToServer)).toBe(resumed.request);
    expect(h.text(Dir.ToClient)).toBe(resumed.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('reports no_key for a resumed TLS 1.2 session when nothing is known about it', () => {
    const h = new Harness({ rsa: rsaKeys() }).feed(resumed.chunks);
    expect(h.handler.info.resumed).toBe(true);
    const ev = h.close();
    expect(fields(ev).decryption).toEqual({ status: 'no_key', bytes: 0 });
    expect(ev.decrypted).toBe(false);
    expect(h.appsCreated).toBe(0);
  });

  it('decrypts when the key log arrives after the records (late keys, retryKeys)', () => {
    const h = new Harness().feed(tls13.chunks);
    expect(h.text(Dir.ToClient)).toBe('');
    expect(h.handler.status).toBe('no_key');
    expect(h.handler.info.established).toBe(true);
    expect(h.handler.info.certificates).toHaveLength(0); // encrypted in TLS 1.3
    h.ctx.secrets.addText(tls13.keylog);
    h.handler.retryKeys({ sec: 3000, nsec: 0 });
    expect(h.text(Dir.ToServer)).toBe(tls13.request);
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('drops held records over maxPendingRecordBytesPerFlow and counts it', () => {
    const h = new Harness({ options: { maxPendingRecordBytesPerFlow: 2000 } }).feed(tls13.chunks);
    expect(h.anomalies.count('tls_pending_limit')).toBeGreaterThan(0);
    h.ctx.secrets.addText(tls13.keylog);
    h.handler.retryKeys({ sec: 3000, nsec: 0 });
    const status = fields(h.close()).decryption.status;
    expect(['partial', 'no_key']).toContain(status);
  });

  it('reports integrity_failure with a wrong key log', () => {
    const wrong = tls13.keylog.replace(/ ([0-9a-f]{64})$/gm, (_m, s: string) => ' ' + (s[0] === '0' ? '1' : '0') + s.slice(1));
    const h = new Harness({ keylog: wrong }).feed(tls13.chunks);
    const ev = h.close();
    expect(fields(ev).decryption.status).toBe('integrity_failure');
    expect(h.anomalies.count('tls_decrypt_failed')).toBeGreaterThan(0);
  });

  it('reports missing_handshake when the capture starts after the hellos', () => {
    const c = splitRecords(streamOf(tls13, Dir.ToServer));
    const s = splitRecords(streamOf(tls13, Dir.ToClient));
    const h = new Harness({ keylog: tls13.keylog }).feed([
      ...c.slice(1).map((data) => ({ dir: Dir.ToServer, data })),
      ...s.slice(1).map((data) => ({ dir: Dir.ToClient, data })),
    ]);
    const ev = h.close();
    expect(fields(ev).decryption.status).toBe('missing_handshake');
  });

  it('never puts key material into anomalies or events', () => {
    const wrong = tls13.keylog.replace(/ ([0-9a-f]{64})$/gm, (_m, s: string) => ' ' + (s[0] === '0' ? '1' : '0') + s.slice(1));
    const h = new Harness({ keylog: wrong }).feed(tls13.chunks);
    h.close();
    const text = JSON.stringify({ a: h.anomalies.details, e: h.events });
    for (const line of tls13.keylog.trim().split('\n')) {
      expect(text).not.toContain(line.split(' ')[2]);
    }
  });

  it('decrypts TLS 1.3 fed one byte at a time', () => {
    const h = new Harness({ keylog: tls13.keylog }).feed(tls13.chunks, (c) => [...c.data].map((b) => Buffer.from([b])));
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts TLS 1.2 RSA fed in 7-byte pieces', () => {
    const h = new Harness({ rsa: rsaKeys() }).feed(rsa.chunks, (c) => {
      const out: Buffer[] = [];
      for (let i = 0; i < c.data.length; i += 7) out.push(c.data.subarray(i, i + 7));
      return out;
    });
    expect(h.text(Dir.ToClient)).toBe(rsa.response);
  });

  it('resynchronises after a gap that swallows a whole record (TLS 1.3 NewSessionTicket) and decrypts the next', () => {
    const srv = streamOf(tls13, Dir.ToClient);
    // Server records: ServerHello, CCS, EE.., Finished.., 2 x NewSessionTicket, application data, alert.
    const [a, b] = recordRange(srv, srv.length > 0 ? 6 : 0);
    expect(srv[a]).toBe(23);
    const h = new Harness({ keylog: tls13.keylog });
    feedWithHole(h, tls13.chunks, Dir.ToClient, a, b);
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(h.anomalies.count('tls_resync')).toBe(1);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
    expect(h.gaps[Dir.ToClient]).toEqual([b - a]);
    expect(fields(h.close()).decryption.status).toBe('partial');
  });

  it('skips a record whose middle was lost and decrypts the next one by sequence number (TLS 1.2 GCM)', () => {
    const srv = streamOf(ecdhe, Dir.ToClient);
    // Server records: SH, Certificate, SKE, SHD, NewSessionTicket, CCS, Finished, app data, alert.
    const [a, b] = recordRange(srv, 7);
    expect(srv[a]).toBe(23);
    const h = new Harness({ keylog: ecdhe.keylog });
    feedWithHole(h, ecdhe.chunks, Dir.ToClient, a + 20, a + 50);
    expect(h.gaps[Dir.ToClient]).toEqual([b - a]);
    expect(h.anomalies.count('tls_resync')).toBe(0);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
    expect(h.text(Dir.ToServer)).toBe(ecdhe.request);
    // The close_notify alert after the lost record decrypted (no failure), so the session is partial.
    expect(fields(h.close()).decryption.status).toBe('partial');
  });

  it('counts records that fail to decrypt after a gap inside the encrypted handshake (TLS 1.3)', () => {
    const srv = streamOf(tls13, Dir.ToClient);
    const [a] = recordRange(srv, 3);
    const h = new Harness({ keylog: tls13.keylog });
    feedWithHole(h, tls13.chunks, Dir.ToClient, a + 10, a + 20);
    // The lost Certificate record is skipped by sequence number; the rest decrypts.
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(fields(h.close()).decryption.status).toBe('partial');
  });

  it('counts a fatal alert and keeps going', () => {
    const h = new Harness({ keylog: tls13.keylog });
    h.handler.onData(Dir.ToClient, Buffer.from('15030300020228', 'hex'), { sec: 1, nsec: 0 });
    expect(h.anomalies.count('tls_alert_fatal')).toBe(1);
    h.feed(tls13.chunks);
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
  });

  it('emits exactly one event even when closed twice', () => {
    const h = new Harness({ keylog: tls13.keylog }).feed(tls13.chunks);
    h.close();
    h.close();
    expect(h.events).toHaveLength(1);
  });

  it('survives an analyzer that throws and counts tls_internal_error', () => {
    const h = new Harness({ keylog: tls13.keylog });
    // Replace the app factory's stream with one that throws by wrapping data delivery.
    const orig = h.data[Dir.ToServer];
    h.data[Dir.ToServer] = new Proxy(orig, {
      get(target, p, r) {
        if (p === 'push') return () => { throw new Error('analyzer bug'); };
        return Reflect.get(target, p, r);
      },
    });
    h.feed(tls13.chunks);
    expect(h.anomalies.count('tls_internal_error')).toBeGreaterThan(0);
    expect(h.close().dataset).toBe('tls.session');
  });
});

describe('TlsFlowHandler RSA key selection', () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const decoyHex = Buffer.from(privateKey.export({ format: 'jwk' }).n as string, 'base64url').toString('hex');
  const decoy: RsaServerKey = { modulusHex: decoyHex, key: privateKey, source: 'decoy' };
  const real = rsaKeys()[0];

  it('uses the key whose modulus matches the server certificate', () => {
    const h = new Harness({ rsa: [decoy, real] }).feed(rsa.chunks);
    expect(h.text(Dir.ToClient)).toBe(rsa.response);
  });

  it('tries every key when none matches the certificate', () => {
    const unmatched: RsaServerKey = { ...real, modulusHex: real.modulusHex.replace(/^../, 'ff') };
    const h = new Harness({ rsa: [decoy, unmatched] }).feed(rsa.chunks);
    expect(h.text(Dir.ToClient)).toBe(rsa.response);
  });

  it('reports no_key and counts tls_rsa_decrypt_failed when no key opens the premaster', () => {
    const h = new Harness({ rsa: [decoy] }).feed(rsa.chunks);
    expect(h.handler.waitingForKeys).toBe(true);
    expect(h.anomalies.count('tls_rsa_decrypt_failed')).toBe(1);
    expect(fields(h.close()).decryption.status).toBe('no_key');
  });
});

describe('TlsFlowHandler TLS 1.0 / 1.1', () => {
  it('decrypts TLS 1.0 ECDHE CBC (implicit IV chaining) with CLIENT_RANDOM', () => {
    const h = new Harness({ keylog: tls10.keylog }).feed(tls10.chunks);
    expect(h.handler.info.version).toBe('1.0');
    expect(h.text(Dir.ToServer)).toBe(tls10.request);
    expect(h.text(Dir.ToClient)).toBe(tls10.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts TLS 1.1 RSA CBC with the server key', () => {
    const h = new Harness({ rsa: rsaKeys() }).feed(tls11.chunks);
    expect(h.handler.info.version).toBe('1.1');
    expect(h.handler.info.cipher).toBe('TLS_RSA_WITH_AES_256_CBC_SHA');
    expect(h.text(Dir.ToServer)).toBe(tls11.request);
    expect(h.text(Dir.ToClient)).toBe(tls11.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });
});

describe('TlsFlowHandler TLS 1.2 renegotiation', () => {
  it('follows a server-initiated renegotiation to the new keys (second CLIENT_RANDOM)', () => {
    const h = new Harness({ keylog: reneg.keylog }).feed(reneg.chunks);
    expect(h.text(Dir.ToServer)).toBe(reneg.request);
    expect(h.text(Dir.ToClient)).toBe(reneg.response);
    expect(h.anomalies.count('tls_renegotiation')).toBe(1);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
    expect(h.handler.info.resumed).toBe(false);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts a renegotiation that resumes the session from the cache, without its CLIENT_RANDOM', () => {
    const first = reneg.keylog.split('\n').filter((l) => l.startsWith('CLIENT_RANDOM'))[0];
    const h = new Harness({ keylog: first }).feed(reneg.chunks);
    expect(h.text(Dir.ToServer)).toBe(reneg.request);
    expect(h.text(Dir.ToClient)).toBe(reneg.response);
    expect(h.ctx.sessionCache.size).toBeGreaterThan(0);
  });

  it('holds records after the renegotiation when its master secret is unknown, and decrypts them on retryKeys', () => {
    const first = reneg.keylog.split('\n').filter((l) => l.startsWith('CLIENT_RANDOM'))[0];
    // A cache that forgets everything: the renegotiation's abbreviated handshake has no master.
    const forgetful = new SessionCache(0);
    const h = new Harness({ keylog: first, cache: forgetful }).feed(reneg.chunks);
    expect(h.text(Dir.ToServer)).toBe('before renegotiation\n');
    expect(h.handler.waitingForKeys).toBe(true);
    h.ctx.secrets.addText(reneg.keylog);
    h.handler.retryKeys({ sec: 5000, nsec: 0 });
    expect(h.text(Dir.ToServer)).toBe(reneg.request);
    expect(h.text(Dir.ToClient)).toBe(reneg.response);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });
});

describe('TlsFlowHandler status and cache', () => {
  it('reports unsupported_cipher for a known suite it does not decrypt (single DES)', () => {
    const chunks = rsa.chunks.map((c) => ({ dir: c.dir, data: Buffer.from(c.data) }));
    const first = chunks.find((c) => c.dir === Dir.ToClient)!.data;
    const sidLen = first[5 + 4 + 2 + 32];
    first.writeUInt16BE(0x0009, 5 + 4 + 2 + 32 + 1 + sidLen); // TLS_RSA_WITH_DES_CBC_SHA
    const h = new Harness({ rsa: rsaKeys() }).feed(chunks);
    expect(h.handler.info.cipher).toBe('TLS_RSA_WITH_DES_CBC_SHA');
    const ev = h.close();
    expect(fields(ev).decryption.status).toBe('unsupported_cipher');
    expect(h.anomalies.count('tls_unsupported_cipher')).toBe(1);
  });

  it('SessionCache evicts the least recently used entry beyond its bound', () => {
    const c = new SessionCache(2);
    const m = Buffer.alloc(48, 1);
    c.setBySessionId(Buffer.from([1]), m);
    c.setBySessionId(Buffer.from([2]), m);
    expect(c.getBySessionId(Buffer.from([1]))).toEqual(m); // touch 1: 2 is now the oldest
    c.setByTicket(Buffer.from([3]), m);
    expect(c.size).toBe(2);
    expect(c.getBySessionId(Buffer.from([2]))).toBeUndefined();
    expect(c.getBySessionId(Buffer.from([1]))).toEqual(m);
    expect(c.getByTicket(Buffer.from([3]))).toEqual(m);
    expect(c.getBySessionId(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('TlsFlowHandler TLS 1.3 features (openssl s_client/s_server)', () => {
  it('follows KeyUpdate in both directions', () => {
    const h = new Harness({ keylog: keyUpdate.keylog }).feed(keyUpdate.chunks);
    expect(h.text(Dir.ToServer)).toBe(keyUpdate.request);
    expect(h.text(Dir.ToClient)).toBe(keyUpdate.response);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('decrypts accepted 0-RTT early data, then the rest of a PSK-resumed session', () => {
    const h = new Harness({ keylog: early.keylog }).feed(early.chunks);
    expect(h.handler.info.resumed).toBe(true);
    expect(h.text(Dir.ToServer)).toBe(early.request);
    expect(h.text(Dir.ToClient)).toBe(early.response);
    expect(h.handler.info.certificates).toHaveLength(0);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('skips 0-RTT data the server rejected (trial decryption with the handshake key first)', () => {
    const h = new Harness({ keylog: earlyRejected.keylog }).feed(earlyRejected.chunks);
    expect(h.handler.info.resumed).toBe(false);
    expect(h.text(Dir.ToServer)).toBe(earlyRejected.request);
    expect(h.text(Dir.ToClient)).toBe(earlyRejected.response);
    expect(h.anomalies.count('tls13_early_data_skipped')).toBe(1);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
    expect(fields(h.close()).decryption.status).toBe('decrypted');
  });

  it('delivers 0-RTT data in order when EndOfEarlyData shows acceptance before EncryptedExtensions is readable', () => {
    const noServerHs = early.keylog.split('\n').filter((l) => !l.startsWith('SERVER_HANDSHAKE')).join('\n');
    const h = new Harness({ keylog: noServerHs }).feed(early.chunks);
    expect(h.text(Dir.ToServer)).toBe(early.request);
    expect(h.text(Dir.ToClient)).toBe(early.response);
  });

  it('holds 0-RTT data while its acceptance is unknown and shows it at close', () => {
    const onlyEarly = early.keylog.split('\n').filter((l) => l.startsWith('CLIENT_EARLY') || l.startsWith('CLIENT_HANDSHAKE')).join('\n');
    const h = new Harness({ keylog: onlyEarly });
    // Client: ClientHello + early data; server: ServerHello + its encrypted flight (no keys).
    h.feed(early.chunks.slice(0, 2));
    expect(h.text(Dir.ToServer)).toBe('');
    h.close();
    expect(h.text(Dir.ToServer)).toBe('early data line\n');
  });

  it('skips early data it has no key for and still decrypts the rest (partial)', () => {
    const noEarly = early.keylog.split('\n').filter((l) => !l.startsWith('CLIENT_EARLY')).join('\n');
    const h = new Harness({ keylog: noEarly }).feed(early.chunks);
    expect(h.text(Dir.ToServer)).toBe('after handshake\n');
    expect(h.text(Dir.ToClient)).toBe(early.response);
    // The early data record and the EndOfEarlyData record (also under the early key).
    expect(h.anomalies.count('tls13_early_data_no_key')).toBe(2);
    expect(fields(h.close()).decryption.status).toBe('partial');
  });

  it('decrypts application data when only the application traffic secrets were logged', () => {
    const appOnly = tls13.keylog.split('\n').filter((l) => !l.includes('HANDSHAKE')).join('\n');
    const h = new Harness({ keylog: appOnly }).feed(tls13.chunks);
    expect(h.text(Dir.ToServer)).toBe(tls13.request);
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
    expect(h.anomalies.count('tls_decrypt_failed')).toBe(0);
  });
});

describe('TlsFlowHandler fragmentation', () => {
  it('reassembles a ClientHello split across 3 handshake records', () => {
    const cli = streamOf(tls13, Dir.ToServer);
    const recs = splitRecords(cli);
    const ch = recs[0];
    const body = ch.subarray(5);
    const cut = [0, 40, 41, body.length];
    const parts: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const frag = body.subarray(cut[i], cut[i + 1]);
      const hdr = Buffer.from([22, 3, 1, frag.length >> 8, frag.length & 0xff]);
      parts.push(hdr, frag);
    }
    const chunks: Chunk[] = tls13.chunks.map((c, i) =>
      i === 0 ? { dir: c.dir, data: Buffer.concat([...parts, cli.subarray(ch.length, c.data.length)]) } : c,
    );
    const h = new Harness({ keylog: tls13.keylog }).feed(chunks);
    expect(h.handler.info.sni).toBe('test.example');
    expect(h.text(Dir.ToClient)).toBe(tls13.response);
  });
});
