import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePacket, ipToString, newDecodedPacket, type DecodeOutcome } from '../../src/decode/index.js';
import { readCaptureFile } from '../../src/capture/index.js';
import type { AnomalySink, DecodedPacket, RawPacket } from '../../src/types.js';
import {
  bsdNull,
  erspan2,
  erspan3,
  ETH_IPV4,
  ETH_IPV6,
  ethernet,
  extAh,
  extFragment,
  extGeneric,
  geneve,
  gre,
  ipv4,
  mpls,
  pppoe,
  ipv6,
  sll,
  sll2,
  tcp,
  udp,
  vxlan,
} from './builders.js';

class Anomalies implements AnomalySink {
  codes: string[] = [];
  anomaly(code: string): void {
    this.codes.push(code);
  }
}

function raw(linktype: number, data: Buffer): RawPacket {
  return { linktype, ts: { sec: 0, nsec: 0 }, data, origLen: data.length, ifIndex: 0 };
}

interface Result {
  outcome: DecodeOutcome;
  out: DecodedPacket;
  anomalies: string[];
}

function decode(linktype: number, data: Buffer, out = newDecodedPacket()): Result {
  const a = new Anomalies();
  const outcome = decodePacket(raw(linktype, data), out, a);
  return { outcome, out, anomalies: a.codes };
}

/** The fields a TCP consumer uses, in printable form. */
function summary(out: DecodedPacket) {
  return {
    ipVersion: out.ipVersion,
    src: ipToString(out.srcAddr),
    dst: ipToString(out.dstAddr),
    srcPort: out.srcPort,
    dstPort: out.dstPort,
    seq: out.seq,
    ack: out.ack,
    flags: out.flags,
    window: out.window,
    payload: out.payload.toString('latin1'),
    payloadLen: out.payloadLen,
    tunnels: [...out.tunnels],
    vlans: [...out.vlans],
  };
}

const HELLO = Buffer.from('hello');
const seg4 = () => ipv4('10.0.0.1', '10.0.0.2', tcp(40000, 443, HELLO));
const seg6 = () => ipv6('fd00::1', 'fd00::2', tcp(40000, 443, HELLO));
const EXPECT4 = {
  ipVersion: 4,
  src: '10.0.0.1',
  dst: '10.0.0.2',
  srcPort: 40000,
  dstPort: 443,
  seq: 1000,
  ack: 2000,
  flags: 0x18,
  window: 512,
  payload: 'hello',
  payloadLen: 5,
  tunnels: [],
  vlans: [],
};
const EXPECT6 = { ...EXPECT4, ipVersion: 6, src: 'fd00::1', dst: 'fd00::2' };

