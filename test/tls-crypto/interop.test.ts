/**
 * Interop with a real TLS stack: node:tls (OpenSSL) client and server talk over an in-memory pipe;
 * the bytes on the "wire" and the client's NSS key-log lines are captured, and this layer's
 * functions (key log store, PRF/key block, TLS 1.3 key schedule, RSA premaster decryption, record
 * decryption) must recover the application data, the way the engine will from a capture.
 * The record/handshake parsing here is a minimal test-only helper, not the engine's parser.
 */
import { constants, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SecretsStore } from '../../src/tls/crypto/keylog.js';
import { extendedMasterSecret12, keyBlock12, masterSecret12 } from '../../src/tls/crypto/prf.js';
import { trafficKeys13 } from '../../src/tls/crypto/keySchedule13.js';
import { RecordDecryptor } from '../../src/tls/crypto/recordDecryptor.js';
import { decryptPreMaster, loadRsaKeyFile } from '../../src/tls/crypto/rsa.js';
import { suiteById, type CipherSuite } from '../../src/tls/crypto/suites.js';

const data = (f: string) => fileURLToPath(new URL(`./data/${f}`, import.meta.url));
const KEY = readFileSync(data('rsa-pkcs1.pem'));
const CERT = readFileSync(data('cert.pem'));

interface Capture {
  toServer: Buffer;
  toClient: Buffer;
  keylog: string;
  received: Buffer;
}

const REQUEST = Buffer.from('GET /hello HTTP/1.1\r\nHost: test.example\r\n\r\n'.repeat(50));
const RESPONSE = Buffer.alloc(40000, 'x'); // several full-size records

/** Runs one TLS connection between node's client and server over a recorded in-memory pipe. */
async function converse(client: tls.ConnectionOptions, server: tls.TlsOptions): Promise<Capture> {
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  let serverEnd: Duplex | undefined;
  const clientEnd = new Duplex({
    read() {},
    write(chunk: Buffer, _e, cb) {
      toServer.push(Buffer.from(chunk));
      serverEnd?.push(chunk);
      cb();
    },
  });
  serverEnd = new Duplex({
    read() {},
    write(chunk: Buffer, _e, cb) {
      toClient.push(Buffer.from(chunk));
      clientEnd.push(chunk);
      cb();
    },
  });
  const keylog: string[] = [];
  const srv = new tls.TLSSocket(serverEnd as Duplex, { isServer: true, key: KEY, cert: CERT, ...server } as tls.TLSSocketOptions);
  srv.on('error', () => {});
  let got = 0;
  srv.on('data', (d: Buffer) => {
    got += d.length;
    if (got === REQUEST.length) srv.write(RESPONSE);
  });
  const cli = tls.connect({ socket: clientEnd, rejectUnauthorized: false, ...client });
  cli.on('keylog', (line: Buffer) => keylog.push(line.toString()));
  const received: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    cli.on('error', reject);
    cli.on('secureConnect', () => cli.write(REQUEST));
    cli.on('data', (d: Buffer) => {
      received.push(d);
      if (Buffer.concat(received).length === RESPONSE.length) resolve();
    });
  });
  cli.destroy();
  srv.destroy();
  return { toServer: Buffer.concat(toServer), toClient: Buffer.concat(toClient), keylog: keylog.join(''), received: Buffer.concat(received) };
}

interface Rec {
  header: Buffer;
  body: Buffer;
}
function records(stream: Buffer): Rec[] {
  const out: Rec[] = [];
  let off = 0;
  while (off + 5 <= stream.length) {
    const len = stream.readUInt16BE(off + 3);
    out.push({ header: stream.subarray(off, off + 5), body: stream.subarray(off + 5, off + 5 + len) });
    off += 5 + len;
  }
  return out;
}

/** Handshake messages (type, full message bytes) from the plaintext handshake records before ChangeCipherSpec. */
function plainHandshake(recs: Rec[]): Array<{ type: number; msg: Buffer }> {
  const chunks: Buffer[] = [];
  for (const r of recs) {
    if (r.header[0] === 20 || r.header[0] === 23) break;
    if (r.header[0] === 22) chunks.push(r.body);
  }
  const hs = Buffer.concat(chunks);
  const out: Array<{ type: number; msg: Buffer }> = [];
  let off = 0;
  while (off + 4 <= hs.length) {
    const len = hs.readUIntBE(off + 1, 3);
    out.push({ type: hs[off], msg: hs.subarray(off, off + 4 + len) });
    off += 4 + len;
  }
  return out;
}

