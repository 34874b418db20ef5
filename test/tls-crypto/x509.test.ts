import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { describeCertificate, internCertificate } from '../../src/tls/crypto/x509.js';

const der = readFileSync(fileURLToPath(new URL('./data/cert.der', import.meta.url)));

describe('describeCertificate', () => {
  it('summarises the test certificate in ECS x509 terms', () => {
    const d = describeCertificate(der)!;
    expect(d.subject).toBe('CN=test.example, O=Test Org, C=US');
    expect(d.issuer).toBe('CN=test.example, O=Test Org, C=US');
    expect(d.not_before).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
    expect(Date.parse(d.not_after!) - Date.parse(d.not_before!)).toBe(3650 * 86400 * 1000);
    expect(d.serial_number).toMatch(/^[0-9A-F]+$/);
    expect(d.alternative_names).toEqual(['test.example', 'www.test.example', '192.0.2.1']);
    expect(d.public_key_algorithm).toBe('RSA');
  });

  it('returns undefined for garbage and truncated certificates, never throwing', () => {
    expect(describeCertificate(Buffer.alloc(0))).toBeUndefined();
    for (let n = 0; n < der.length; n += 7) expect(describeCertificate(der.subarray(0, n))).toBeUndefined();
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
      expect(() => describeCertificate(Buffer.from(b))).not.toThrow();
    }), { numRuns: 200 });
  });
});

describe('internCertificate', () => {
  it('keeps one copy per certificate: the bytes survive reuse of the buffer they came in, and a second sighting gets the same copy', () => {
    const msg = Buffer.concat([Buffer.from([0xaa, 0xbb]), der, Buffer.from([0xcc])]);
    const view = msg.subarray(2, 2 + der.length);
    const kept = internCertificate(view);
    expect(kept.equals(der)).toBe(true);
    msg.fill(0); // the handshake reassembly buffer is reused for the next message
    expect(kept.equals(der)).toBe(true);
    expect(describeCertificate(kept)?.subject).toBe('CN=test.example, O=Test Org, C=US');
    const again = Buffer.concat([Buffer.from([1]), der]).subarray(1);
    expect(internCertificate(again)).toBe(kept);
    // a different certificate of the same length and last bytes is not confused with it
    const other = Buffer.from(der);
    other[10] ^= 0xff;
    const k2 = internCertificate(other);
    expect(k2).not.toBe(kept);
    expect(k2.equals(other)).toBe(true);
  });
});