describe('link layers', () => {
  it('decodes Ethernet with IPv4 and IPv6', () => {
    const r4 = decode(1, ethernet(ETH_IPV4, seg4()));
    expect(r4.outcome).toBe('tcp');
    expect(summary(r4.out)).toEqual(EXPECT4);
    const r6 = decode(1, ethernet(ETH_IPV6, seg6()));
    expect(r6.outcome).toBe('tcp');
    expect(summary(r6.out)).toEqual(EXPECT6);
    expect([...r4.anomalies, ...r6.anomalies]).toEqual([]);
  });

  it('records a stack of 802.1ad / 802.1Q / 0x9100 VLAN tags outermost first', () => {
    const frame = ethernet(ETH_IPV4, seg4(), [
      { tpid: 0x88a8, vid: 100 },
      { tpid: 0x8100, vid: 200 },
      { tpid: 0x9100, vid: 4095 },
    ]);
    const r = decode(1, frame);
    expect(r.outcome).toBe('tcp');
    expect(r.out.vlans).toEqual([100, 200, 4095]);
    expect(r.out.payload.toString()).toBe('hello');
  });

  it('gives up beyond the VLAN tag limit', () => {
    const tags = (n: number) => Array.from({ length: n }, (_, i) => ({ tpid: 0x8100, vid: i }));
    expect(decode(1, ethernet(ETH_IPV4, seg4(), tags(8))).outcome).toBe('tcp');
    expect(decode(1, ethernet(ETH_IPV4, seg4(), tags(9)))).toMatchObject({ outcome: 'malformed', anomalies: ['vlan_too_many_tags'] });
  });

  it('decodes Linux cooked captures v1 and v2', () => {
    expect(summary(decode(113, sll(ETH_IPV4, seg4())).out)).toEqual(EXPECT4);
    expect(summary(decode(276, sll2(ETH_IPV6, seg6())).out)).toEqual(EXPECT6);
    expect(decode(276, sll2(0x8100, Buffer.concat([Buffer.from([0, 7, 0x08, 0x00]), seg4()]))).out.vlans).toEqual([7]);
  });

  it('decodes raw IP by its version nibble for link types 101, 12 and 14, and 228/229', () => {
    for (const lt of [101, 12, 14]) {
      expect(summary(decode(lt, seg4()).out)).toEqual(EXPECT4);
      expect(summary(decode(lt, seg6()).out)).toEqual(EXPECT6);
    }
    expect(summary(decode(228, seg4()).out)).toEqual(EXPECT4);
    expect(summary(decode(229, seg6()).out)).toEqual(EXPECT6);
    expect(decode(101, Buffer.from([0x50, 1, 2])).outcome).toBe('not_ip');
  });

  it('decodes BSD loopback families in either byte order', () => {
    for (const lt of [0, 108]) {
      for (const le of [true, false]) {
        expect(summary(decode(lt, bsdNull(2, seg4(), le)).out)).toEqual(EXPECT4);
        for (const fam of [24, 28, 30]) expect(summary(decode(lt, bsdNull(fam, seg6(), le)).out)).toEqual(EXPECT6);
        expect(decode(lt, bsdNull(7, seg4(), le)).outcome).toBe('not_ip');
      }
    }
  });

  it('returns unsupported_link for an unknown link type and not_ip for ARP, without anomalies', () => {
    const a = decode(147, seg4());
    expect(a.outcome).toBe('unsupported_link');
    const arp = decode(1, ethernet(0x0806, Buffer.alloc(28)));
    expect(arp.outcome).toBe('not_ip');
    const llc = decode(1, ethernet(0x0040, Buffer.alloc(64)));
    expect(llc.outcome).toBe('not_ip');
    expect([...a.anomalies, ...arp.anomalies, ...llc.anomalies]).toEqual([]);
  });
});