/** ClientHello/ServerHello random (RFC 5246 §7.4.1.2) and the ServerHello's suite and extensions. */
function helloInfo(cap: Capture) {
  const ch = plainHandshake(records(cap.toServer)).find((m) => m.type === 1)!.msg;
  const sh = plainHandshake(records(cap.toClient)).find((m) => m.type === 2)!.msg;
  const clientRandom = ch.subarray(6, 38);
  const serverRandom = sh.subarray(6, 38);
  const sidLen = sh[38];
  const suiteId = sh.readUInt16BE(39 + sidLen);
  const exts = new Set<number>();
  let off = 39 + sidLen + 3 + 2;
  while (off + 4 <= sh.length) {
    exts.add(sh.readUInt16BE(off));
    off += 4 + sh.readUInt16BE(off + 2);
  }
  return { clientRandom, serverRandom, suite: suiteById(suiteId)!, exts };
}

/** Decrypts the application data of one TLS 1.2 direction (records after ChangeCipherSpec). */
function appData12(stream: Buffer, d: RecordDecryptor): Buffer {
  const out: Buffer[] = [];
  let encrypted = false;
  for (const r of records(stream)) {
    if (r.header[0] === 20) {
      encrypted = true;
      continue;
    }
    if (!encrypted) continue;
    const res = d.decrypt(r.header, r.body);
    expect(res.ok).toBe(true);
    if (res.ok && res.contentType === 23) out.push(res.plaintext);
  }
  return Buffer.concat(out);
}

/** TLS 1.3: handshake keys until the Finished message, then application keys (RFC 8446 §7.3). */
function appData13(stream: Buffer, suite: CipherSuite, hs: Buffer, ap: Buffer): Buffer {
  let d = new RecordDecryptor(suite, trafficKeys13(suite, hs), { tls13: true, encryptThenMac: false });
  let inHandshake = true;
  const out: Buffer[] = [];
  for (const r of records(stream)) {
    if (r.header[0] !== 23) continue;
    const res = d.decrypt(r.header, r.body);
    expect(res.ok).toBe(true);
    if (!res.ok) continue;
    if (inHandshake && res.contentType === 22) {
      let off = 0;
      while (off + 4 <= res.plaintext.length) {
        if (res.plaintext[off] === 20) {
          inHandshake = false;
          d = new RecordDecryptor(suite, trafficKeys13(suite, ap), { tls13: true, encryptThenMac: false });
        }
        off += 4 + res.plaintext.readUIntBE(off + 1, 3);
      }
    } else if (res.contentType === 23) out.push(res.plaintext);
  }
  return Buffer.concat(out);
}

