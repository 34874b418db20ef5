/**
 * The cipher-suite registry: one row per IANA TLS cipher suite, as Go's crypto/tls
 * `cipher_suites.go` has it, so supporting a suite is adding a row.
 *
 * Rows are written as (id, IANA name, key exchange); the record-protection parameters are
 * derived from the bulk-cipher part of the name (the text after `_WITH_`) through the BULK
 * table below, so a row cannot disagree with its own name.
 *
 * Sources: IANA "TLS Cipher Suites" registry; RFC 5246 App. A.5 and C, RFC 5288 (GCM),
 * RFC 5289 (ECDHE SHA-256/384), RFC 5487 (PSK SHA-256/384), RFC 6655 and RFC 7251 (CCM),
 * RFC 7905 (ChaCha20-Poly1305), RFC 8442 (ECDHE_PSK AEAD), RFC 8446 §B.4 (TLS 1.3).
 */

export type KeyExchange = 'RSA' | 'ECDHE' | 'DHE' | 'PSK' | 'ECDHE_PSK' | 'DHE_PSK' | 'TLS13' | 'other';
export type CipherKind = 'aead' | 'cbc' | 'stream' | 'null';
export type MacHash = 'md5' | 'sha1' | 'sha256' | 'sha384';
export type PrfHash = 'sha256' | 'sha384';

export interface CipherSuite {
  id: number;
  /** IANA name, e.g. 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'. */
  name: string;
  tls13: boolean;
  kx: KeyExchange;
  kind: CipherKind;
  /** false: we know its name but do not decrypt it (EXPORT, DES, IDEA, SEED, Camellia-GCM...). */
  supported: boolean;
  /** node:crypto cipher name; 'rc4' (our own, RC4 is not in OpenSSL 3's default provider), 'null' (no encryption), '' when unsupported. */
  cipher: string;
  keyLen: number;
  /** CBC: the cipher's block size (16; 8 for 3DES); 0 otherwise. */
  blockLen: number;
  /** TLS 1.2 GCM/CCM: 4 (salt, RFC 5288 §3); ChaCha20 (RFC 7905 §2) and TLS 1.3: 12; CBC: 0. */
  fixedIvLen: number;
  /** TLS 1.2 GCM/CCM: 8; otherwise 0. */
  explicitNonceLen: number;
  /** AEAD tag length: 16; CCM_8: 8; CBC: 0. */
  tagLen: number;
  /** HMAC hash of CBC suites. */
  macHash: MacHash | null;
  macLen: number;
  /** TLS 1.2 PRF hash (RFC 5246 §5) or TLS 1.3 HKDF hash (RFC 8446 §7.1). */
  prfHash: PrfHash;
}

type Bulk = Omit<CipherSuite, 'id' | 'name' | 'tls13' | 'kx'>;

function aead12(cipher: string, keyLen: number, tagLen: number, prfHash: PrfHash): Bulk {
  return { kind: 'aead', supported: true, cipher, keyLen, blockLen: 0, fixedIvLen: 4, explicitNonceLen: 8, tagLen, macHash: null, macLen: 0, prfHash };
}
function chacha12(): Bulk {
  // RFC 7905 §2: the 12-byte client/server_write_IV is XORed with the sequence number; no explicit nonce.
  return { kind: 'aead', supported: true, cipher: 'chacha20-poly1305', keyLen: 32, blockLen: 0, fixedIvLen: 12, explicitNonceLen: 0, tagLen: 16, macHash: null, macLen: 0, prfHash: 'sha256' };
}
const MAC_LEN: Record<MacHash, number> = { md5: 16, sha1: 20, sha256: 32, sha384: 48 };
function cbc(keyLen: number, macHash: MacHash, prfHash: PrfHash, cipher = `aes-${keyLen * 8}-cbc`, blockLen = 16): Bulk {
  return { kind: 'cbc', supported: true, cipher, keyLen, blockLen, fixedIvLen: 0, explicitNonceLen: 0, tagLen: 0, macHash, macLen: MAC_LEN[macHash], prfHash };
}
/** MAC-then-encrypt without blocks (RFC 5246 §6.2.3.1): RC4 (RFC 5246 App. C) or no encryption at all (NULL). */
function streamOrNull(kind: 'stream' | 'null', macHash: MacHash, prfHash: PrfHash = 'sha256'): Bulk {
  const keyLen = kind === 'stream' ? 16 : 0;
  return { kind, supported: true, cipher: kind === 'stream' ? 'rc4' : 'null', keyLen, blockLen: 0, fixedIvLen: 0, explicitNonceLen: 0, tagLen: 0, macHash, macLen: MAC_LEN[macHash], prfHash };
}
function unsupported(kind: CipherKind, prfHash: PrfHash = 'sha256'): Bulk {
  return { kind, supported: false, cipher: '', keyLen: 0, blockLen: 0, fixedIvLen: 0, explicitNonceLen: 0, tagLen: 0, macHash: null, macLen: 0, prfHash };
}