describe('IP', () => {
  it('ignores Ethernet padding after the IPv4 total length', () => {
    const frame = Buffer.concat([ethernet(ETH_IPV4, seg4()), Buffer.alloc(12, 0xee)]);
    const r = decode(1, frame);
    expect(r.out.payload.toString('latin1')).toBe('hello');
    expect(r.out.payloadLen).toBe(5);
  });

  it('keeps the wire payload length of a snapped segment', () => {
    const frame = ethernet(ETH_IPV4, ipv4('10.0.0.1', '10.0.0.2', tcp(1, 2, Buffer.alloc(1000, 0x61))));
    const r = decode(1, frame.subarray(0, 14 + 20 + 20 + 100));
    expect(r.outcome).toBe('tcp');
    expect(r.out.payload.length).toBe(100);
    expect(r.out.payloadLen).toBe(1000);
    expect(r.anomalies).toEqual([]);
  });

  it('uses the captured length when the IPv4 total length is 0 (segmentation offload)', () => {
    const r = decode(101, ipv4('10.0.0.1', '10.0.0.2', tcp(1, 2, Buffer.alloc(70000 - 40, 0x62)), { totalLength: 0 }));
    expect(r.outcome).toBe('tcp');
    expect(r.out.payloadLen).toBe(70000 - 40);
    expect(r.out.payload.length).toBe(70000 - 40);
  });

  it('skips IPv4 options by the header length', () => {
    const r = decode(101, ipv4('1.2.3.4', '5.6.7.8', tcp(1, 2, HELLO), { options: Buffer.from([1, 1, 1, 0]) }));
    expect(r.out.payload.toString()).toBe('hello');
  });

  it('describes IPv4 fragments for reassembly instead of decoding them (ordinary traffic: no anomaly)', () => {
    for (const [ff, offset, more] of [[0x2000, 0, true], [0x0001, 8, false], [0x2100, 2048, true]] as const) {
      const r = decode(101, ipv4('1.2.3.4', '5.6.7.8', tcp(1, 2, HELLO), { flagsFrag: ff }));
      expect(r.outcome).toBe('fragment');
      expect(r.anomalies).toEqual([]);
      expect(r.out.frag).toMatchObject({ ipVersion: 4, offset, more, nextHeader: 6 });
      expect(r.out.frag!.data.length).toBe(20 + 5);
    }
  });

  it('rejects an IPv4 header length below 20 or beyond the total length', () => {
    const bad = seg4();
    bad[0] = 0x44;
    expect(decode(101, bad)).toMatchObject({ outcome: 'malformed', anomalies: ['ipv4_bad_header'] });
    const bad2 = seg4();
    bad2.writeUInt16BE(10, 2);
    expect(decode(101, bad2)).toMatchObject({ outcome: 'malformed', anomalies: ['ipv4_bad_header'] });
  });

  it('follows IPv6 hop-by-hop, routing, destination options, AH and atomic fragment headers', () => {
    const ext = [extGeneric(0), extGeneric(43, 1), extGeneric(60), extAh(), extFragment(0, false)];
    const r = decode(229, ipv6('2001:db8::1', '2001:db8::2', tcp(5, 6, HELLO), 6, ext));
    expect(r.outcome).toBe('tcp');
    expect(r.out.payload.toString()).toBe('hello');
    expect([r.out.srcPort, r.out.dstPort, r.out.payloadLen]).toEqual([5, 6, 5]);
  });

  it('describes IPv6 fragments for reassembly and stops at ESP', () => {
    for (const [f, offset, more] of [[extFragment(0, true), 0, true], [extFragment(8, false), 64, false]] as const) {
      const r = decode(229, ipv6('::1', '::2', tcp(5, 6, HELLO), 6, [f]));
      expect(r).toMatchObject({ outcome: 'fragment', anomalies: [] });
      expect(r.out.frag).toMatchObject({ ipVersion: 6, offset, more, nextHeader: 6 });
    }
    const esp = decode(229, ipv6('::1', '::2', Buffer.alloc(40), 50));
    expect(esp).toMatchObject({ outcome: 'not_tcp', anomalies: [] });
    expect(esp.out.protocol).toBe(50);
  });

  it('limits the number of IPv6 extension headers', () => {
    const ext = Array.from({ length: 20 }, () => extGeneric(60));
    const r = decode(229, ipv6('::1', '::2', tcp(5, 6, HELLO), 6, ext));
    expect(r).toMatchObject({ outcome: 'malformed', anomalies: ['ipv6_too_many_extension_headers'] });
  });

  it('returns udp with the datagram payload, and not_tcp for ICMP, without anomalies', () => {
    const u = decode(101, ipv4('1.1.1.1', '2.2.2.2', udp(53, 53, Buffer.alloc(20, 7)), { proto: 17 }));
    expect(u).toMatchObject({ outcome: 'udp', anomalies: [] });
    expect([u.out.protocol, u.out.srcPort, u.out.payloadLen, u.out.payload.length, u.out.payload[19]]).toEqual([17, 53, 20, 20, 7]);
    const i = decode(101, ipv4('1.1.1.1', '2.2.2.2', Buffer.alloc(8), { proto: 1 }));
    expect(i).toMatchObject({ outcome: 'not_tcp', anomalies: [] });
  });

  it('reports a UDP length below 8 or beyond the IP payload as malformed', () => {
    for (const len of [0, 7, 29]) {
      const d = udp(443, 5000, Buffer.alloc(20));
      d.writeUInt16BE(len, 4);
      const r = decode(101, ipv4('1.1.1.1', '2.2.2.2', d, { proto: 17 }));
      expect(r).toMatchObject({ outcome: 'malformed', anomalies: ['udp_bad_length'] });
    }
  });
});

