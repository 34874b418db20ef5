import { getCiphers } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { allSuites, suiteById, suiteName } from '../../src/tls/crypto/suites.js';

describe('cipher suite registry', () => {
  it('names known, unsupported and unknown ids', () => {
    expect(suiteName(0x1301)).toBe('TLS_AES_128_GCM_SHA256');
    expect(suiteName(0xc02f)).toBe('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
    expect(suiteName(0x000a)).toBe('TLS_RSA_WITH_3DES_EDE_CBC_SHA');
    expect(suiteName(0x00ff)).toBe('TLS_EMPTY_RENEGOTIATION_INFO_SCSV');
    expect(suiteName(0x5600)).toBe('TLS_FALLBACK_SCSV');
    expect(suiteName(0x1234)).toBe('UNKNOWN_0x1234');
    expect(suiteName(0x0a0a)).toBe('UNKNOWN_0x0a0a');
    expect(suiteById(0x1234)).toBeUndefined();
    expect(suiteById(0x0005)?.supported).toBe(true); // RC4 (our own keystream)
    expect(suiteById(0x0009)?.supported).toBe(false); // single DES: not in OpenSSL 3's default provider
    expect(suiteById(0xc07a)?.supported).toBe(false); // Camellia-GCM: no such OpenSSL cipher
  });

  it('has the parameters the RFCs give for representative suites', () => {
    expect(suiteById(0x1302)).toMatchObject({ tls13: true, cipher: 'aes-256-gcm', keyLen: 32, fixedIvLen: 12, tagLen: 16, prfHash: 'sha384' });
    expect(suiteById(0x1305)).toMatchObject({ tls13: true, cipher: 'aes-128-ccm', tagLen: 8, prfHash: 'sha256' });
    expect(suiteById(0xc030)).toMatchObject({ kx: 'ECDHE', kind: 'aead', fixedIvLen: 4, explicitNonceLen: 8, prfHash: 'sha384' });
    expect(suiteById(0xcca8)).toMatchObject({ kind: 'aead', cipher: 'chacha20-poly1305', fixedIvLen: 12, explicitNonceLen: 0 });
    expect(suiteById(0xc0ae)).toMatchObject({ cipher: 'aes-128-ccm', tagLen: 8, explicitNonceLen: 8 });
    expect(suiteById(0x002f)).toMatchObject({ kx: 'RSA', kind: 'cbc', macHash: 'sha1', macLen: 20, prfHash: 'sha256', fixedIvLen: 0 });
    expect(suiteById(0xc028)).toMatchObject({ macHash: 'sha384', macLen: 48, prfHash: 'sha384', keyLen: 32 });
    expect(suiteById(0x003d)).toMatchObject({ macHash: 'sha256', macLen: 32, prfHash: 'sha256', keyLen: 32 });
    expect(suiteById(0x009f)).toMatchObject({ kx: 'DHE', cipher: 'aes-256-gcm' });
    expect(suiteById(0xd001)).toMatchObject({ kx: 'ECDHE_PSK', cipher: 'aes-128-gcm' });
    expect(suiteById(0x000a)).toMatchObject({ kind: 'cbc', cipher: 'des-ede3-cbc', keyLen: 24, blockLen: 8, macHash: 'sha1', macLen: 20 });
    expect(suiteById(0xc077)).toMatchObject({ kind: 'cbc', cipher: 'camellia-256-cbc', keyLen: 32, blockLen: 16, macHash: 'sha384', prfHash: 'sha384' });
    expect(suiteById(0x0041)).toMatchObject({ cipher: 'camellia-128-cbc', macHash: 'sha1', prfHash: 'sha256' });
    expect(suiteById(0xc061)).toMatchObject({ kind: 'aead', cipher: 'aria-256-gcm', fixedIvLen: 4, explicitNonceLen: 8, prfHash: 'sha384' });
    expect(suiteById(0xc04c)).toMatchObject({ kind: 'cbc', cipher: 'aria-128-cbc', macHash: 'sha256' });
    expect(suiteById(0x0004)).toMatchObject({ kind: 'stream', cipher: 'rc4', keyLen: 16, macHash: 'md5', macLen: 16 });
    expect(suiteById(0xc010)).toMatchObject({ kind: 'null', cipher: 'null', keyLen: 0, macHash: 'sha1', macLen: 20 });
    expect(suiteById(0xc03b)).toMatchObject({ kind: 'null', macHash: 'sha384', prfHash: 'sha384' });
  });

  it('lists every id the task requires as supported', () => {
    const ids = [0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d, 0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc024, 0xc027, 0xc028, 0x0033, 0x0039, 0x0067, 0x006b, 0x009e, 0x009f];
    for (let id = 0xc02b; id <= 0xc030; id++) ids.push(id);
    for (let id = 0xc09c; id <= 0xc0af; id++) ids.push(id);
    for (let id = 0xcca8; id <= 0xccae; id++) ids.push(id);
    for (let id = 0x1301; id <= 0x1305; id++) ids.push(id);
    for (const id of ids) expect(suiteById(id)?.supported, `0x${id.toString(16)}`).toBe(true);
  });

  it('only uses ciphers node:crypto provides, with consistent lengths', () => {
    const available = new Set(getCiphers());
    for (const s of allSuites()) {
      if (!s.supported) continue;
      if (s.kind === 'stream') expect(s.cipher, s.name).toBe('rc4');
      else if (s.kind === 'null') expect([s.cipher, s.keyLen], s.name).toEqual(['null', 0]);
      else expect(available.has(s.cipher), s.name).toBe(true);
      const bits = s.cipher.match(/^(?:aes|camellia|aria)-(\d+)/)?.[1];
      if (bits) expect(Number(bits) / 8, s.name).toBe(s.keyLen);
      if (s.cipher === 'chacha20-poly1305') expect(s.keyLen, s.name).toBe(32);
      if (s.cipher === 'des-ede3-cbc') expect([s.keyLen, s.blockLen], s.name).toEqual([24, 8]);
      if (s.kind !== 'aead') expect(s.macLen, s.name).toBe({ md5: 16, sha1: 20, sha256: 32, sha384: 48 }[s.macHash!]);
      expect(s.blockLen, s.name).toBe(s.kind === 'cbc' ? (s.cipher === 'des-ede3-cbc' ? 8 : 16) : 0);
      if (s.name.endsWith('_SHA384')) expect(s.prfHash, s.name).toBe('sha384');
      if (s.tls13) expect(s.fixedIvLen).toBe(12);
      expect(s.name.startsWith('TLS_'), s.name).toBe(true);
    }
  });
});
