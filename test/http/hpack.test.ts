import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HpackDecoder } from '../../src/analyzers/http/hpack.js';
import { HUFFMAN_CODES, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode } from '../../src/analyzers/http/huffman.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decodeAll(d: HpackDecoder, block: Buffer): [string, string][] | string {
  const out: [string, string][] = [];
  const err = d.decode(block, (n, v) => out.push([n, v]));
  return err ?? out;
}

function table(d: HpackDecoder): [string, string][] {
  const t: [string, string][] = [];
  for (let i = 0; i < d.dynamicTableLength; i++) t.push(d.dynamicEntry(i)!);
  return t;
}

const REQ1: [string, string][] = [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']];
const REQ2: [string, string][] = [...REQ1, ['cache-control', 'no-cache']];
const REQ3: [string, string][] = [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']];
const RESP1: [string, string][] = [[':status', '302'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']];
const RESP2: [string, string][] = [[':status', '307'], ...RESP1.slice(1)];
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESP3: [string, string][] = [[':status', '200'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'], ['location', 'https://www.example.com'], ['content-encoding', 'gzip'], ['set-cookie', COOKIE]];

describe('Huffman code table (RFC 7541 Appendix B)', () => {
  it('is a complete prefix code over 257 symbols (Kraft sum exactly 1)', () => {
    expect(HUFFMAN_CODES.length).toBe(257);
    expect(HUFFMAN_LENGTHS.length).toBe(257);
    let sum = 0;
    for (const l of HUFFMAN_LENGTHS) sum += 2 ** -l;
    expect(sum).toBe(1);
    const seen = new Set<string>();
    HUFFMAN_CODES.forEach((c, i) => {
      const s = c.toString(2).padStart(HUFFMAN_LENGTHS[i], '0');
      expect(s.length).toBe(HUFFMAN_LENGTHS[i]);
      seen.add(s);
    });
    expect(seen.size).toBe(257);
  });

  it('decodes the Appendix C Huffman strings', () => {
    const cases: [string, string][] = [
      ['f1e3 c2e5 f23a 6ba0 ab90 f4ff', 'www.example.com'],
      ['a8eb 1064 9cbf', 'no-cache'],
      ['25a8 49e9 5ba9 7d7f', 'custom-key'],
      ['25a8 49e9 5bb8 e8b4 bf', 'custom-value'],
      ['6402', '302'],
      ['aec3 771a 4b', 'private'],
      ['d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3', 'https://www.example.com'],
      ['9bd9 ab', 'gzip'],
      ['94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07', COOKIE],
    ];
    for (const [h, s] of cases) {
      const b = hex(h);
      expect(huffmanDecode(b, 0, b.length)).toBe(s);
      expect(huffmanEncode(s).equals(b)).toBe(true);
    }
  });

  it('round-trips every byte value', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (arr) => {
      const src = Buffer.from(arr);
      const enc = huffmanEncode(src);
      const dec = huffmanDecode(enc, 0, enc.length);
      expect(dec).toBe(src.toString('utf8'));
    }));
  });

  it('rejects padding longer than 7 bits', () => {
    // '0' is 00000 (5 bits) then 8 bits of 1s + 3: 0000 0111 1111 1111 => two padding bytes of ones
    expect(huffmanDecode(Buffer.from([0x07, 0xff]), 0, 2)).toBeUndefined();
  });

  it('rejects padding that is not all ones', () => {
    // '0' (00000) followed by 000 padding
    expect(huffmanDecode(Buffer.from([0x00]), 0, 1)).toBeUndefined();
  });

  it('rejects an encoded EOS symbol', () => {
    expect(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4)).toBeUndefined();
  });
});

describe('HPACK decoder (RFC 7541 Appendix C)', () => {
  it('C.2.1 literal with indexing adds to the dynamic table', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'))).toEqual([['custom-key', 'custom-header']]);
    expect(table(d)).toEqual([['custom-key', 'custom-header']]);
    expect(d.dynamicTableSize).toBe(55);
  });

  it('C.2.2 literal without indexing leaves the table empty', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('040c 2f73 616d 706c 652f 7061 7468'))).toEqual([[':path', '/sample/path']]);
    expect(d.dynamicTableLength).toBe(0);
  });

  it('C.2.3 never-indexed literal leaves the table empty', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('1008 7061 7373 776f 7264 0673 6563 7265 74'))).toEqual([['password', 'secret']]);
    expect(d.dynamicTableLength).toBe(0);
  });

  it('C.2.4 indexed field from the static table', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('82'))).toEqual([[':method', 'GET']]);
  });

  it('C.3 request sequence without Huffman', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))).toEqual(REQ1);
    expect(d.dynamicTableSize).toBe(57);
    expect(decodeAll(d, hex('8286 84be 5808 6e6f 2d63 6163 6865'))).toEqual(REQ2);
    expect(d.dynamicTableSize).toBe(110);
    expect(decodeAll(d, hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'))).toEqual(REQ3);
    expect(table(d)).toEqual([['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
    expect(d.dynamicTableSize).toBe(164);
  });

  it('C.4 request sequence with Huffman', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual(REQ1);
    expect(decodeAll(d, hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual(REQ2);
    expect(decodeAll(d, hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual(REQ3);
    expect(d.dynamicTableSize).toBe(164);
  });

  it('C.5 response sequence without Huffman evicts in a 256-octet table', () => {
    const d = new HpackDecoder(256);
    expect(decodeAll(d, hex(`4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
      2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`))).toEqual(RESP1);
    expect(d.dynamicTableSize).toBe(222);
    expect(decodeAll(d, hex('4803 3330 37c1 c0bf'))).toEqual(RESP2);
    expect(table(d)).toEqual([[':status', '307'], ['location', 'https://www.example.com'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['cache-control', 'private']]);
    expect(d.dynamicTableSize).toBe(222);
    expect(decodeAll(d, hex(`88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
      54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
      5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`))).toEqual(RESP3);
    expect(table(d)).toEqual([['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT']]);
    expect(d.dynamicTableSize).toBe(215);
  });

  it('C.6 response sequence with Huffman evicts in a 256-octet table', () => {
    const d = new HpackDecoder(256);
    expect(decodeAll(d, hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
      2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`))).toEqual(RESP1);
    expect(d.dynamicTableSize).toBe(222);
    expect(decodeAll(d, hex('4883 640e ffc1 c0bf'))).toEqual(RESP2);
    expect(d.dynamicTableSize).toBe(222);
    expect(decodeAll(d, hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
      77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
      9587 3160 65c0 03ed 4ee5 b106 3d50 07`))).toEqual(RESP3);
    expect(table(d)).toEqual([['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT']]);
    expect(d.dynamicTableSize).toBe(215);
  });

  it('applies a dynamic table size update at the start of a block and evicts', () => {
    const d = new HpackDecoder();
    decodeAll(d, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'));
    expect(d.dynamicTableLength).toBe(1);
    // 0x20 = size update to 0, then indexed :method GET
    expect(decodeAll(d, hex('20 82'))).toEqual([[':method', 'GET']]);
    expect(d.dynamicTableLength).toBe(0);
    // index 62 no longer exists
    expect(decodeAll(d, hex('be'))).toBe('hpack_bad_index');
  });

  it('rejects a size update after a field and one above the advertised limit', () => {
    expect(decodeAll(new HpackDecoder(), hex('82 20'))).toBe('hpack_bad_table_size_update');
    // 0x3f e1 1f = 5-bit prefix 31 + 0x61 + (0x1f<<7) = 31 + 97 + 3968 = 4096: allowed
    expect(decodeAll(new HpackDecoder(), hex('3fe11f 82'))).toEqual([[':method', 'GET']]);
    // 4097 is above the default 4096
    expect(decodeAll(new HpackDecoder(), hex('3fe21f'))).toBe('hpack_bad_table_size_update');
    const d = new HpackDecoder();
    d.setSettingsTableSize(8192);
    expect(decodeAll(d, hex('3fe21f'))).toEqual([]);
  });

  it('rejects index 0, truncated strings and overlong integers', () => {
    expect(decodeAll(new HpackDecoder(), hex('80'))).toBe('hpack_bad_index');
    expect(decodeAll(new HpackDecoder(), hex('400a 6375'))).toBe('hpack_truncated');
    expect(decodeAll(new HpackDecoder(), hex('ff ff ff ff ff ff 0f'))).toBe('hpack_bad_integer');
    expect(decodeAll(new HpackDecoder(), hex('ff'))).toBe('hpack_bad_integer');
  });

  it('never throws on random blocks or on prefixes of a valid block', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (arr) => {
      const d = new HpackDecoder();
      const r = decodeAll(d, Buffer.from(arr));
      expect(r === undefined).toBe(false);
    }), { numRuns: 2000 });
    const valid = hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf');
    for (let n = 0; n <= valid.length; n++) {
      const r = decodeAll(new HpackDecoder(), valid.subarray(0, n));
      expect(r === undefined).toBe(false);
    }
  });
});