describe('TCP', () => {
  it('reads sequence numbers as unsigned 32-bit and skips options by the data offset', () => {
    const t = tcp(65535, 1, HELLO, { seq: 0xfffffff0, ack: 0x80000000, flags: 0xff, window: 65535, options: Buffer.alloc(12, 1) });
    const r = decode(101, ipv4('1.1.1.1', '2.2.2.2', t));
    expect(summary(r.out)).toMatchObject({ seq: 0xfffffff0, ack: 0x80000000, flags: 0xff, window: 65535, payload: 'hello', payloadLen: 5, srcPort: 65535 });
  });

  it('rejects a data offset below 5 words or beyond the segment', () => {
    for (const d of [4, 15]) {
      const r = decode(101, ipv4('1.1.1.1', '2.2.2.2', tcp(1, 2, HELLO, { dataOffset: d })));
      expect(r).toMatchObject({ outcome: 'malformed', anomalies: ['tcp_bad_header'] });
    }
  });

  it('reports a TCP header cut by the capture as truncated', () => {
    const r = decode(101, seg4().subarray(0, 30));
    expect(r).toMatchObject({ outcome: 'truncated', anomalies: ['tcp_truncated'] });
  });
});

describe('tunnels', () => {
  const inner = () => ethernet(ETH_IPV4, seg4(), [{ tpid: 0x8100, vid: 33 }]);

  it('decodes the inner packet of VXLAN', () => {
    const frame = ethernet(ETH_IPV4, ipv4('192.168.0.1', '192.168.0.2', udp(12345, 4789, vxlan(42, inner())), { proto: 17 }));
    const r = decode(1, frame);
    expect(r.outcome).toBe('tcp');
    expect(summary(r.out)).toEqual({ ...EXPECT4, tunnels: ['vxlan'], vlans: [33] });
  });

  it('decodes GRE carrying IPv4, IPv6 and Ethernet, with checksum, key and sequence words', () => {
    const variants = [{}, { checksum: true }, { key: 7 }, { seq: 9 }, { checksum: true, key: 7, seq: 9 }];
    for (const v of variants) {
      const o4 = decode(101, ipv4('9.9.9.1', '9.9.9.2', gre(0x0800, seg4(), v), { proto: 47 }));
      expect(summary(o4.out)).toEqual({ ...EXPECT4, tunnels: ['gre'] });
      const o6 = decode(101, ipv4('9.9.9.1', '9.9.9.2', gre(0x86dd, seg6(), v), { proto: 47 }));
      expect(summary(o6.out)).toEqual({ ...EXPECT6, tunnels: ['gre'] });
      const eth = decode(229, ipv6('fe80::1', 'fe80::2', gre(0x6558, inner(), v), 47));
      expect(summary(eth.out)).toEqual({ ...EXPECT4, tunnels: ['gre'], vlans: [33] });
    }
  });

  it('decodes ERSPAN types I, II and III', () => {
    const outer = (g: Buffer) => ethernet(ETH_IPV4, ipv4('9.9.9.1', '9.9.9.2', g, { proto: 47 }));
    const want = { ...EXPECT4, tunnels: ['gre', 'erspan'], vlans: [33] };
    expect(summary(decode(1, outer(gre(0x88be, inner()))).out)).toEqual(want);
    expect(summary(decode(1, outer(gre(0x88be, erspan2(inner()), { seq: 1 }))).out)).toEqual(want);
    expect(summary(decode(1, outer(gre(0x22eb, erspan3(inner()), { seq: 1 }))).out)).toEqual(want);
    expect(summary(decode(1, outer(gre(0x22eb, erspan3(inner(), { subheader: true }), { seq: 1 }))).out)).toEqual(want);
    const ipFrame = decode(1, outer(gre(0x22eb, erspan3(seg6(), { frameType: 2 }), { seq: 1 })));
    expect(summary(ipFrame.out)).toEqual({ ...EXPECT6, tunnels: ['gre', 'erspan'] });
  });

  it('decodes IP-in-IP (4) and IPv6-in-IP (41)', () => {
    expect(summary(decode(101, ipv4('9.9.9.1', '9.9.9.2', seg4(), { proto: 4 })).out)).toEqual({ ...EXPECT4, tunnels: ['ipip'] });
    expect(summary(decode(101, ipv4('9.9.9.1', '9.9.9.2', seg6(), { proto: 41 })).out)).toEqual({ ...EXPECT6, tunnels: ['ipip'] });
    expect(summary(decode(229, ipv6('::9', '::8', seg4(), 4)).out)).toEqual({ ...EXPECT4, tunnels: ['ipip'] });
  });

  it('gives up beyond the tunnel depth limit', () => {
    let p = seg4();
    for (let i = 0; i < 8; i++) p = ipv4('9.9.9.1', '9.9.9.2', p, { proto: 4 });
    expect(decode(101, p).outcome).toBe('tcp');
    p = ipv4('9.9.9.1', '9.9.9.2', p, { proto: 4 });
    expect(decode(101, p)).toMatchObject({ outcome: 'malformed', anomalies: ['tunnel_too_deep'] });
  });

  it('does not follow GRE version 1 (PPTP) or RFC 1701 routing', () => {
    const g = gre(0x880b, Buffer.alloc(20));
    g.writeUInt16BE(0x2001, 0);
    expect(decode(101, ipv4('1.1.1.1', '2.2.2.2', g, { proto: 47 })).outcome).toBe('not_ip');
  });
});

