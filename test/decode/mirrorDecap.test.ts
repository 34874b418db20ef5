/** Endpoint checks of VXLAN (RFC 7348 section 5) and Geneve (RFC 8926 sections 3.4, 3.5) headers. */
import { describe, expect, it } from 'vitest';
import { decapGeneve, decapVxlan, newDecapsulated } from '../../src/decode/mirrorDecap.js';

const eth = Buffer.concat([Buffer.from('02000000000102000000000208004500', 'hex'), Buffer.alloc(20)]);

function vxlan(flags: number, vni: number, inner: Buffer, reserved = 0): Buffer {
  return Buffer.concat([Buffer.from([flags, reserved, reserved, reserved, vni >> 16, (vni >> 8) & 0xff, vni & 0xff, reserved]), inner]);
}

/** Geneve header with options (each [class, type, data]) and a protocol type. */
function geneve(opts: [number, number, Buffer][], proto: number, vni: number, inner: Buffer, flags = 0, version = 0): Buffer {
  const o = Buffer.concat(opts.map(([cls, type, data]) => Buffer.concat([Buffer.from([cls >> 8, cls & 0xff, type, data.length / 4]), data])));
  const h = Buffer.from([(version << 6) | (o.length / 4), flags, proto >> 8, proto & 0xff, vni >> 16, (vni >> 8) & 0xff, vni & 0xff, 0]);
  return Buffer.concat([h, o, inner]);
}

describe('VXLAN', () => {
  it('takes the VNI and the inner Ethernet frame; R bits and reserved fields are ignored', () => {
    const d = newDecapsulated();
    expect(decapVxlan(vxlan(0x08, 0x123456, eth), d)).toBeNull();
    expect(d).toEqual({ vni: 0x123456, offset: 8, linktype: 1, optionsSkipped: 0 });
    expect(decapVxlan(vxlan(0x88, 5, eth, 0xff), d)).toBeNull(); // VXLAN-GBP's G bit, reserved bytes set
    expect(d.vni).toBe(5);
  });

  it('rejects a missing I flag, a short header and a short inner frame', () => {
    const d = newDecapsulated();
    expect(decapVxlan(vxlan(0x00, 1, eth), d)).toBe('vxlan_bad_flags');
    expect(decapVxlan(vxlan(0xf7, 1, eth), d)).toBe('vxlan_bad_flags');
    expect(decapVxlan(Buffer.from([0x08, 0, 0, 0, 0, 0, 1]), d)).toBe('vxlan_truncated');
    expect(decapVxlan(vxlan(0x08, 1, Buffer.alloc(13)), d)).toBe('inner_truncated');
  });
});

describe('Geneve', () => {
  it('skips non-critical options by length and keeps the VNI and protocol', () => {
    const d = newDecapsulated();
    const pkt = geneve([[0x0108, 0x01, Buffer.alloc(4)], [0xffff, 0x7f, Buffer.alloc(8)]], 0x6558, 0xabcdef, eth);
    expect(decapGeneve(pkt, d)).toBeNull();
    expect(d).toEqual({ vni: 0xabcdef, offset: 8 + 8 + 12, linktype: 1, optionsSkipped: 2 });
    expect(pkt.subarray(d.offset)).toEqual(eth);
  });

  it('carries raw IPv4 and IPv6 as link types 228 and 229', () => {
    const d = newDecapsulated();
    expect(decapGeneve(geneve([], 0x0800, 1, eth.subarray(14)), d)).toBeNull();
    expect(d.linktype).toBe(228);
    expect(decapGeneve(geneve([], 0x86dd, 1, Buffer.from([0x60])), d)).toBeNull();
    expect(d.linktype).toBe(229);
  });

  it('drops a packet with a critical option it does not understand, whatever the C bit says', () => {
    const d = newDecapsulated();
    expect(decapGeneve(geneve([[0x0108, 0x80, Buffer.alloc(4)]], 0x6558, 1, eth, 0x40), d)).toBe('geneve_critical_option');
    expect(decapGeneve(geneve([[0x0108, 0x01, Buffer.alloc(0)], [0x0108, 0x81, Buffer.alloc(0)]], 0x6558, 1, eth), d)).toBe('geneve_critical_option');
  });

  it('rejects control packets, other versions, bad option lengths, other protocols, truncation', () => {
    const d = newDecapsulated();
    expect(decapGeneve(geneve([], 0x6558, 1, eth, 0x80), d)).toBe('geneve_control');
    expect(decapGeneve(geneve([], 0x6558, 1, eth, 0, 1), d)).toBe('geneve_bad_version');
    const bad = geneve([[0x0108, 0x01, Buffer.alloc(4)]], 0x6558, 1, eth);
    bad[8 + 3] = 2; // the option claims 8 bytes of data inside 8 bytes of options
    expect(decapGeneve(bad, d)).toBe('geneve_bad_options');
    expect(decapGeneve(geneve([], 0x88cc, 1, eth), d)).toBe('geneve_unsupported_protocol');
    expect(decapGeneve(Buffer.from([0x00, 0, 0x65, 0x58]), d)).toBe('geneve_truncated');
    expect(decapGeneve(geneve([[0x0108, 0x01, Buffer.alloc(4)]], 0x6558, 1, Buffer.alloc(0)).subarray(0, 12), d)).toBe('geneve_truncated');
    expect(decapGeneve(geneve([], 0x6558, 1, Buffer.alloc(10)), d)).toBe('inner_truncated');
  });
});
