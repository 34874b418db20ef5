/**
 * RSA key exchange (RFC 5246 §7.4.7.1): server private keys and premaster decryption.
 *
 * Error messages name the file (base name only) and the problem; they never contain key bytes,
 * decrypted data or the password.
 */
import { constants, createPrivateKey, privateDecrypt, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createRequire } from 'node:module';
import type forgeNs from 'node-forge';

/**
 * node-forge is only needed for PKCS#12 files; loaded on first use (it costs ~30-40 ms of start-up
 * to compile and initialise, paid by every replay otherwise).
 */
let forgeMod: typeof forgeNs | undefined;
const forgeLazy = (): typeof forgeNs => (forgeMod ??= createRequire(import.meta.url)('node-forge') as typeof forgeNs);

export interface RsaServerKey {
  /** Lower-case hex of the modulus (no leading zero bytes): matches modulusHexOfCertificate. */
  modulusHex: string;
  key: KeyObject;
  /** File name only (no directory), for logs. */
  source: string;
}

/** A key file that cannot be used; the message is one line naming the file and the problem. */
export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

/** RFC 5246 §7.4.7.1: the RSA-encrypted premaster secret is 48 bytes. */
const PREMASTER_LEN = 48;
/** RFC 8017 §7.2.1: PKCS#1 v1.5 padding string is at least 8 bytes. */
const MIN_PS_LEN = 8;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

function base64urlToHex(s: string): string {
  const hex = Buffer.from(s, 'base64url').toString('hex');
  return hex.replace(/^(00)+/, '');
}

function modulusOfKey(key: KeyObject): string | undefined {
  try {
    const jwk = key.export({ format: 'jwk' }) as { n?: string };
    return jwk.n ? base64urlToHex(jwk.n) : undefined;
  } catch {
    return undefined;
  }
}

/** Modulus (hex) of an RSA certificate's public key; undefined if not RSA or unparseable. */
export function modulusHexOfCertificate(der: Buffer): string | undefined {
  try {
    const pub = new X509Certificate(der).publicKey;
    if (pub.asymmetricKeyType !== 'rsa') return undefined;
    const jwk = pub.export({ format: 'jwk' }) as { n?: string };
    return jwk.n ? base64urlToHex(jwk.n) : undefined;
  } catch {
    return undefined;
  }
}

/** Why node/OpenSSL refused a key, without echoing anything from the input. */
function reason(e: unknown, password: string | undefined): string {
  const msg = e instanceof Error ? e.message : '';
  const code = (e as { code?: string } | undefined)?.code ?? '';
  if (/passphrase|bad decrypt|BAD_DECRYPT|interrupted or cancelled/i.test(msg + code)) {
    return password === undefined ? 'the key is encrypted and no password was given' : 'wrong password or corrupt encrypted key';
  }
  return 'not a readable private key';
}

function isEncryptedPem(block: string): boolean {
  return block.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /Proc-Type:\s*4,ENCRYPTED/.test(block);
}

function fromPem(text: string, file: string, password: string | undefined): KeyObject[] {
  const keys: KeyObject[] = [];
  let sawKeyBlock = false;
  for (const m of text.matchAll(PEM_BLOCK)) {
    const kind = m[1];
    if (!/PRIVATE KEY$/.test(kind)) continue; // certificates and parameters may share the file
    sawKeyBlock = true;
    const block = m[0];
    if (isEncryptedPem(block) && password === undefined) {
      throw new KeyFileError(`${file}: the key is encrypted and no password was given`);
    }
    try {
      keys.push(createPrivateKey({ key: block, format: 'pem', passphrase: password ?? '' }));
    } catch (e) {
      throw new KeyFileError(`${file}: ${reason(e, password)}`);
    }
  }
  if (!sawKeyBlock) throw new KeyFileError(`${file}: no private key found`);
  return keys;
}

function fromDer(data: Buffer, password: string | undefined): KeyObject | undefined {
  for (const type of ['pkcs8', 'pkcs1'] as const) {
    try {
      return createPrivateKey({ key: data, format: 'der', type });
    } catch {
      // try the next form
    }
  }
  if (password !== undefined) {
    try {
      return createPrivateKey({ key: data, format: 'der', type: 'pkcs8', passphrase: password });
    } catch {
      // not an encrypted PKCS#8 either
    }
  }
  return undefined;
}