describe('MPLS, Geneve and PPPoE', () => {
  it('decodes IP directly under an MPLS label stack', () => {
    expect(summary(decode(1, ethernet(0x8847, mpls([100, 200, 300], seg4()))).out)).toEqual({ ...EXPECT4, tunnels: ['mpls'] });
    expect(summary(decode(1, ethernet(0x8848, mpls([5], seg6()))).out)).toEqual({ ...EXPECT6, tunnels: ['mpls'] });
  });

  it('decodes Ethernet pseudowires with and without a control word', () => {
    const inner = ethernet(ETH_IPV4, seg4(), [{ tpid: 0x8100, vid: 9 }]);
    const want = { ...EXPECT4, tunnels: ['mpls'], vlans: [9] };
    expect(summary(decode(1, ethernet(0x8847, mpls([16], Buffer.concat([Buffer.alloc(4), inner])))).out)).toEqual(want);
    expect(summary(decode(1, ethernet(0x8847, mpls([16], inner))).out)).toEqual(want); // MAC 02:...: no control word
    const zeroMac = Buffer.from(inner);
    zeroMac[0] = 0x00;
    expect(summary(decode(1, ethernet(0x8847, mpls([16], zeroMac))).out)).toEqual(want);
  });

  it('decodes Geneve with options carrying Ethernet or IP', () => {
    const u = (g: Buffer) => ethernet(ETH_IPV4, ipv4('192.0.2.1', '192.0.2.2', udp(9, 6081, g), { proto: 17 }));
    expect(summary(decode(1, u(geneve(0x6558, ethernet(ETH_IPV6, seg6()), 4))).out)).toEqual({ ...EXPECT6, tunnels: ['geneve'] });
    expect(summary(decode(1, u(geneve(0x0800, seg4()))).out)).toEqual({ ...EXPECT4, tunnels: ['geneve'] });
    const v1 = geneve(0x0800, seg4());
    v1[0] |= 0x40;
    expect(decode(1, u(v1)).outcome).toBe('not_ip');
  });

  it('decodes PPPoE sessions carrying IPv4 and IPv6, and ignores other PPP protocols', () => {
    expect(summary(decode(1, ethernet(0x8864, pppoe(0x0021, seg4()))).out)).toEqual(EXPECT4);
    expect(summary(decode(1, ethernet(0x8864, pppoe(0x0057, seg6()))).out)).toEqual(EXPECT6);
    expect(decode(1, ethernet(0x8864, pppoe(0xc021, Buffer.alloc(10)))).outcome).toBe('not_ip');
  });
});

describe('reuse of the output object', () => {
  it('resets tunnels and vlans between packets', () => {
    const out = newDecodedPacket();
    decode(1, ethernet(ETH_IPV4, ipv4('9.9.9.1', '9.9.9.2', seg4(), { proto: 4 }), [{ tpid: 0x8100, vid: 5 }]), out);
    expect([out.tunnels, out.vlans]).toEqual([['ipip'], [5]]);
    const r = decode(1, ethernet(ETH_IPV4, seg4()), out);
    expect(summary(r.out)).toEqual(EXPECT4);
  });
});