describe('interop with node:tls (OpenSSL)', () => {
  for (const cipher of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_8_SHA256']) {
    it(`decrypts a TLS 1.3 ${cipher} connection from its key log`, async () => {
      const opts = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: cipher } as tls.TlsOptions;
      const cap = await converse(opts as tls.ConnectionOptions, opts);
      expect(cap.received).toEqual(RESPONSE);
      const store = new SecretsStore();
      expect(store.addText(cap.keylog).malformed).toBe(0);
      const { clientRandom, suite } = helloInfo(cap);
      expect(suite.name).toBe(cipher);
      const get = (l: string) => store.get(clientRandom, l)!;
      expect(appData13(cap.toServer, suite, get('CLIENT_HANDSHAKE_TRAFFIC_SECRET'), get('CLIENT_TRAFFIC_SECRET_0'))).toEqual(REQUEST);
      expect(appData13(cap.toClient, suite, get('SERVER_HANDSHAKE_TRAFFIC_SECRET'), get('SERVER_TRAFFIC_SECRET_0'))).toEqual(RESPONSE);
    });
  }

  const tls12: Array<[string, string, boolean]> = [
    ['ECDHE-RSA-AES128-GCM-SHA256', 'TLSv1.2', false],
    ['ECDHE-RSA-AES256-GCM-SHA384', 'TLSv1.2', false],
    ['ECDHE-RSA-CHACHA20-POLY1305', 'TLSv1.2', false],
    ['AES128-CCM', 'TLSv1.2', false],
    ['AES256-CCM8', 'TLSv1.2', false],
    ['ECDHE-RSA-AES128-SHA', 'TLSv1.2', false],
    ['ECDHE-RSA-AES128-SHA', 'TLSv1.2', true],
    ['ECDHE-RSA-AES256-SHA384', 'TLSv1.2', false],
    ['ECDHE-RSA-AES256-SHA384', 'TLSv1.2', true],
    ['AES256-SHA256', 'TLSv1.2', true],
    ['ECDHE-RSA-AES128-SHA', 'TLSv1.1', false],
    ['ECDHE-RSA-AES128-SHA', 'TLSv1', false],
    ['ECDHE-RSA-AES256-SHA', 'TLSv1', true],
  ];
  for (const [cipher, version, noEtm] of tls12) {
    it(`decrypts a ${version} ${cipher} connection${noEtm ? ' without encrypt-then-MAC' : ''} from CLIENT_RANDOM`, async () => {
      const opts = {
        minVersion: version,
        maxVersion: version,
        ciphers: `${cipher}:@SECLEVEL=0`,
        secureOptions: noEtm ? constants.SSL_OP_NO_ENCRYPT_THEN_MAC : 0,
      } as tls.TlsOptions;
      const cap = await converse(opts as tls.ConnectionOptions, opts);
      expect(cap.received).toEqual(RESPONSE);
      const store = new SecretsStore();
      store.addText(cap.keylog);
      const { clientRandom, serverRandom, suite, exts } = helloInfo(cap);
      const etm = exts.has(0x0016) && suite.kind === 'cbc';
      expect(etm).toBe(suite.kind === 'cbc' && !noEtm);
      const wire = { TLSv1: 0x0301, 'TLSv1.1': 0x0302, 'TLSv1.2': 0x0303 }[version]!;
      const master = store.get(clientRandom, 'CLIENT_RANDOM')!;
      const kb = keyBlock12(suite, master, clientRandom, serverRandom, wire);
      const o = { tls13: false, encryptThenMac: etm, version: wire };
      expect(appData12(cap.toServer, new RecordDecryptor(suite, kb.client, o))).toEqual(REQUEST);
      expect(appData12(cap.toClient, new RecordDecryptor(suite, kb.server, o))).toEqual(RESPONSE);
    });
  }

  // OpenSSL's SSL_OP_NO_EXTENDED_MASTER_SECRET (1 << 0); node passes secureOptions through unchanged.
  const SSL_OP_NO_EXTENDED_MASTER_SECRET = 1;
  for (const [cipher, ems] of [['AES128-GCM-SHA256', true], ['AES256-SHA256', true], ['AES256-GCM-SHA384', true], ['AES128-GCM-SHA256', false], ['AES256-SHA', false]] as const) {
    it(`recovers the ${cipher} ${ems ? 'extended ' : ''}master secret from the RSA ClientKeyExchange with the server key`, async () => {
      const opts = {
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        ciphers: `${cipher}:@SECLEVEL=0`,
        secureOptions: ems ? 0 : SSL_OP_NO_EXTENDED_MASTER_SECRET,
      } as tls.TlsOptions;
      const cap = await converse(opts as tls.ConnectionOptions, opts);
      const store = new SecretsStore();
      store.addText(cap.keylog);
      const { clientRandom, serverRandom, suite, exts } = helloInfo(cap);
      expect(suite.kx).toBe('RSA');
      const cMsgs = plainHandshake(records(cap.toServer));
      const sMsgs = plainHandshake(records(cap.toClient));
      const cke = cMsgs.find((m) => m.type === 16)!.msg;
      const encrypted = cke.subarray(6, 6 + cke.readUInt16BE(4));
      const key = loadRsaKeyFile(data('rsa-pkcs1.pem'))[0];
      const pms = decryptPreMaster(key, encrypted)!;
      expect(pms.subarray(0, 2).toString('hex')).toBe('0303'); // ClientHello.client_version
      expect(exts.has(0x0017)).toBe(ems);
      // RFC 7627 §3: session_hash = Hash(ClientHello .. ClientKeyExchange) in wire order
      const ch = cMsgs.find((m) => m.type === 1)!.msg;
      // No client certificate here, so the client's part is ClientHello and ClientKeyExchange; the
      // server's NewSessionTicket (type 4) is sent in the clear too but after the ClientKeyExchange.
      const transcript = Buffer.concat([ch, ...sMsgs.filter((m) => m.type !== 4).map((m) => m.msg), cke]);
      const sessionHash = createHash(suite.prfHash).update(transcript).digest();
      const master = ems ? extendedMasterSecret12(suite, pms, sessionHash) : masterSecret12(suite, pms, clientRandom, serverRandom);
      expect(master).toEqual(store.get(clientRandom, 'CLIENT_RANDOM'));
      const kb = keyBlock12(suite, master, clientRandom, serverRandom);
      const o = { tls13: false, encryptThenMac: exts.has(0x0016) && suite.kind === 'cbc' };
      expect(appData12(cap.toClient, new RecordDecryptor(suite, kb.server, o))).toEqual(RESPONSE);
    });
  }
});