/** Bulk-cipher part of the IANA name (after `_WITH_`) -> record protection parameters. */
const BULK: Record<string, Bulk> = {
  AES_128_GCM_SHA256: aead12('aes-128-gcm', 16, 16, 'sha256'),
  AES_256_GCM_SHA384: aead12('aes-256-gcm', 32, 16, 'sha384'),
  // RFC 6655 §3 / RFC 7251: the CCM suites use the TLS 1.2 default PRF (SHA-256).
  AES_128_CCM: aead12('aes-128-ccm', 16, 16, 'sha256'),
  AES_256_CCM: aead12('aes-256-ccm', 32, 16, 'sha256'),
  AES_128_CCM_8: aead12('aes-128-ccm', 16, 8, 'sha256'),
  AES_256_CCM_8: aead12('aes-256-ccm', 32, 8, 'sha256'),
  // RFC 8442 names of the ECDHE_PSK CCM suites.
  AES_128_CCM_SHA256: aead12('aes-128-ccm', 16, 16, 'sha256'),
  AES_128_CCM_8_SHA256: aead12('aes-128-ccm', 16, 8, 'sha256'),
  CHACHA20_POLY1305_SHA256: chacha12(),
  // RFC 5246 App. C: *_SHA suites use HMAC-SHA1 for records and the SHA-256 PRF in TLS 1.2.
  AES_128_CBC_SHA: cbc(16, 'sha1', 'sha256'),
  AES_256_CBC_SHA: cbc(32, 'sha1', 'sha256'),
  AES_128_CBC_SHA256: cbc(16, 'sha256', 'sha256'),
  AES_256_CBC_SHA256: cbc(32, 'sha256', 'sha256'),
  // RFC 5289 §3.1 / RFC 5487: *_SHA384 suites use HMAC-SHA384 and the SHA-384 PRF.
  AES_256_CBC_SHA384: cbc(32, 'sha384', 'sha384'),
  // 3DES (RFC 5246 App. C): 24-byte key, 8-byte blocks.
  '3DES_EDE_CBC_SHA': cbc(24, 'sha1', 'sha256', 'des-ede3-cbc', 8),
  // Camellia CBC (RFC 5932 §3): *_SHA256 suites use HMAC-SHA256 and the SHA-256 PRF, *_SHA384 SHA-384.
  CAMELLIA_128_CBC_SHA: cbc(16, 'sha1', 'sha256', 'camellia-128-cbc'),
  CAMELLIA_256_CBC_SHA: cbc(32, 'sha1', 'sha256', 'camellia-256-cbc'),
  CAMELLIA_128_CBC_SHA256: cbc(16, 'sha256', 'sha256', 'camellia-128-cbc'),
  CAMELLIA_256_CBC_SHA256: cbc(32, 'sha256', 'sha256', 'camellia-256-cbc'),
  CAMELLIA_256_CBC_SHA384: cbc(32, 'sha384', 'sha384', 'camellia-256-cbc'),
  // ARIA (RFC 6209 §2): CBC suites with HMAC-SHA256/384, GCM suites as AES-GCM (RFC 5288).
  ARIA_128_CBC_SHA256: cbc(16, 'sha256', 'sha256', 'aria-128-cbc'),
  ARIA_256_CBC_SHA384: cbc(32, 'sha384', 'sha384', 'aria-256-cbc'),
  ARIA_128_GCM_SHA256: aead12('aria-128-gcm', 16, 16, 'sha256'),
  ARIA_256_GCM_SHA384: aead12('aria-256-gcm', 32, 16, 'sha384'),
  // RC4 (a stream cipher: one keystream per direction across records) and NULL (MAC only).
  RC4_128_SHA: streamOrNull('stream', 'sha1'),
  RC4_128_MD5: streamOrNull('stream', 'md5'),
  NULL_MD5: streamOrNull('null', 'md5'),
  NULL_SHA: streamOrNull('null', 'sha1'),
  NULL_SHA256: streamOrNull('null', 'sha256'),
  NULL_SHA384: streamOrNull('null', 'sha384', 'sha384'),
};