/** PKCS#12 through node-forge (node:crypto cannot read it); every key bag is returned. */
function fromPkcs12(data: Buffer, file: string, password: string | undefined): KeyObject[] {
  const forge = forgeLazy();
  let p12: forgeNs.pkcs12.Pkcs12Pfx;
  try {
    const asn1 = forge.asn1.fromDer(forge.util.createBuffer(data.toString('binary')));
    p12 = forge.pkcs12.pkcs12FromAsn1(asn1, false, password ?? '');
  } catch (e) {
    const msg = e instanceof Error ? e.message : '';
    if (/password|MAC could not be verified|decrypt/i.test(msg)) {
      throw new KeyFileError(`${file}: ${password === undefined ? 'PKCS#12 file needs a password' : 'wrong password for PKCS#12 file'}`);
    }
    throw new KeyFileError(`${file}: not a readable PKCS#12 file or private key`);
  }
  const keys: KeyObject[] = [];
  for (const bagType of [forge.pki.oids.pkcs8ShroudedKeyBag, forge.pki.oids.keyBag]) {
    const bags = p12.getBags({ bagType })[bagType] ?? [];
    for (const bag of bags) {
      if (!bag.key) {
        if (bagType === forge.pki.oids.pkcs8ShroudedKeyBag) throw new KeyFileError(`${file}: wrong password for PKCS#12 file`);
        continue;
      }
      try {
        keys.push(createPrivateKey({ key: forge.pki.privateKeyToPem(bag.key), format: 'pem' }));
      } catch {
        // a bag node cannot import is skipped; "no RSA key" is reported below if nothing is left
      }
    }
  }
  return keys;
}

/**
 * Loads server private keys: PEM PKCS#1 (including legacy 'Proc-Type: 4,ENCRYPTED'), PKCS#8,
 * encrypted PKCS#8, DER, and PKCS#12 (.p12/.pfx). Several keys per file are allowed; non-RSA keys
 * are skipped. Throws KeyFileError (one line, no key material) when nothing usable is found.
 */
export function loadRsaKeyFile(path: string, password?: string): RsaServerKey[] {
  // Errors name the file as the user gave it ("what and where"); `source` keeps only its base name.
  const file = path;
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'read error';
    throw new KeyFileError(`${file}: cannot read file (${code})`);
  }
  let keys: KeyObject[];
  const text = data.toString('latin1');
  if (text.includes('-----BEGIN ')) {
    keys = fromPem(text, file, password);
  } else {
    const der = /\.(p12|pfx)$/i.test(file) ? undefined : fromDer(data, password);
    keys = der ? [der] : fromPkcs12(data, file, password);
  }
  const out: RsaServerKey[] = [];
  for (const key of keys) {
    if (key.asymmetricKeyType !== 'rsa') continue;
    const modulusHex = modulusOfKey(key);
    if (modulusHex) out.push({ modulusHex, key, source: basename(path) });
  }
  if (out.length === 0) throw new KeyFileError(`${file}: no RSA private key found`);
  return out;
}

/**
 * Decrypts the ClientKeyExchange's EncryptedPreMasterSecret (RFC 5246 §7.4.7.1). node 20 refuses
 * PKCS#1 v1.5 decryption (Marvin-attack hardening), so the raw RSA operation is done with
 * RSA_NO_PADDING and the EME-PKCS1-v1_5 block (RFC 8017 §7.2.2) is checked here:
 * 00 02 PS(>= 8 non-zero bytes) 00 M, with M the 48-byte premaster. A passive decryptor is no
 * padding oracle, so the check need not be constant-time. Returns undefined on any mismatch.
 */
export function decryptPreMaster(key: RsaServerKey, encrypted: Buffer): Buffer | undefined {
  const k = Math.ceil(key.modulusHex.length / 2);
  if (encrypted.length === 0 || encrypted.length > k) return undefined;
  let input = encrypted;
  if (input.length < k) {
    // some stacks drop leading zero bytes of the ciphertext integer; RSA needs it at full length
    input = Buffer.alloc(k);
    encrypted.copy(input, k - encrypted.length);
  }
  let em: Buffer;
  try {
    em = privateDecrypt({ key: key.key, padding: constants.RSA_NO_PADDING }, input);
  } catch {
    return undefined;
  }
  if (em.length !== k || em[0] !== 0x00 || em[1] !== 0x02) return undefined;
  let sep = 2;
  while (sep < em.length && em[sep] !== 0) sep++;
  if (sep >= em.length || sep - 2 < MIN_PS_LEN) return undefined;
  const m = em.subarray(sep + 1);
  if (m.length !== PREMASTER_LEN) return undefined;
  return Buffer.from(m);
}

/**
 * The premaster secret of an RSA ClientKeyExchange with the server keys given: the key whose
 * modulus matches the server certificate `leaf` first, then all others. Undefined when none
 * decrypts it (or there are no keys).
 */
export function preMasterFromKeys(keys: readonly RsaServerKey[], leaf: Buffer | undefined, encrypted: Buffer): Buffer | undefined {
  if (keys.length === 0) return undefined;
  const modulus = leaf ? modulusHexOfCertificate(leaf) : undefined;
  const ordered = modulus ? [...keys.filter((k) => k.modulusHex === modulus), ...keys.filter((k) => k.modulusHex !== modulus)] : keys;
  for (const key of ordered) {
    const pre = decryptPreMaster(key, encrypted);
    if (pre) return pre;
  }
  return undefined;
}