const TRUNCATION_CODES = new Set([
  'ethernet_truncated',
  'vlan_truncated',
  'sll_truncated',
  'loopback_truncated',
  'ip_truncated',
  'ipv4_truncated',
  'ipv6_truncated',
  'tcp_truncated',
  'udp_truncated',
  'vxlan_truncated',
  'gre_truncated',
  'erspan_truncated',
  'mpls_truncated',
  'geneve_truncated',
  'pppoe_truncated',
]);

describe('robustness', () => {
  const samples: [number, Buffer][] = [
    [1, ethernet(ETH_IPV4, seg4(), [{ tpid: 0x8100, vid: 1 }])],
    [1, ethernet(ETH_IPV4, ipv4('192.168.0.1', '192.168.0.2', udp(1, 4789, vxlan(1, ethernet(ETH_IPV6, seg6()))), { proto: 17 }))],
    [1, ethernet(ETH_IPV4, ipv4('9.9.9.1', '9.9.9.2', gre(0x22eb, erspan3(ethernet(ETH_IPV4, seg4()), { subheader: true }), { seq: 1, key: 2 }), { proto: 47 }))],
    [229, ipv6('::1', '::2', tcp(5, 6, HELLO), 6, [extGeneric(0), extAh(), extFragment(0, false)])],
    [113, sll(ETH_IPV6, seg6())],
    [276, sll2(ETH_IPV4, seg4())],
    [0, bsdNull(30, seg6(), true)],
    [1, ethernet(0x8847, mpls([1, 2], Buffer.concat([Buffer.alloc(4), ethernet(ETH_IPV4, seg4())])))],
    [1, ethernet(ETH_IPV6, ipv6('::1', '::2', udp(1, 6081, geneve(0x6558, ethernet(ETH_IPV4, seg4()), 3)), 17))],
    [1, ethernet(0x8864, pppoe(0x0057, seg6()))],
  ];

  it('every prefix of a valid frame decodes or is reported as truncated, never thrown', () => {
    for (const [lt, frame] of samples) {
      for (let n = 0; n <= frame.length; n++) {
        const r = decode(lt, frame.subarray(0, n));
        expect(['tcp', 'truncated']).toContain(r.outcome);
        if (r.outcome === 'tcp') {
          expect(r.anomalies).toEqual([]);
          expect(r.out.payload.length).toBeLessThanOrEqual(r.out.payloadLen);
        } else {
          expect(r.anomalies.length).toBe(1);
          expect(TRUNCATION_CODES.has(r.anomalies[0])).toBe(true);
        }
      }
    }
  });

  it('never throws on random bytes or random corruption, for every link type', () => {
    const out = newDecodedPacket();
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 12, 14, 101, 108, 113, 228, 229, 276),
        fc.uint8Array({ maxLength: 200 }),
        (lt, bytes) => {
          const r = decode(lt, Buffer.from(bytes), out);
          expect(r.anomalies.length).toBeLessThanOrEqual(1);
          if (r.outcome === 'tcp') expect(r.out.payload.length).toBeLessThanOrEqual(Math.max(0, bytes.length));
        },
      ),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...samples),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 6 }),
        ([lt, frame], edits) => {
          const b = Buffer.from(frame);
          for (const [i, v] of edits) b[i % b.length] = v;
          const r = decode(lt, b, out);
          if (r.outcome === 'tcp') {
            expect(r.out.payload.length).toBeLessThanOrEqual(r.out.payloadLen);
            expect(r.out.tunnels.length).toBeLessThanOrEqual(8);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('real tcpdump frames against tshark', () => {
  const DATA = new URL('../capture/data/', import.meta.url).pathname;
  for (const name of ['lo-http', 'any-http']) {
    it(`decodes every frame of ${name}.pcap as tshark does`, async () => {
      const rows = readFileSync(join(DATA, `${name}.tshark.tsv`), 'utf8').trim().split('\n').map((l) => l.split('\t'));
      const got: string[][] = [];
      const out = newDecodedPacket();
      const an = new Anomalies();
      await readCaptureFile(join(DATA, `${name}.pcap`), {
        packet(p) {
          expect(decodePacket(p, out, an)).toBe('tcp');
          const v4 = out.ipVersion === 4;
          got.push([
            v4 ? ipToString(out.srcAddr) : '',
            v4 ? '' : ipToString(out.srcAddr),
            v4 ? ipToString(out.dstAddr) : '',
            v4 ? '' : ipToString(out.dstAddr),
            String(out.srcPort),
            String(out.dstPort),
            String(out.seq),
            String(out.ack),
            '0x' + out.flags.toString(16).padStart(4, '0'),
            String(out.payloadLen),
          ]);
        },
        secrets() {},
        anomaly(code) {
          an.anomaly(code);
        },
      });
      expect(an.codes).toEqual([]);
      expect(got).toEqual(rows.map((r) => r.slice(3)));
      expect(got.some((g) => g[1] === '::1')).toBe(true);
    });
  }
});

describe('tunnels against tshark', () => {
  const DEC = new URL('./data/', import.meta.url).pathname;

  async function decodeFile(path: string) {
    const rows: { src: string; dst: string; fields: string[]; vlans: number[]; tunnels: string[] }[] = [];
    const out = newDecodedPacket();
    const an = new Anomalies();
    await readCaptureFile(path, {
      packet(p) {
        expect(decodePacket(p, out, an)).toBe('tcp');
        rows.push({
          src: ipToString(out.srcAddr),
          dst: ipToString(out.dstAddr),
          fields: [out.srcPort, out.dstPort, out.seq, out.ack, '0x' + out.flags.toString(16).padStart(4, '0'), out.payloadLen].map(String),
          vlans: [...out.vlans],
          tunnels: [...out.tunnels],
        });
      },
      secrets() {},
      anomaly: (c) => an.anomaly(c),
    });
    expect(an.codes).toEqual([]);
    return rows;
  }

  it('reads every synthetic encapsulation as tshark does (innermost addresses, TCP, VLAN ids)', async () => {
    const expected = readFileSync(join(DEC, 'synthetic.tshark.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t'));
    const rows = await decodeFile(join(DEC, 'synthetic.pcapng'));
    expect(rows.length).toBe(expected.length);
    rows.forEach((r, i) => {
      const e = expected[i];
      const vlans = [e[8], e[9]].filter((v) => v !== '').join(',');
      expect({ src: r.src, dst: r.dst, fields: r.fields, vlans: r.vlans.join(',') }).toEqual({
        src: e[0],
        dst: e[1],
        fields: e.slice(2, 8),
        vlans,
      });
      // Our tunnel names follow tshark's protocol stack.
      const stack = e[10];
      if (r.tunnels.includes('vxlan')) expect(stack).toContain(':vxlan:');
      if (r.tunnels.includes('gre')) expect(stack).toContain(':gre:');
      if (r.tunnels.includes('erspan')) expect(stack).toContain(':erspan:');
      if (r.tunnels.includes('mpls')) expect(stack).toContain(':mpls:');
      if (r.tunnels.includes('geneve')) expect(stack).toContain(':geneve:');
      if (r.tunnels.length === 0) expect(stack).not.toMatch(/vxlan|gre|geneve|mpls|ip:ip|ip:ipv6|ipv6:ip:/);
    });
    expect(rows.filter((r) => r.tunnels.length > 0).length).toBe(16);
  });

  it('reads real kernel VXLAN traffic (IPv4 and IPv6 inside) as tshark does', async () => {
    const expected = readFileSync(join(DEC, 'tunnels-real.tshark.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t'));
    const rows = await decodeFile(join(DEC, 'tunnels-real.pcap'));
    expect(rows.length).toBe(expected.length);
    rows.forEach((r, i) => {
      const e = expected[i];
      const inner6 = e[1] !== '';
      expect([r.src, r.dst, ...r.fields]).toEqual([inner6 ? e[1] : e[0], inner6 ? e[3] : e[2], ...e.slice(4, 10)]);
      expect(r.tunnels).toEqual(e[11] === '42' ? ['vxlan'] : []);
    });
    expect(rows.some((r) => r.src === 'fd42::1')).toBe(true);
  });
});
