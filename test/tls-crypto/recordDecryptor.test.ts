import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RecordDecryptor, type DecryptResult } from '../../src/tls/crypto/recordDecryptor.js';
import { allSuites, suiteById, type CipherSuite } from '../../src/tls/crypto/suites.js';
import { randomKeys, sealRecord } from './reference.js';

const supported = allSuites().filter((s) => s.supported);
const opts = (s: CipherSuite, encryptThenMac = false, version?: number) => ({ tls13: s.tls13, encryptThenMac, version });
const label = (s: CipherSuite) => `${s.name} (0x${s.id.toString(16)})`;

/** One representative suite per distinct record-protection shape, for the heavier tests. */
const shapes = (() => {
  const seen = new Map<string, CipherSuite>();
  for (const s of supported) {
    const k = `${s.tls13}/${s.cipher}/${s.tagLen}/${s.macHash}`;
    if (!seen.has(k)) seen.set(k, s);
  }
  return [...seen.values()];
})();

const payloads = [Buffer.alloc(0), Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'), Buffer.alloc(1000, 0xab), Buffer.from([0])];

describe('RecordDecryptor round trips against the noble/forge reference encryptor', () => {
  it('covers every supported suite with at least one record shape', () => {
    expect(supported.length).toBeGreaterThan(90);
    expect(shapes.length).toBeGreaterThanOrEqual(15);
  });

  for (const suite of supported) {
    it(`decrypts consecutive records of ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const rc4 = { i: 0, j: 0, key: keys.key }; // RC4 suites: one keystream across the records
      payloads.forEach((pt, i) => {
        if (suite.tls13 && pt.length === 0) return; // still one record: seq stays aligned below
        const rec = sealRecord(suite, keys, d.seq, i % 2 ? 23 : 22, pt, { padding: i * 3, rc4 });
        const r = d.decrypt(rec.header, rec.fragment);
        expect(r).toEqual({ ok: true, contentType: i % 2 ? 23 : 22, plaintext: pt });
      });
    });
  }

  for (const suite of shapes.filter((s) => s.kind === 'cbc')) {
    it(`decrypts encrypt-then-MAC records of ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite, true));
      for (const pt of payloads) {
        const rec = sealRecord(suite, keys, d.seq, 23, pt, { encryptThenMac: true });
        expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: pt });
      }
    });

    it(`decrypts TLS 1.0 chained-IV records of ${label(suite)} (with and without EtM)`, () => {
      for (const etm of [false, true]) {
        const keys = randomKeys(suite, 0x0301);
        const chainIv = Buffer.from(keys.iv);
        const d = new RecordDecryptor(suite, keys, opts(suite, etm, 0x0301));
        for (const pt of payloads) {
          const rec = sealRecord(suite, keys, d.seq, 23, pt, { version: 0x0301, chainIv, encryptThenMac: etm });
          expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: pt });
        }
      }
    });

    it(`accepts maximal (255-byte) CBC padding for ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      // content + MAC + 256 padding bytes (255 and the length byte) must fill whole blocks
      const p2 = Buffer.alloc(16 + ((16 - ((suite.macLen + 256) % 16)) % 16), 1);
      const rec = sealRecord(suite, keys, 0n, 23, p2, { cbcPadLen: 255 });
      expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: p2 });
    });
  }
});

describe('RecordDecryptor rejects damaged records', () => {
  for (const suite of shapes) {
    it(`reports integrity_failure for a tampered tag/MAC or ciphertext of ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const rec = sealRecord(suite, keys, 0n, 23, Buffer.from('attack at dawn, attack at dawn!!'));
      for (const pos of [rec.fragment.length - 1, Math.floor(rec.fragment.length / 2)]) {
        const bad = Buffer.from(rec.fragment);
        bad[pos] ^= 0x01;
        const d = new RecordDecryptor(suite, keys, opts(suite));
        expect(d.decrypt(rec.header, bad)).toEqual({ ok: false, error: 'integrity_failure' });
        expect(d.seq).toBe(1n);
      }
    });

    it(`reports malformed for a fragment shorter than the protection overhead of ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const short =
        suite.kind === 'cbc' ? Buffer.alloc(16) : suite.kind === 'aead' ? Buffer.alloc(suite.explicitNonceLen + suite.tagLen - 1) : Buffer.alloc(suite.macLen - 1);
      expect(d.decrypt(Buffer.from([23, 3, 3, 0, short.length]), short)).toEqual({ ok: false, error: 'malformed' });
      expect(d.decrypt(Buffer.from([23, 3]), Buffer.alloc(64))).toEqual({ ok: false, error: 'malformed' });
    });

    it(`never throws on every truncation of a valid ${label(suite)} record`, () => {
      const keys = randomKeys(suite);
      const rec = sealRecord(suite, keys, 0n, 23, Buffer.alloc(100, 7));
      for (let n = 0; n < rec.fragment.length; n++) {
        const d = new RecordDecryptor(suite, keys, opts(suite));
        const r = d.decrypt(rec.header, rec.fragment.subarray(0, n));
        expect(r.ok).toBe(false);
      }
    });
  }

  for (const suite of shapes.filter((s) => s.kind === 'cbc')) {
    it(`reports integrity_failure for any flipped bit of an encrypt-then-MAC ${label(suite)} record, before decrypting`, () => {
      const keys = randomKeys(suite);
      const rec = sealRecord(suite, keys, 0n, 23, Buffer.from('attack at dawn'), { encryptThenMac: true });
      for (const pos of [0, 16, rec.fragment.length - suite.macLen - 1, rec.fragment.length - 1]) {
        const bad = Buffer.from(rec.fragment);
        bad[pos] ^= 0x80;
        const d = new RecordDecryptor(suite, keys, opts(suite, true));
        expect(d.decrypt(rec.header, bad)).toEqual({ ok: false, error: 'integrity_failure' });
      }
      // the header is authenticated too (RFC 7366 §3: type, version and length are MACed)
      const hdr = Buffer.from(rec.header);
      hdr[0] = 22;
      expect(new RecordDecryptor(suite, keys, opts(suite, true)).decrypt(hdr, rec.fragment)).toEqual({ ok: false, error: 'integrity_failure' });
    });
  }

  it('reports integrity_failure for CBC padding bytes that disagree with the padding length, even with a valid MAC', () => {
    const suite = suiteById(0xc013)!;
    const keys = randomKeys(suite);
    const content = Buffer.alloc(23, 0x41); // 23 + 20 (MAC) + 5 (padding) = 3 blocks
    const good = sealRecord(suite, keys, 0n, 23, content, { cbcPadLen: 4 });
    expect(new RecordDecryptor(suite, keys, opts(suite)).decrypt(good.header, good.fragment)).toEqual({ ok: true, contentType: 23, plaintext: content });
    const bad = sealRecord(suite, keys, 0n, 23, content, { cbcPadLen: 4, badPadding: true });
    expect(new RecordDecryptor(suite, keys, opts(suite)).decrypt(bad.header, bad.fragment)).toEqual({ ok: false, error: 'integrity_failure' });
  });

  it('reports malformed for an authentic encrypt-then-MAC record with inconsistent padding', () => {
    const suite = suiteById(0xc013)!;
    const keys = randomKeys(suite);
    const bad = sealRecord(suite, keys, 0n, 23, Buffer.alloc(11, 0x41), { cbcPadLen: 4, badPadding: true, encryptThenMac: true });
    expect(new RecordDecryptor(suite, keys, opts(suite, true)).decrypt(bad.header, bad.fragment)).toEqual({ ok: false, error: 'malformed' });
  });

  it('reports malformed for a TLS 1.3 record whose inner plaintext is all zeros', () => {
    const suite = suiteById(0x1301)!;
    const keys = randomKeys(suite);
    const rec = sealRecord(suite, keys, 0n, 0, Buffer.alloc(0), { padding: 10 });
    const d = new RecordDecryptor(suite, keys, opts(suite));
    expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: false, error: 'malformed' });
  });

  it('answers unsupported_cipher for suites it cannot decrypt or keys of the wrong size', () => {
    const des = suiteById(0x0009)!; // single DES: named, not decrypted
    const d = new RecordDecryptor(des, { key: Buffer.alloc(8), iv: Buffer.alloc(0), macKey: Buffer.alloc(20) }, { tls13: false, encryptThenMac: false });
    expect(d.decrypt(Buffer.from([23, 3, 3, 0, 40]), Buffer.alloc(40))).toEqual({ ok: false, error: 'unsupported_cipher' });
    const gcm = suiteById(0xc02f)!;
    const d2 = new RecordDecryptor(gcm, { key: Buffer.alloc(15), iv: Buffer.alloc(4), macKey: Buffer.alloc(0) }, { tls13: false, encryptThenMac: false });
    expect(d2.decrypt(Buffer.from([23, 3, 3, 0, 40]), Buffer.alloc(40))).toEqual({ ok: false, error: 'unsupported_cipher' });
  });
});

describe('RecordDecryptor, RC4 and NULL suites', () => {
  it('RC4: a record whose MAC fails still moves the keystream on, so the next record decrypts', () => {
    const suite = suiteById(0xc011)!; // TLS_ECDHE_RSA_WITH_RC4_128_SHA
    const keys = randomKeys(suite);
    const rc4 = { i: 0, j: 0, key: keys.key };
    const recs = ['one', 'two', 'three'].map((t, i) => sealRecord(suite, keys, BigInt(i), 23, Buffer.from(t), { rc4 }));
    recs[1].fragment[0] ^= 1;
    const d = new RecordDecryptor(suite, keys, opts(suite));
    expect(d.decrypt(recs[0].header, recs[0].fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('one') });
    expect(d.decrypt(recs[1].header, recs[1].fragment)).toEqual({ ok: false, error: 'integrity_failure' });
    expect(d.decrypt(recs[2].header, recs[2].fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('three') });
  });

  it('RC4 matches the RFC 6229 keystream (key 0x0102030405, offset 0)', () => {
    const suite = { ...suiteById(0x0005)!, keyLen: 5 };
    const d = new RecordDecryptor(suite, { key: Buffer.from('0102030405', 'hex'), iv: Buffer.alloc(0), macKey: Buffer.alloc(20) }, opts(suite));
    // a 36-byte zero record: its "plaintext" is the keystream; the MAC check fails, which is fine here
    const ks = (d as unknown as { rc4: { process(b: Buffer): Buffer } }).rc4.process(Buffer.alloc(16));
    expect(ks.toString('hex')).toBe('b2396305f03dc027ccc3524a0a1118a8');
  });

  it('NULL: the content is the fragment before its MAC, and a changed byte fails the MAC', () => {
    const suite = suiteById(0x003b)!; // TLS_RSA_WITH_NULL_SHA256
    const keys = randomKeys(suite);
    const rec = sealRecord(suite, keys, 0n, 23, Buffer.from('in the clear'));
    expect(rec.fragment.subarray(0, 12).toString()).toBe('in the clear');
    expect(new RecordDecryptor(suite, keys, opts(suite)).decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('in the clear') });
    rec.fragment[3] ^= 0x20;
    expect(new RecordDecryptor(suite, keys, opts(suite)).decrypt(rec.header, rec.fragment)).toEqual({ ok: false, error: 'integrity_failure' });
  });
});

describe('RecordDecryptor.tryResync', () => {
  for (const suite of shapes) {
    it(`finds a ${label(suite)} record 5 sequence numbers ahead and continues from there`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      // RC4: the keystream runs on from record 5 (records 0-4 were never sent; a lost record's
      // keystream cannot be skipped, so after a real loss RC4 does not resynchronise)
      const rc4 = { i: 0, j: 0, key: keys.key };
      const r5 = sealRecord(suite, keys, 5n, 23, Buffer.from('after the gap'), { rc4 });
      const r6 = sealRecord(suite, keys, 6n, 23, Buffer.from('next one'), { rc4 });
      expect(d.tryResync(r5.header, r5.fragment, 8)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('after the gap') });
      expect(d.seq).toBe(6n);
      expect(d.decrypt(r6.header, r6.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('next one') });
    });

    it(`leaves seq unchanged when no ${label(suite)} sequence number in range fits`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const r = sealRecord(suite, keys, 9n, 23, Buffer.from('too far'));
      // GCM/CCM carry the sequence number as explicit nonce: corrupt it so the hint cannot help.
      if (suite.explicitNonceLen === 8) r.fragment.writeBigUInt64BE(12345n, 0);
      expect(d.tryResync(r.header, r.fragment, 3).ok).toBe(false);
      expect(d.seq).toBe(0n);
    });
  }

  it('recovers TLS 1.0 CBC from the second record after a loss (the IV chain follows the wire)', () => {
    const suite = suiteById(0x002f)!;
    const keys = randomKeys(suite, 0x0301);
    const chainIv = Buffer.from(keys.iv);
    const recs = [0, 1, 2, 3].map((i) => sealRecord(suite, keys, BigInt(i), 23, Buffer.from(`record number ${i}`), { version: 0x0301, chainIv }));
    const d = new RecordDecryptor(suite, keys, opts(suite, false, 0x0301));
    expect(d.decrypt(recs[0].header, recs[0].fragment).ok).toBe(true);
    // record 1 is lost: record 2's IV (record 1's last block) is unknown, so it cannot authenticate
    expect(d.tryResync(recs[2].header, recs[2].fragment, 4)).toEqual({ ok: false, error: 'integrity_failure' });
    expect(d.seq).toBe(1n);
    expect(d.tryResync(recs[3].header, recs[3].fragment, 4)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('record number 3') });
    expect(d.seq).toBe(4n);
  });

  it('uses the TLS 1.2 GCM explicit nonce as a hint beyond maxSkip', () => {
    const suite = suiteById(0xc02f)!;
    const keys = randomKeys(suite);
    const d = new RecordDecryptor(suite, keys, opts(suite));
    const r = sealRecord(suite, keys, 1000n, 23, Buffer.from('far ahead'));
    expect(d.tryResync(r.header, r.fragment, 2).ok).toBe(true);
    expect(d.seq).toBe(1001n);
  });
});

describe('RecordDecryptor property tests', () => {
  const isResult = (r: DecryptResult) => (r.ok ? Buffer.isBuffer(r.plaintext) : ['integrity_failure', 'malformed', 'unsupported_cipher'].includes(r.error));
  for (const suite of shapes) {
    it(`never throws on random headers and fragments for ${label(suite)}`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const dEtm = new RecordDecryptor(suite, keys, opts(suite, true));
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 300 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (h, f, seq) => {
          d.seq = seq;
          const r = d.decrypt(Buffer.from(h), Buffer.from(f));
          expect(isResult(r)).toBe(true);
          expect(r.ok).toBe(false);
          expect(isResult(dEtm.decrypt(Buffer.from(h), Buffer.from(f)))).toBe(true);
          expect(isResult(d.tryResync(Buffer.from(h), Buffer.from(f), 2))).toBe(true);
        }),
        { numRuns: 150 },
      );
    });
  }

  it('decrypts at sequence numbers around the 32-bit boundary (nonce / additional data without BigInt below it)', () => {
    const seqs = [0n, 1n, 0xffn, 0x100n, 0xffffffffn, 0x100000000n, 0x100000001n, 0x1234567890abcdefn, (1n << 64n) - 1n];
    for (const suite of shapes) {
      const keys = randomKeys(suite);
      for (const seq of seqs) {
        const d = new RecordDecryptor(suite, keys, opts(suite));
        d.seq = seq;
        const pt = Buffer.from(`record ${seq}`);
        const rec = sealRecord(suite, keys, seq, 23, pt);
        expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: pt });
        expect(d.seq).toBe(seq + 1n);
      }
    }
  });

  it('decrypts random payloads at random sequence numbers (TLS 1.3 ChaCha20 and TLS 1.2 CCM_8)', () => {
    for (const suite of [suiteById(0x1303)!, suiteById(0xc0ae)!]) {
      const keys = randomKeys(suite);
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 0, max: 20 }), (pt, seq, pad) => {
          const d = new RecordDecryptor(suite, keys, opts(suite));
          d.seq = seq;
          const rec = sealRecord(suite, keys, seq, 23, Buffer.from(pt), { padding: pad });
          expect(d.decrypt(rec.header, rec.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from(pt) });
        }),
        { numRuns: 60 },
      );
    }
  });
});

describe('RecordDecryptor.authenticateAppData13 (tag checked without decrypting: plaintext nobody reads)', () => {
  const gcm13 = [suiteById(0x1301)!, suiteById(0x1302)!];

  for (const suite of gcm13) {
    it(`accepts ${label(suite)} application-data records of every length class and keeps seq aligned with decrypt()`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const lengths = [0, 1, 14, 15, 16, 17, 31, 32, 33, 1000, 16383, 16384];
      for (const len of lengths) {
        const pt = Buffer.alloc(len, 0x5a);
        const rec = sealRecord(suite, keys, d.seq, 23, pt);
        const before = d.seq;
        expect(d.authenticateAppData13(rec.header, rec.fragment)).toBe(len);
        expect(d.seq).toBe(before + 1n);
        // the next record still decrypts: the sequence numbers stay in step
        const next = sealRecord(suite, keys, d.seq, 23, Buffer.from('next'));
        expect(d.decrypt(next.header, next.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('next') });
      }
    });

    it(`answers -1 and leaves seq unchanged for ${label(suite)} records it must not or cannot vouch for`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      d.seq = 7n;
      const pt = Buffer.alloc(300, 1);
      const cases = {
        padded: sealRecord(suite, keys, 7n, 23, pt, { padding: 5 }),
        handshake: sealRecord(suite, keys, 7n, 22, pt),
        alert: sealRecord(suite, keys, 7n, 21, Buffer.from([1, 0])),
        otherSeq: sealRecord(suite, keys, 8n, 23, pt),
        otherKey: sealRecord(suite, randomKeys(suite), 7n, 23, pt),
      };
      for (const [name, rec] of Object.entries(cases)) {
        expect(d.authenticateAppData13(rec.header, rec.fragment), name).toBe(-1);
        expect(d.seq, name).toBe(7n);
      }
      // a changed header byte is changed additional data
      const rec = sealRecord(suite, keys, 7n, 23, pt);
      const hdr = Buffer.from(rec.header);
      hdr[2] ^= 1;
      expect(d.authenticateAppData13(hdr, rec.fragment)).toBe(-1);
      expect(d.authenticateAppData13(rec.header, rec.fragment.subarray(0, 17))).toBe(-1);
      expect(d.seq).toBe(7n);
    });

    it(`rejects any flipped bit of a ${label(suite)} record (ciphertext or tag), like decrypt()`, () => {
      const keys = randomKeys(suite);
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 3000 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (len, at, bit) => {
          const d = new RecordDecryptor(suite, keys, opts(suite));
          const rec = sealRecord(suite, keys, 0n, 23, Buffer.alloc(len, 0xc3));
          const f = Buffer.from(rec.fragment);
          f[at % f.length] ^= 1 << bit;
          expect(d.authenticateAppData13(rec.header, f)).toBe(-1);
          expect(d.seq).toBe(0n);
          expect(d.decrypt(rec.header, f)).toEqual({ ok: false, error: 'integrity_failure' });
        }),
        { numRuns: 150 },
      );
    });
  }

  it('accepts at sequence numbers around the 32-bit boundary', () => {
    const suite = gcm13[0];
    const keys = randomKeys(suite);
    for (const seq of [0xffffffffn, 0x100000000n, 0x1234567890abcdefn, (1n << 64n) - 1n]) {
      const d = new RecordDecryptor(suite, keys, opts(suite));
      d.seq = seq;
      const rec = sealRecord(suite, keys, seq, 23, Buffer.alloc(100, 2));
      expect(d.authenticateAppData13(rec.header, rec.fragment)).toBe(100);
    }
  });

  it('answers -1 for every other suite (decrypt() handles them), batched or not', () => {
    for (const suite of shapes.filter((s) => !(s.tls13 && s.cipher.endsWith('-gcm')))) {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const rec = sealRecord(suite, keys, 0n, 23, Buffer.alloc(64, 9));
      expect(d.authenticateAppData13(rec.header, rec.fragment), label(suite)).toBe(-1);
      expect(d.batchAppData13(rec.header, rec.fragment), label(suite)).toBe(-1);
      expect(d.checkBatch()).toBe(true);
      expect(d.seq).toBe(0n);
    }
  });
});

describe('RecordDecryptor.batchAppData13 / checkBatch (a run of records, one tag check)', () => {
  const gcm13 = [suiteById(0x1301)!, suiteById(0x1302)!];
  const lengths = [0, 1, 14, 15, 16, 17, 31, 32, 33, 1000, 16383, 16384];

  for (const suite of gcm13) {
    it(`accepts a ${label(suite)} run of every length class and keeps seq aligned with decrypt()`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      d.seq = 3n;
      for (const len of lengths) {
        const rec = sealRecord(suite, keys, d.seq, 23, Buffer.alloc(len, 0x5a));
        const before = d.seq;
        expect(d.batchAppData13(rec.header, rec.fragment)).toBe(len);
        expect(d.seq).toBe(before + 1n);
      }
      expect(d.checkBatch()).toBe(true);
      expect(d.seq).toBe(3n + BigInt(lengths.length));
      const next = sealRecord(suite, keys, d.seq, 23, Buffer.from('next'));
      expect(d.decrypt(next.header, next.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('next') });
      // a second run on the same decryptor, and checkBatch with no run open
      const rec = sealRecord(suite, keys, d.seq, 23, Buffer.alloc(500, 1));
      expect(d.batchAppData13(rec.header, rec.fragment)).toBe(500);
      expect(d.checkBatch()).toBe(true);
      expect(d.checkBatch()).toBe(true);
      // a long run of one length (keystream computed ahead, across its refills), a refused record
      // (handshake type) in the middle, then other lengths
      for (let i = 0; i < 75; i++) {
        if (i === 40) {
          const hs = sealRecord(suite, keys, d.seq, 22, Buffer.alloc(1000, 2));
          expect(d.batchAppData13(hs.header, hs.fragment)).toBe(-1);
        }
        const len = i < 70 ? 1000 : 16384 - i;
        const r = sealRecord(suite, keys, d.seq, 23, Buffer.alloc(len, i));
        expect(d.batchAppData13(r.header, r.fragment)).toBe(len);
      }
      expect(d.checkBatch()).toBe(true);
      const last = sealRecord(suite, keys, d.seq, 23, Buffer.from('last'));
      expect(d.decrypt(last.header, last.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.from('last') });
    });

    it(`fails the whole ${label(suite)} run for any flipped bit of any one of its records, seq back at the run's first record`, () => {
      const keys = randomKeys(suite);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 6 }), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 7 }), (lens, which, at, bit) => {
          const d = new RecordDecryptor(suite, keys, opts(suite));
          d.seq = 11n;
          const recs = lens.map((len, i) => sealRecord(suite, keys, 11n + BigInt(i), 23, Buffer.alloc(len, 0xc3)));
          const bad = which % recs.length;
          const f = Buffer.from(recs[bad].fragment);
          f[at % f.length] ^= 1 << bit;
          // a flipped content-type byte may already be refused when added; otherwise the check fails
          let refused = false;
          recs.forEach((r, i) => {
            if (i === bad) refused = d.batchAppData13(r.header, f) < 0;
            else if (!refused || i < bad) expect(d.batchAppData13(r.header, r.fragment)).toBe(lens[i]);
          });
          if (refused) return;
          expect(d.checkBatch()).toBe(false);
          expect(d.seq).toBe(11n);
          // record by record, only the changed one fails
          recs.forEach((r, i) => {
            if (i === bad) expect(d.decrypt(r.header, f)).toEqual({ ok: false, error: 'integrity_failure' });
            else expect(d.decrypt(r.header, r.fragment)).toEqual({ ok: true, contentType: 23, plaintext: Buffer.alloc(lens[i], 0xc3) });
          });
        }),
        { numRuns: 150 },
      );
    });

    it(`refuses ${label(suite)} records it must not vouch for without touching the run`, () => {
      const keys = randomKeys(suite);
      const d = new RecordDecryptor(suite, keys, opts(suite));
      const first = sealRecord(suite, keys, 0n, 23, Buffer.alloc(100, 7));
      expect(d.batchAppData13(first.header, first.fragment)).toBe(100);
      const pt = Buffer.alloc(300, 1);
      for (const [name, rec] of Object.entries({
        padded: sealRecord(suite, keys, 1n, 23, pt, { padding: 5 }),
        handshake: sealRecord(suite, keys, 1n, 22, pt),
        tooShort: { header: first.header, fragment: first.fragment.subarray(0, 16) },
      })) {
        expect(d.batchAppData13(rec.header, rec.fragment), name).toBe(-1);
        expect(d.seq, name).toBe(1n);
      }
      expect(d.checkBatch()).toBe(true);
    });

    it(`fails a ${label(suite)} run with a record of another key or sequence number, or a changed header`, () => {
      const keys = randomKeys(suite);
      const pt = Buffer.alloc(64, 3);
      const hdr = Buffer.from(sealRecord(suite, keys, 1n, 23, pt).header);
      hdr[2] ^= 1;
      for (const [name, second] of Object.entries({
        otherSeq: sealRecord(suite, keys, 2n, 23, pt),
        otherKey: sealRecord(suite, randomKeys(suite), 1n, 23, pt),
        header: { header: hdr, fragment: sealRecord(suite, keys, 1n, 23, pt).fragment },
      })) {
        const d = new RecordDecryptor(suite, keys, opts(suite));
        const first = sealRecord(suite, keys, 0n, 23, pt);
        expect(d.batchAppData13(first.header, first.fragment)).toBe(64);
        // another key or nonce mostly reads as another content type and is refused at once; when
        // it is taken (as the changed header always is), the run fails
        const taken = d.batchAppData13(second.header, second.fragment) >= 0;
        if (name === 'header') expect(taken).toBe(true);
        expect(d.checkBatch(), name).toBe(!taken);
        expect(d.seq, name).toBe(taken ? 0n : 1n);
      }
    });
  }
});
