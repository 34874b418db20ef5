import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hkdfExpand, hkdfExpandLabel, hkdfExtract, nextTrafficSecret13, trafficKeys13 } from '../../src/tls/crypto/keySchedule13.js';
import { RecordDecryptor } from '../../src/tls/crypto/recordDecryptor.js';
import { suiteById } from '../../src/tls/crypto/suites.js';
import { forgeHmac, hex } from './reference.js';

/*
 * Vectors from RFC 8448 §3 "Simple 1-RTT Handshake" (https://www.rfc-editor.org/rfc/rfc8448#section-3),
 * TLS_AES_128_GCM_SHA256. Records are split into their 5-byte header and body.
 */
const HS = hex('1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac'); // handshake secret
const H2 = hex('860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8'); // Hash(CH..SH)
const C_HS = hex('b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21');
const S_HS = hex('b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38');
const C_AP = hex('9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5');
const S_AP = hex('a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643');

const SERVER_FLIGHT = hex(`
  17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3
  5e df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b
  40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61 34 aa dc
  7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35
  5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1
  22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6
  5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba
  a4 fc d6 10 92 8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6
  a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2
  a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea 52
  0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf
  95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a
  ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37 ce
  34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e
  92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3
  f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5
  e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7
  d4 61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa
  80 f8 5d f8 81 ed be 5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa
  48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f
  a3 88 cb 56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf
  10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38 eb
  ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50
  4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be
  7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6
  31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b`);
const CLIENT_FINISHED = hex(`17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b
  fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46`);
const SERVER_TICKET = hex(`17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95
  d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06
  1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73 53 d1 6d 9d a7 73 b9
  ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81
  be 63 43 9b 29 99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c
  a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86 51 9d
  86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe
  51 37 12 1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81
  53 55 6b 3b 6c 67 79 b3 7b f1 59 85 68 4f`);
const CLIENT_APP = hex(`17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f
  2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6
  3a ee bb 21 69 49 15 e4`);
const SERVER_APP = hex(`17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36
  e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54
  0d d0 32 e1 67 c2 95 5d`);
const CLIENT_ALERT = hex('17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3');
const SERVER_ALERT = hex('17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9');
const APP_PAYLOAD = Buffer.from(Array.from({ length: 50 }, (_, i) => i));

const suite = suiteById(0x1301)!;
const split = (rec: Buffer): [Buffer, Buffer] => [rec.subarray(0, 5), rec.subarray(5)];