/** TLS 1.3 suites (RFC 8446 §B.4): AEAD with a 12-byte IV XORed with the sequence number. */
function tls13(id: number, name: string, cipher: string, keyLen: number, tagLen: number, prfHash: PrfHash): CipherSuite {
  return { id, name, tls13: true, kx: 'TLS13', kind: 'aead', supported: true, cipher, keyLen, blockLen: 0, fixedIvLen: 12, explicitNonceLen: 0, tagLen, macHash: null, macLen: 0, prfHash };
}

/** Supported TLS 1.2 suites: [id, IANA name, key exchange]. */
const TLS12_ROWS: ReadonlyArray<readonly [number, string, KeyExchange]> = [
  // RSA key exchange
  [0x002f, 'TLS_RSA_WITH_AES_128_CBC_SHA', 'RSA'],
  [0x0035, 'TLS_RSA_WITH_AES_256_CBC_SHA', 'RSA'],
  [0x003c, 'TLS_RSA_WITH_AES_128_CBC_SHA256', 'RSA'],
  [0x003d, 'TLS_RSA_WITH_AES_256_CBC_SHA256', 'RSA'],
  [0x009c, 'TLS_RSA_WITH_AES_128_GCM_SHA256', 'RSA'],
  [0x009d, 'TLS_RSA_WITH_AES_256_GCM_SHA384', 'RSA'],
  [0xc09c, 'TLS_RSA_WITH_AES_128_CCM', 'RSA'],
  [0xc09d, 'TLS_RSA_WITH_AES_256_CCM', 'RSA'],
  [0xc0a0, 'TLS_RSA_WITH_AES_128_CCM_8', 'RSA'],
  [0xc0a1, 'TLS_RSA_WITH_AES_256_CCM_8', 'RSA'],
  // DHE_RSA
  [0x0033, 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA', 'DHE'],
  [0x0039, 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA', 'DHE'],
  [0x0067, 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA256', 'DHE'],
  [0x006b, 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA256', 'DHE'],
  [0x009e, 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256', 'DHE'],
  [0x009f, 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384', 'DHE'],
  [0xc09e, 'TLS_DHE_RSA_WITH_AES_128_CCM', 'DHE'],
  [0xc09f, 'TLS_DHE_RSA_WITH_AES_256_CCM', 'DHE'],
  [0xc0a2, 'TLS_DHE_RSA_WITH_AES_128_CCM_8', 'DHE'],
  [0xc0a3, 'TLS_DHE_RSA_WITH_AES_256_CCM_8', 'DHE'],
  [0xccaa, 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'DHE'],
  // DHE_DSS
  [0x0032, 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA', 'DHE'],
  [0x0038, 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA', 'DHE'],
  [0x0040, 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA256', 'DHE'],
  [0x006a, 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA256', 'DHE'],
  [0x00a2, 'TLS_DHE_DSS_WITH_AES_128_GCM_SHA256', 'DHE'],
  [0x00a3, 'TLS_DHE_DSS_WITH_AES_256_GCM_SHA384', 'DHE'],
  // ECDHE_ECDSA
  [0xc009, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA', 'ECDHE'],
  [0xc00a, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA', 'ECDHE'],
  [0xc023, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256', 'ECDHE'],
  [0xc024, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384', 'ECDHE'],
  [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'ECDHE'],
  [0xc02c, 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', 'ECDHE'],
  [0xc0ac, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM', 'ECDHE'],
  [0xc0ad, 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM', 'ECDHE'],
  [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'ECDHE'],
  [0xc0af, 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8', 'ECDHE'],
  [0xcca9, 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE'],
  // ECDHE_RSA
  [0xc013, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'ECDHE'],
  [0xc014, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA', 'ECDHE'],
  [0xc027, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256', 'ECDHE'],
  [0xc028, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384', 'ECDHE'],
  [0xc02f, 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'ECDHE'],
  [0xc030, 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'ECDHE'],
  [0xcca8, 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE'],
  // Static ECDH (RFC 4492/5289): decryptable with a key log (CLIENT_RANDOM), hence supported.
  [0xc004, 'TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA', 'other'],
  [0xc005, 'TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA', 'other'],
  [0xc025, 'TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256', 'other'],
  [0xc026, 'TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384', 'other'],
  [0xc02d, 'TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256', 'other'],
  [0xc02e, 'TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384', 'other'],
  [0xc00e, 'TLS_ECDH_RSA_WITH_AES_128_CBC_SHA', 'other'],
  [0xc00f, 'TLS_ECDH_RSA_WITH_AES_256_CBC_SHA', 'other'],
  [0xc029, 'TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256', 'other'],
  [0xc02a, 'TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384', 'other'],
  [0xc031, 'TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256', 'other'],
  [0xc032, 'TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384', 'other'],
  // PSK (RFC 4279, RFC 5487, RFC 6655, RFC 7905)
  [0x008c, 'TLS_PSK_WITH_AES_128_CBC_SHA', 'PSK'],
  [0x008d, 'TLS_PSK_WITH_AES_256_CBC_SHA', 'PSK'],
  [0x00ae, 'TLS_PSK_WITH_AES_128_CBC_SHA256', 'PSK'],
  [0x00af, 'TLS_PSK_WITH_AES_256_CBC_SHA384', 'PSK'],
  [0x00a8, 'TLS_PSK_WITH_AES_128_GCM_SHA256', 'PSK'],
  [0x00a9, 'TLS_PSK_WITH_AES_256_GCM_SHA384', 'PSK'],
  [0xc0a4, 'TLS_PSK_WITH_AES_128_CCM', 'PSK'],
  [0xc0a5, 'TLS_PSK_WITH_AES_256_CCM', 'PSK'],
  [0xc0a8, 'TLS_PSK_WITH_AES_128_CCM_8', 'PSK'],
  [0xc0a9, 'TLS_PSK_WITH_AES_256_CCM_8', 'PSK'],
  [0xccab, 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256', 'PSK'],
  // DHE_PSK
  [0x0090, 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA', 'DHE_PSK'],
  [0x0091, 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA', 'DHE_PSK'],
  [0x00b2, 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA256', 'DHE_PSK'],
  [0x00b3, 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA384', 'DHE_PSK'],
  [0x00aa, 'TLS_DHE_PSK_WITH_AES_128_GCM_SHA256', 'DHE_PSK'],
  [0x00ab, 'TLS_DHE_PSK_WITH_AES_256_GCM_SHA384', 'DHE_PSK'],
  [0xc0a6, 'TLS_DHE_PSK_WITH_AES_128_CCM', 'DHE_PSK'],
  [0xc0a7, 'TLS_DHE_PSK_WITH_AES_256_CCM', 'DHE_PSK'],
  [0xc0aa, 'TLS_PSK_DHE_WITH_AES_128_CCM_8', 'DHE_PSK'],
  [0xc0ab, 'TLS_PSK_DHE_WITH_AES_256_CCM_8', 'DHE_PSK'],
  [0xccad, 'TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256', 'DHE_PSK'],
  // ECDHE_PSK (RFC 5489, RFC 7905, RFC 8442)
  [0xc035, 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA', 'ECDHE_PSK'],
  [0xc036, 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA', 'ECDHE_PSK'],
  [0xc037, 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256', 'ECDHE_PSK'],
  [0xc038, 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384', 'ECDHE_PSK'],
  [0xccac, 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE_PSK'],
  [0xd001, 'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256', 'ECDHE_PSK'],
  [0xd002, 'TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384', 'ECDHE_PSK'],
  [0xd003, 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256', 'ECDHE_PSK'],
  [0xd005, 'TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256', 'ECDHE_PSK'],
  // Legacy and regional bulk ciphers that Wireshark also decrypts: 3DES, Camellia CBC, ARIA, RC4, NULL.
  [0x0001, 'TLS_RSA_WITH_NULL_MD5', 'RSA'],
  [0x0002, 'TLS_RSA_WITH_NULL_SHA', 'RSA'],
  [0x003b, 'TLS_RSA_WITH_NULL_SHA256', 'RSA'],
  [0xc006, 'TLS_ECDHE_ECDSA_WITH_NULL_SHA', 'ECDHE'],
  [0xc010, 'TLS_ECDHE_RSA_WITH_NULL_SHA', 'ECDHE'],
  [0x0004, 'TLS_RSA_WITH_RC4_128_MD5', 'RSA'],
  [0x0005, 'TLS_RSA_WITH_RC4_128_SHA', 'RSA'],
  [0xc007, 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA', 'ECDHE'],
  [0xc011, 'TLS_ECDHE_RSA_WITH_RC4_128_SHA', 'ECDHE'],
  [0x008a, 'TLS_PSK_WITH_RC4_128_SHA', 'PSK'],
  [0x000a, 'TLS_RSA_WITH_3DES_EDE_CBC_SHA', 'RSA'],
  [0x0013, 'TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA', 'DHE'],
  [0x0016, 'TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA', 'DHE'],
  [0xc008, 'TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA', 'ECDHE'],
  [0xc012, 'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA', 'ECDHE'],
  [0x008b, 'TLS_PSK_WITH_3DES_EDE_CBC_SHA', 'PSK'],
  [0x0041, 'TLS_RSA_WITH_CAMELLIA_128_CBC_SHA', 'RSA'],
  [0x0084, 'TLS_RSA_WITH_CAMELLIA_256_CBC_SHA', 'RSA'],
  [0x0045, 'TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA', 'DHE'],
  [0x0088, 'TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA', 'DHE'],
  [0x00ba, 'TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'RSA'],
  [0x00c0, 'TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256', 'RSA'],
  [0xc072, 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256', 'ECDHE'],
  [0xc076, 'TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'ECDHE'],
  [0xc03c, 'TLS_RSA_WITH_ARIA_128_CBC_SHA256', 'RSA'],
  [0xc03d, 'TLS_RSA_WITH_ARIA_256_CBC_SHA384', 'RSA'],
  [0xc050, 'TLS_RSA_WITH_ARIA_128_GCM_SHA256', 'RSA'],
  [0xc051, 'TLS_RSA_WITH_ARIA_256_GCM_SHA384', 'RSA'],
  [0xc05c, 'TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256', 'ECDHE'],
  [0xc05d, 'TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384', 'ECDHE'],
  [0xc060, 'TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256', 'ECDHE'],
  [0xc061, 'TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384', 'ECDHE'],
  [0xc073, 'TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384', 'ECDHE'],
  [0xc077, 'TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384', 'ECDHE'],
  [0x00be, 'TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256', 'DHE'],
  [0x00c4, 'TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256', 'DHE'],
  [0xc048, 'TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256', 'ECDHE'],
  [0xc049, 'TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384', 'ECDHE'],
  [0xc04c, 'TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256', 'ECDHE'],
  [0xc04d, 'TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384', 'ECDHE'],
  [0xc052, 'TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256', 'DHE'],
  [0xc053, 'TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384', 'DHE'],
  [0xc03a, 'TLS_ECDHE_PSK_WITH_NULL_SHA256', 'ECDHE_PSK'],
  [0xc03b, 'TLS_ECDHE_PSK_WITH_NULL_SHA384', 'ECDHE_PSK'],
  [0x00b0, 'TLS_PSK_WITH_NULL_SHA256', 'PSK'],
  [0x00b1, 'TLS_PSK_WITH_NULL_SHA384', 'PSK'],
  // RSA_PSK (RFC 4279 §4): premaster is not a plain RSA premaster, so kx 'other'.
  [0x0094, 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA', 'other'],
  [0x0095, 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA', 'other'],
  [0x00b6, 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA256', 'other'],
  [0x00b7, 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA384', 'other'],
  [0x00ac, 'TLS_RSA_PSK_WITH_AES_128_GCM_SHA256', 'other'],
  [0x00ad, 'TLS_RSA_PSK_WITH_AES_256_GCM_SHA384', 'other'],
  [0xccae, 'TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256', 'other'],
];

/** Suites we can name but do not decrypt: [id, IANA name, kx, kind]. */
const UNSUPPORTED_ROWS: ReadonlyArray<readonly [number, string, KeyExchange, CipherKind]> = [
  [0x0000, 'TLS_NULL_WITH_NULL_NULL', 'other', 'null'],
  [0x0003, 'TLS_RSA_EXPORT_WITH_RC4_40_MD5', 'RSA', 'stream'],
  [0x0006, 'TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5', 'RSA', 'cbc'],
  [0x0007, 'TLS_RSA_WITH_IDEA_CBC_SHA', 'RSA', 'cbc'],
  [0x0008, 'TLS_RSA_EXPORT_WITH_DES40_CBC_SHA', 'RSA', 'cbc'],
  [0x0009, 'TLS_RSA_WITH_DES_CBC_SHA', 'RSA', 'cbc'],
  [0x0014, 'TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA', 'DHE', 'cbc'],
  [0x0015, 'TLS_DHE_RSA_WITH_DES_CBC_SHA', 'DHE', 'cbc'],
  [0x0096, 'TLS_RSA_WITH_SEED_CBC_SHA', 'RSA', 'cbc'],
  [0xc07a, 'TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256', 'RSA', 'aead'],
  [0xc07b, 'TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384', 'RSA', 'aead'],
  // Signalling cipher suite values (RFC 5746 §3.3, RFC 7507): names only.
  [0x00ff, 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV', 'other', 'null'],
  [0x5600, 'TLS_FALLBACK_SCSV', 'other', 'null'],
];

const REGISTRY = new Map<number, CipherSuite>();

function register(s: CipherSuite): void {
  if (REGISTRY.has(s.id)) throw new Error(`duplicate cipher suite row 0x${s.id.toString(16)}`);
  REGISTRY.set(s.id, Object.freeze(s));
}

register(tls13(0x1301, 'TLS_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16, 'sha256'));
register(tls13(0x1302, 'TLS_AES_256_GCM_SHA384', 'aes-256-gcm', 32, 16, 'sha384'));
register(tls13(0x1303, 'TLS_CHACHA20_POLY1305_SHA256', 'chacha20-poly1305', 32, 16, 'sha256'));
register(tls13(0x1304, 'TLS_AES_128_CCM_SHA256', 'aes-128-ccm', 16, 16, 'sha256'));
register(tls13(0x1305, 'TLS_AES_128_CCM_8_SHA256', 'aes-128-ccm', 16, 8, 'sha256'));

for (const [id, name, kx] of TLS12_ROWS) {
  const bulkName = name.slice(name.indexOf('_WITH_') + 6);
  const bulk = BULK[bulkName];
  if (!bulk) throw new Error(`cipher suite row ${name}: no bulk cipher entry for ${bulkName}`);
  register({ id, name, tls13: false, kx, ...bulk });
}
for (const [id, name, kx, kind] of UNSUPPORTED_ROWS) {
  register({ id, name, tls13: false, kx, ...unsupported(kind, /_SHA384$/.test(name) ? 'sha384' : 'sha256') });
}

/** The row for a suite id (supported or not), or undefined for ids we do not know. */
export function suiteById(id: number): CipherSuite | undefined {
  return REGISTRY.get(id);
}

/** IANA name for any known id (including unsupported ones); 'UNKNOWN_0x1234' otherwise. */
export function suiteName(id: number): string {
  const s = REGISTRY.get(id);
  if (s) return s.name;
  return 'UNKNOWN_0x' + (id & 0xffff).toString(16).padStart(4, '0');
}

/** Every registered suite (for tests, documentation and metrics labels). */
export function allSuites(): CipherSuite[] {
  return [...REGISTRY.values()];
}
