import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decryptPreMaster, KeyFileError, loadRsaKeyFile, modulusHexOfCertificate, type RsaServerKey } from '../../src/tls/crypto/rsa.js';

const data = (f: string) => fileURLToPath(new URL(`./data/${f}`, import.meta.url));
const certModulus = modulusHexOfCertificate(readFileSync(data('cert.der')))!;

function keyFileError(f: () => unknown): KeyFileError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyFileError);
    return e as KeyFileError;
  }
  throw new Error('expected a KeyFileError');
}

/** A key-file error must be one line, name the file and carry no key material or password. */
function expectCleanMessage(e: KeyFileError, file: string, secrets: string[]) {
  expect(e.message).toContain(file);
  expect(e.message).not.toContain('\n');
  expect(e.message.startsWith('/')).toBe(true); // names the path as given, not only its base name
  for (const s of secrets) expect(e.message).not.toContain(s);
  expect(e.message).not.toMatch(/[A-Za-z0-9+/]{40,}/); // no base64 blobs
  expect(e.message).not.toMatch(/[0-9a-f]{40,}/); // no hex blobs
}

describe('modulusHexOfCertificate', () => {
  it('extracts the RSA modulus of a certificate and rejects garbage', () => {
    expect(certModulus).toMatch(/^[0-9a-f]{256}$/); // 1024-bit test key
    expect(modulusHexOfCertificate(Buffer.from('not a certificate'))).toBeUndefined();
    expect(modulusHexOfCertificate(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('loadRsaKeyFile', () => {
  const formats: Array<[string, string | undefined]> = [
    ['rsa-pkcs1.pem', undefined],
    ['rsa-pkcs8.pem', undefined],
    ['rsa-pkcs1-enc.pem', 'testpass'],
    ['rsa-pkcs8-enc.pem', 'testpass'],
    ['rsa-pkcs1.der', undefined],
    ['rsa-pkcs8.der', undefined],
    ['rsa.p12', 'testpass'],
    ['rsa-legacy.p12', 'testpass'],
  ];
  for (const [file, password] of formats) {
    it(`loads ${file} and matches the certificate modulus`, () => {
      const keys = loadRsaKeyFile(data(file), password);
      expect(keys).toHaveLength(1);
      expect(keys[0].modulusHex).toBe(certModulus);
      expect(keys[0].source).toBe(file);
    });
  }

  it('loads every key of a multi-key PEM file', () => {
    const keys = loadRsaKeyFile(data('rsa-two-keys.pem'));
    expect(keys).toHaveLength(2);
    expect(keys[0].modulusHex).toBe(certModulus);
    expect(keys[1].modulusHex).not.toBe(certModulus);
  });

  for (const file of ['rsa-pkcs1-enc.pem', 'rsa-pkcs8-enc.pem', 'rsa.p12', 'rsa-legacy.p12']) {
    it(`rejects a wrong password for ${file} without echoing it`, () => {
      const e = keyFileError(() => loadRsaKeyFile(data(file), 'hunter2-wrong'));
      expectCleanMessage(e, file, ['hunter2-wrong', 'testpass']);
      expect(e.message).toMatch(/password/);
    });
  }

  it('asks for a password when an encrypted PEM key has none', () => {
    const e = keyFileError(() => loadRsaKeyFile(data('rsa-pkcs8-enc.pem')));
    expectCleanMessage(e, 'rsa-pkcs8-enc.pem', []);
    expect(e.message).toMatch(/no password/);
  });

  it('rejects a file that holds no key, a non-RSA key, and a missing file', () => {
    expectCleanMessage(keyFileError(() => loadRsaKeyFile(data('not-a-key.txt'))), 'not-a-key.txt', ['not a key']);
    expectCleanMessage(keyFileError(() => loadRsaKeyFile(data('cert.pem'))), 'cert.pem', []);
    const ec = keyFileError(() => loadRsaKeyFile(data('ec.pem')));
    expectCleanMessage(ec, 'ec.pem', []);
    expect(ec.message).toMatch(/no RSA/);
    expectCleanMessage(keyFileError(() => loadRsaKeyFile(data('does-not-exist.pem'))), 'does-not-exist.pem', []);
  });
});

describe('decryptPreMaster', () => {
  const key: RsaServerKey = loadRsaKeyFile(data('rsa-pkcs1.pem'))[0];
  const other: RsaServerKey = loadRsaKeyFile(data('rsa-other.pem'))[0];
  const encrypt = (pt: Buffer, k: RsaServerKey = key) => publicEncrypt({ key: k.key, padding: constants.RSA_PKCS1_PADDING }, pt);

  it('recovers a PKCS#1 v1.5 encrypted 48-byte premaster', () => {
    for (let i = 0; i < 5; i++) {
      const pms = Buffer.concat([Buffer.from([3, 3]), randomBytes(46)]);
      expect(decryptPreMaster(key, encrypt(pms))).toEqual(pms);
    }
  });

  it('returns undefined for the wrong key, a wrong-length secret, garbage and bad lengths', () => {
    const pms = randomBytes(48);
    expect(decryptPreMaster(other, encrypt(pms))).toBeUndefined();
    expect(decryptPreMaster(key, encrypt(randomBytes(47)))).toBeUndefined();
    expect(decryptPreMaster(key, randomBytes(128))).toBeUndefined();
    expect(decryptPreMaster(key, Buffer.alloc(0))).toBeUndefined();
    expect(decryptPreMaster(key, Buffer.alloc(129, 1))).toBeUndefined();
    expect(decryptPreMaster(key, Buffer.alloc(128, 0xff))).toBeUndefined(); // >= modulus
  });

  it('accepts a ciphertext whose leading zero byte was dropped', () => {
    // about 1 in 220 ciphertexts of this modulus start with 0x00; search until one does
    for (let i = 0; i < 20000; i++) {
      const pms = randomBytes(48);
      const ct = encrypt(pms);
      if (ct[0] !== 0) continue;
      expect(decryptPreMaster(key, ct.subarray(1))).toEqual(pms);
      return;
    }
    throw new Error('no ciphertext with a leading zero byte found');
  });
});