describe('HKDF (RFC 5869)', () => {
  it('matches RFC 5869 test case 1 for Expand', () => {
    const prk = hex('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5');
    const okm = hkdfExpand('sha256', prk, hex('f0f1f2f3f4f5f6f7f8f9'), 42);
    expect(okm.toString('hex')).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('agrees with node hkdfSync for extract-then-expand over several lengths', () => {
    for (const hash of ['sha256', 'sha384'] as const) {
      for (const len of [1, 12, 32, 48, 100, 255]) {
        const ikm = Buffer.alloc(20, len);
        const salt = Buffer.alloc(13, 7);
        const info = Buffer.from('ctx' + len);
        const ours = hkdfExpand(hash, hkdfExtract(hash, salt, ikm), info, len);
        expect(ours).toEqual(Buffer.from(hkdfSync(hash, ikm, salt, info, len)));
      }
    }
  });
});

describe('TLS 1.3 key schedule against RFC 8448 §3', () => {
  it('derives the handshake traffic secrets with HKDF-Expand-Label', () => {
    expect(hkdfExpandLabel('sha256', HS, 's hs traffic', H2, 32)).toEqual(S_HS);
    expect(hkdfExpandLabel('sha256', HS, 'c hs traffic', H2, 32)).toEqual(C_HS);
  });

  it('derives the published write keys and IVs from every traffic secret', () => {
    const cases: Array<[Buffer, string, string]> = [
      [S_HS, '3fce516009c21727d0f2e4e86ee403bc', '5d313eb2671276ee13000b30'],
      [C_HS, 'dbfaa693d1762c5b666af5d950258d01', '5bd3c71b836e0b76bb73265f'],
      [S_AP, '9f02283b6c9c07efc26bb9f2ac92e356', 'cf782b88dd83549aadf1e984'],
      [C_AP, '17422dda596ed5d9acd890e3c63f5051', '5b78923dee08579033e523d9'],
    ];
    for (const [secret, key, iv] of cases) {
      const k = trafficKeys13(suite, secret);
      expect(k.key.toString('hex')).toBe(key);
      expect(k.iv.toString('hex')).toBe(iv);
      expect(k.macKey.length).toBe(0);
    }
  });

  it('computes the KeyUpdate secret as HMAC over the "traffic upd" HkdfLabel (independent HMAC)', () => {
    for (const s of [suite, suiteById(0x1302)!]) {
      const len = s.prfHash === 'sha256' ? 32 : 48;
      const secret = Buffer.alloc(len, 0x5a);
      const label = Buffer.from('tls13 traffic upd');
      const info = Buffer.concat([Buffer.from([0, len, label.length]), label, Buffer.from([0])]);
      const expected = forgeHmac(s.prfHash, secret, info, Buffer.from([1]));
      expect(nextTrafficSecret13(s, secret)).toEqual(expected);
    }
  });

  it('decrypts the server handshake flight (EncryptedExtensions..Finished)', () => {
    const d = new RecordDecryptor(suite, trafficKeys13(suite, S_HS), { tls13: true, encryptThenMac: false });
    const r = d.decrypt(...split(SERVER_FLIGHT));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.contentType).toBe(22);
    expect(r.plaintext.length).toBe(657);
    expect(r.plaintext.subarray(0, 4).toString('hex')).toBe('08000024'); // EncryptedExtensions
    expect(r.plaintext.subarray(-36, -32).toString('hex')).toBe('14000020'); // Finished header
    expect(r.plaintext.subarray(-6).toString('hex')).toBe('5454b78f0718'); // end of its verify_data
    expect(d.seq).toBe(1n);
  });

  it('decrypts the client Finished, the NewSessionTicket, application data and close_notify alerts', () => {
    const cHs = new RecordDecryptor(suite, trafficKeys13(suite, C_HS), { tls13: true, encryptThenMac: false });
    const fin = cHs.decrypt(...split(CLIENT_FINISHED));
    expect(fin.ok && fin.contentType === 22 && fin.plaintext.subarray(0, 4).toString('hex')).toBe('14000020');

    const sAp = new RecordDecryptor(suite, trafficKeys13(suite, S_AP), { tls13: true, encryptThenMac: false });
    const nst = sAp.decrypt(...split(SERVER_TICKET));
    expect(nst.ok && nst.contentType === 22 && nst.plaintext[0]).toBe(4); // new_session_ticket
    const sData = sAp.decrypt(...split(SERVER_APP));
    expect(sData).toEqual({ ok: true, contentType: 23, plaintext: APP_PAYLOAD });
    expect(sAp.decrypt(...split(SERVER_ALERT))).toEqual({ ok: true, contentType: 21, plaintext: Buffer.from([1, 0]) });

    const cAp = new RecordDecryptor(suite, trafficKeys13(suite, C_AP), { tls13: true, encryptThenMac: false });
    expect(cAp.decrypt(...split(CLIENT_APP))).toEqual({ ok: true, contentType: 23, plaintext: APP_PAYLOAD });
    expect(cAp.decrypt(...split(CLIENT_ALERT))).toEqual({ ok: true, contentType: 21, plaintext: Buffer.from([1, 0]) });
  });

  it('reports integrity_failure for a record decrypted with the wrong sequence number', () => {
    const sAp = new RecordDecryptor(suite, trafficKeys13(suite, S_AP), { tls13: true, encryptThenMac: false });
    expect(sAp.decrypt(...split(SERVER_APP))).toEqual({ ok: false, error: 'integrity_failure' }); // needs seq 1
    expect(sAp.seq).toBe(1n);
  });

  it('resynchronises onto the server application record after the ticket record was lost', () => {
    const sAp = new RecordDecryptor(suite, trafficKeys13(suite, S_AP), { tls13: true, encryptThenMac: false });
    const r = sAp.tryResync(...split(SERVER_APP), 4);
    expect(r).toEqual({ ok: true, contentType: 23, plaintext: APP_PAYLOAD });
    expect(sAp.seq).toBe(2n);
  });
});
