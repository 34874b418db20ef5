/**
 * RC4 (the keystream generator of "Applied Cryptography" / RFC 6229's test vectors), for TLS
 * 1.0-1.2 RC4_128 suites (RFC 5246 App. C). OpenSSL 3 keeps RC4 in its legacy provider, which node
 * does not load, so it is here: a passive decryptor of old captures needs it, and it is short.
 * One direction's state runs across all its records (no per-record IV).
 */
export class Rc4 {
  private readonly s = new Uint8Array(256);
  private i = 0;
  private j = 0;

  constructor(key: Uint8Array) {
    const s = this.s;
    for (let k = 0; k < 256; k++) s[k] = k;
    let j = 0;
    for (let k = 0; k < 256; k++) {
      j = (j + s[k] + key[k % key.length]) & 0xff;
      const t = s[k];
      s[k] = s[j];
      s[j] = t;
    }
  }

  /** XORs the next `data.length` keystream bytes into a new buffer. */
  process(data: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(data.length);
    const s = this.s;
    let i = this.i;
    let j = this.j;
    for (let k = 0; k < data.length; k++) {
      i = (i + 1) & 0xff;
      const si = s[i];
      j = (j + si) & 0xff;
      const sj = s[j];
      s[i] = sj;
      s[j] = si;
      out[k] = data[k] ^ s[(si + sj) & 0xff];
    }
    this.i = i;
    this.j = j;
    return out;
  }
}
