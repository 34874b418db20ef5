import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ipToString } from '../../src/decode/index.js';
import { ip6 } from './builders.js';

describe('ipToString', () => {
  it('prints IPv4 dotted decimal', () => {
    expect(ipToString(Buffer.from([192, 168, 0, 255]))).toBe('192.168.0.255');
    expect(ipToString(Buffer.from([0, 0, 0, 0]))).toBe('0.0.0.0');
  });

  it('prints IPv6 in RFC 5952 form', () => {
    const cases: [string, string][] = [
      ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
      ['2001:db8:0:0:0:1:0:0', '2001:db8::1:0:0'], // the longest run wins
      ['2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:0001', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'],
      ['fe80:0:0:0:a00:27ff:fe4e:66a1', 'fe80::a00:27ff:fe4e:66a1'],
    ];
    for (const [input, want] of cases) expect(ipToString(ip6(input))).toBe(want);
  });

  it('prints IPv4-mapped addresses in mixed notation (RFC 5952 section 5)', () => {
    expect(ipToString(ip6('::ffff:102:304'))).toBe('::ffff:1.2.3.4');
  });

  it('agrees with the WHATWG URL serializer on every non-mapped IPv6 address', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        const b = Buffer.alloc(16);
        groups.forEach((g, i) => b.writeUInt16BE(g, 2 * i));
        const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
        fc.pre(!mapped);
        const host = new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname;
        expect(`[${ipToString(b)}]`).toBe(host);
      }),
      { numRuns: 2000 },
    );
  });

  it('prints other lengths as hex instead of throwing', () => {
    expect(ipToString(Buffer.from([1, 2]))).toBe('0102');
  });
});
