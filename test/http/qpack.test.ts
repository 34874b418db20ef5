import { describe, expect, it } from 'vitest';
import { QpackDecoder, QPACK_STATIC_TABLE } from '../../src/analyzers/http/qpack.js';
import { huffmanEncode } from '../../src/analyzers/http/huffman.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decode(d: QpackDecoder, block: Buffer): { r: unknown; headers: [string, string][] } {
  const headers: [string, string][] = [];
  const r = d.decode(block, (n, v) => headers.push([n, v]));
  return { r, headers };
}

describe('QPACK (RFC 9204)', () => {
  it('has the 99 entries of the static table (Appendix A)', () => {
    expect(QPACK_STATIC_TABLE).toHaveLength(99);
    expect(QPACK_STATIC_TABLE[17]).toEqual([':method', 'GET']);
    expect(QPACK_STATIC_TABLE[25]).toEqual([':status', '200']);
    expect(QPACK_STATIC_TABLE[52]).toEqual(['content-type', 'text/html; charset=utf-8']);
    expect(QPACK_STATIC_TABLE[98]).toEqual(['x-frame-options', 'sameorigin']);
  });

  it('decodes the literal field section of Appendix B.1 (static name reference)', () => {
    const d = new QpackDecoder();
    // Required Insert Count 0, Base 0; literal with name reference static 1 (:path) = "/index.html"
    expect(decode(d, h('0000 510b 2f69 6e64 6578 2e68 746d 6c'))).toEqual({ r: undefined, headers: [[':path', '/index.html']] });
  });

  it('decodes post-base references to entries the encoder stream inserted (Appendix B.2), blocking until they arrive', () => {
    const d = new QpackDecoder();
    d.setMaxTableCapacity(220);
    const section = h('0381 10 11');
    expect(decode(d, section).r).toBe('blocked');
    // Set Dynamic Table Capacity 220; Insert With Name Reference static 0 / 1
    const enc = h('3fbd01 c00f7777772e6578616d706c652e636f6d c10c2f73616d706c652f70617468');
    // split across two stream chunks: the partial instruction is kept
    expect(d.encoderStream(enc.subarray(0, 10))).toBe(0);
    expect(d.encoderStream(enc.subarray(10))).toBe(2);
    expect(decode(d, section)).toEqual({
      r: undefined,
      headers: [
        [':authority', 'www.example.com'],
        [':path', '/sample/path'],
      ],
    });
  });

  it('inserts with literal names (Huffman coded), duplicates, and evicts by capacity', () => {
    const d = new QpackDecoder();
    d.setMaxTableCapacity(100);
    const name = huffmanEncode('custom-key');
    // capacity 100; insert literal name (H=1) "custom-key" = "custom-value"
    const ins = Buffer.concat([h('3f45'), Buffer.from([0x60 | name.length]), name, Buffer.from([12]), Buffer.from('custom-value')]);
    expect(d.encoderStream(ins)).toBe(1);
    expect(d.entry(0)).toEqual(['custom-key', 'custom-value']);
    // duplicate relative index 0: 54 bytes each, the second insert evicts the first
    expect(d.encoderStream(h('00'))).toBe(1);
    expect(d.insertCount).toBe(2);
    expect(d.entry(0)).toBeUndefined();
    expect(d.entry(1)).toEqual(['custom-key', 'custom-value']);
  });

  it('reports bad input as errors, never throws', () => {
    const d = new QpackDecoder();
    expect(decode(d, h('0000 ff7f')).r).toBe('qpack_bad_index'); // static index 190
    expect(decode(d, h('00')).r).toBe('qpack_truncated');
    expect(decode(d, h('0000 5f')).r).toBe('qpack_bad_integer');
    expect(decode(d, h('0000 80')).r).toBe('qpack_bad_index'); // dynamic index with an empty table
    expect(d.encoderStream(h('3fe1ff1f'))).toBe('qpack_capacity_exceeded'); // 524,416 > the 64 KiB cap
    expect(d.broken).toBe('qpack_capacity_exceeded');
  });
});
